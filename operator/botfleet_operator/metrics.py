"""Prometheus metrics of the operator (served on ``--metrics-port`` at /metrics)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

from botfleet import api

RECONCILE_SECONDS = Histogram(
    "botfleet_reconcile_duration_seconds",
    "Time one reconcile of one BotRequest took.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RECONCILES = Counter(
    "botfleet_reconciles_total",
    "Reconciles started, by what asked for them: the watch (a new request or spec) or the level loop.",
    ["trigger"],
)
RECONCILE_ERRORS = Counter("botfleet_reconcile_errors_total", "Reconciles that raised an error.", ["error"])
JOBS_STARTED = Counter("botfleet_jobs_started_total", "Training jobs created.", ["executor"])
JOB_SECONDS = Histogram(
    "botfleet_job_duration_seconds",
    "From a request's start to Succeeded or Failed.",
    ["phase"],
    buckets=(10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800),
)
ORPHANS_STOPPED = Counter(
    "botfleet_orphaned_jobs_stopped_total", "Ray jobs stopped because their BotRequest was gone or newer."
)
FAILURES = Counter("botfleet_failures_total", "BotRequests that ended Failed, by reason.", ["reason"])


class PhaseCollector:
    """``botfleet_botrequests{phase=...}``: how many BotRequests are in each phase now."""

    def __init__(self, phases: Callable[[], Iterable[str | None]]) -> None:
        self.phases = phases

    def collect(self):
        counts = {phase: 0 for phase in api.PHASES}
        counts["Unknown"] = 0
        for phase in self.phases():
            counts[phase if phase in counts else "Unknown"] += 1
        family = GaugeMetricFamily("botfleet_botrequests", "BotRequests by phase.", labels=["phase"])
        for phase, count in counts.items():
            family.add_metric([phase], count)
        yield family


_collector: PhaseCollector | None = None


def serve(port: int, address: str, phases: Callable[[], Iterable[str | None]]):
    """Register the phase gauge and start the HTTP endpoint (returns the server, or None)."""
    global _collector
    if _collector is not None:
        REGISTRY.unregister(_collector)
    _collector = PhaseCollector(phases)
    REGISTRY.register(_collector)
    if port:
        return start_http_server(port, addr=address)
    return None


EXECUTOR_UP = Gauge(
    "botfleet_executor_up",
    "1 while the executor's cluster answers the operator; 0 while it refuses it or cannot be reached"
    " (requests then show RayUnauthorized or RayUnreachable).",
    ["executor"],
)
