"""The job's full log: everything its process and the processes it starts write.

Ray's worker lines (relayed to the driver), DeepSpeed's and PyTorch's messages, warnings,
tracebacks: all go to one file (file descriptors 1 and 2 point at it, so child processes
and C libraries write there too), which is copied to ``<output>/<model-id>/logs/`` every
``upload_every_s`` seconds and when the job ends, failed or not. The log then outlives the
Ray cluster. What a person watches gets only botfleet's own lines, through :attr:`console`
(the stream stderr was before).

    with JobLog(storage, layout.job_log(now_iso())) as log:
        print("data: ...", file=log.console)
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
import traceback

from botfleet.storage import Storage, StorageError

log = logging.getLogger("botfleet_jobs.job")


class JobLog:
    def __init__(self, storage: Storage, uri: str, upload_every_s: float = 30.0) -> None:
        self.storage = storage
        self.uri = uri
        self.upload_every_s = upload_every_s
        self.console = sys.stderr  # until __enter__: the stream botfleet's own lines go to
        self._saved: tuple[int, int] | None = None
        self._file = None
        self._stop = threading.Event()
        self._uploader = threading.Thread(target=self._upload_periodically, name="botfleet-job-log", daemon=True)
        self._uploaded_size = -1
        self._upload_lock = threading.Lock()

    def __enter__(self) -> JobLog:
        _flush_std()
        self._file = tempfile.NamedTemporaryFile(prefix="botfleet-job-", suffix=".log", delete=False)
        self._saved = (os.dup(1), os.dup(2))
        self.console = os.fdopen(os.dup(self._saved[1]), "w", buffering=1, encoding="utf-8", errors="replace")
        os.dup2(self._file.fileno(), 1)
        os.dup2(self._file.fileno(), 2)
        self._uploader.start()
        return self

    def __exit__(self, kind, error, tb) -> None:
        _flush_std()
        if error is not None:  # the traceback belongs in the full log, not on the console
            os.write(2, "".join(traceback.format_exception(kind, error, tb)).encode("utf-8", "replace"))
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        for fd in self._saved:
            os.close(fd)
        self._stop.set()
        self._uploader.join(timeout=30)
        self.upload()
        self.console.close()
        self.console = sys.stderr
        self._file.close()
        os.unlink(self._file.name)

    def upload(self) -> bool:
        """Copy the log as it is now to :attr:`uri` (when it grew); False when the store refused."""
        with self._upload_lock:
            _flush_std()
            size = os.path.getsize(self._file.name)
            if size == self._uploaded_size:
                return True
            try:
                self.storage.upload_file(self._file.name, self.uri, content_type="text/plain; charset=utf-8")
            except StorageError as exc:  # the log is for people: never fail the job for it
                log.warning("job log not copied to %s: %s", self.uri, exc)
                return False
            self._uploaded_size = size
            return True

    def _upload_periodically(self) -> None:
        while not self._stop.wait(self.upload_every_s):
            self.upload()


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or detached: nothing buffered to lose
            pass
