"""Object-store writes that go on while the caller works: the data stage parses and filters
the next handle while the last one's posts upload. Leaving the ``with`` block waits for
every write and raises the first one's failure (an error inside the block wins)."""

from __future__ import annotations

import concurrent.futures

from botfleet.storage import Storage


class BackgroundWrites:
    def __init__(self, storage: Storage, threads: int = 2) -> None:
        self.storage = storage
        self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="botfleet-write")
        self._pending: list[concurrent.futures.Future] = []

    def write_bytes(self, uri: str, data: bytes, content_type: str | None = None) -> None:
        self._pending.append(self._pool.submit(self.storage.write_bytes, uri, data, content_type))

    def write_text(self, uri: str, text: str, content_type: str | None = None) -> None:
        self._pending.append(self._pool.submit(self.storage.write_text, uri, text, content_type))

    def wait(self) -> None:
        """Return once every write so far is done; raise the first failure."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def __enter__(self) -> BackgroundWrites:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.wait()
            else:  # the block's own error is the one to report: drop what has not started
                for future in self._pending:
                    future.cancel()
                concurrent.futures.wait(self._pending)
        finally:
            self._pool.shutdown(wait=True)
