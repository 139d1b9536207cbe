"""Whether the executor's cluster answers the operator: the readiness probe (/readyz) and the
``botfleet_executor_up`` metric say it, and the log says it once per change.

The executor records every call to its cluster (:meth:`ExecutorHealth.answered` /
:meth:`ExecutorHealth.unavailable`); with the ``ray`` executor the orphan sweep calls the
cluster every ``orphan_sweep_interval`` even when no request does. Liveness stays kopf's
``/healthz``: restarting the operator would not fix a cluster that refuses it.
"""

from __future__ import annotations

import http.server
import logging
import threading
import time

from botfleet_operator import metrics
from botfleet_operator.failures import ExecutorUnavailable

log = logging.getLogger("botfleet_operator")


class ExecutorHealth:
    """The last word of the executor's cluster: answered, or unavailable and why."""

    def __init__(self, executor: str) -> None:
        self.executor = executor
        self._lock = threading.Lock()
        self.problem: ExecutorUnavailable | None = None
        self.up_since: float | None = None  # monotonic time the cluster last started answering

    def answered(self) -> None:
        with self._lock:
            was, self.problem = self.problem, None
            if self.up_since is None or was is not None:
                self.up_since = time.monotonic()
        metrics.EXECUTOR_UP.labels(self.executor).set(1)
        if was is not None:
            log.info("executor %s: the cluster at %s answers again", self.executor, was.address)

    def unavailable(self, problem: ExecutorUnavailable) -> None:
        with self._lock:
            was, self.problem = self.problem, problem
        metrics.EXECUTOR_UP.labels(self.executor).set(0)
        if was is None or was.reason != problem.reason:
            log.warning("executor %s: %s: %s", self.executor, problem.reason, problem)

    def readiness(self) -> tuple[bool, str]:
        """(ready, why): not ready only while the cluster is known to refuse or be unreachable."""
        problem = self.problem
        if problem is None:
            return True, f"ok: executor {self.executor}"
        return False, f"executor {self.executor} is down: {problem.reason}: {problem}"


def serve_readiness(port: int, address: str, health: ExecutorHealth) -> http.server.ThreadingHTTPServer | None:
    """Serve GET /readyz on ``address:port`` (200, or 503 with the reason) in a daemon thread."""
    if not port:
        return None

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            if self.path.split("?", 1)[0] != "/readyz":
                self.send_error(404)
                return
            ready, why = health.readiness()
            body = (why + "\n").encode()
            self.send_response(200 if ready else 503)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # probes every few seconds: not worth a log line
            pass

    server = http.server.ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="readiness", daemon=True).start()
    return server
