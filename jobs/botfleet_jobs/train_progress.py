"""progress.json, the one channel from the workers to whoever watches a training (the
operator's status, the job's progress bar and tracker): rank 0 writes it with
:class:`ProgressWriter`; the driver reads it with :class:`ProgressPoller` and, when the
training fails, records the failure in it with :func:`mark_failed`."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable

from botfleet.artifacts import Progress
from botfleet.storage import Storage, StorageError
from botfleet.timestamps import now_iso

log = logging.getLogger("botfleet_jobs.train")


class ProgressWriter:
    """Every field written so far, rewritten whole at most every ``every_seconds`` unless
    forced. Only the worker with ``enabled`` (rank 0) writes; the others keep nothing."""

    def __init__(self, storage: Storage, uri: str, *, enabled: bool, every_seconds: float, started_at: str) -> None:
        self.storage = storage
        self.uri = uri
        self.enabled = enabled
        self.every_seconds = every_seconds
        self.started_at = started_at
        self.fields: dict = {}
        self.last_write = 0.0

    def update(self, **fields) -> None:
        """Add ``fields`` to what the next write writes."""
        self.fields.update(fields)

    def due(self) -> bool:
        """Whether an unforced write would write now."""
        return self.enabled and time.time() - self.last_write >= self.every_seconds

    def write(self, *, force: bool = False, **fields) -> bool:
        """Add ``fields``; write when forced or due. Returns whether it wrote."""
        if not self.enabled:
            return False
        self.fields.update(fields)
        if not force and not self.due():
            return False
        now = time.time()
        document = Progress(**{**self.fields, "updated_at": now_iso(), "started_at": self.started_at})
        try:
            self.storage.write_json(self.uri, document.to_dict())
        except StorageError as error:  # progress is advisory: never fail training for it
            log.warning("progress not written: %s", error)
            return False
        self.last_write = now
        return True


class ProgressPoller:
    """Calls ``callback(progress)`` whenever progress.json changes, from a daemon thread.
    A file last updated before ``since`` (an earlier attempt's) is not reported."""

    def __init__(self, storage: Storage, uri: str, callback: Callable[[dict], None], seconds: float, since: str = ""):
        self.storage, self.uri, self.callback, self.seconds = storage, uri, callback, seconds
        self.since = since
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="botfleet-progress", daemon=True)
        self._last = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._poll()  # the final state

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            self._poll()

    def _poll(self) -> None:
        try:
            progress = self.storage.read_json(self.uri)
        except StorageError:
            return
        if str(progress.get("updated_at", "")) < self.since:
            return
        key = json.dumps(progress, sort_keys=True)
        if key != self._last:
            self._last = key
            try:
                self.callback(progress)
            except Exception:  # noqa: BLE001 - a broken callback must not stop training
                log.warning("on_progress callback failed", exc_info=True)


def mark_failed(storage: Storage, uri: str, message: str) -> None:
    """Record the failure in progress.json (best effort: the error itself matters more)."""
    try:
        try:
            progress = Progress.from_dict(storage.read_json(uri))
        except StorageError:
            progress = Progress()
        failed = dataclasses.replace(progress, status="failed", error=message, updated_at=now_iso())
        storage.write_json(uri, failed.to_dict())
    except Exception:  # noqa: BLE001
        log.warning("could not record the failure in %s", uri, exc_info=True)
