"""The operator's one runtime object: what the kopf handlers share, and when reconciles run.

Level-based: the watch schedules a reconcile at once for a new request or a spec change,
and one loop reconciles every unfinished request ``reconcile_interval`` seconds after its
last reconcile. At most one reconcile of a request runs at a time; reconciles block
(Kubernetes, S3, Ray) and run in a thread pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import time
from dataclasses import dataclass, field

from botfleet.storage import S3Config, Storage
from botfleet_operator import metrics
from botfleet_operator.executors import META_REQUEST, Executor, KubeRayExecutor, RayExecutor, orphaned_jobs
from botfleet_operator.failures import ExecutorUnavailable, FailureState, describe, is_due, on_failure
from botfleet_operator.health import ExecutorHealth
from botfleet_operator.kube import Kube
from botfleet_operator.queue import queue_entry, request_key
from botfleet_operator.reconciler import Reconciler
from botfleet_operator.refresh import wants_refresh
from botfleet_operator.serving import ServingSync
from botfleet_operator.settings import Settings
from botfleet_operator.status import is_terminal_for

log = logging.getLogger("botfleet_operator")
LEVEL_TICKS = 4  # level-loop ticks per reconcile_interval: a request waits at most 1/4 more


def job_of(body: dict) -> str | None:
    """The name of the job the request's status names, if any."""
    return ((body.get("status") or {}).get("job") or {}).get("name")


def unfinished(body: dict) -> bool:
    """Whether the request has work to do: its current generation, or a refresh."""
    if body.get("metadata", {}).get("deletionTimestamp"):
        return False
    return not is_terminal_for(body) or wants_refresh(body)


def due_for_level(bodies: dict[str, dict], reconciled_at: dict[str, float], now: float, interval: float) -> list[str]:
    """The unfinished requests whose last reconcile ended ``interval`` seconds ago or more
    (or never ran): one the watch just reconciled is not done again at the next tick."""
    return [
        key
        for key, body in bodies.items()
        if unfinished(body) and now - reconciled_at.get(key, float("-inf")) >= interval
    ]


def object_store(settings: Settings) -> S3Config | None:
    """The operator's object store (its BOTFLEET_S3_* variables, else ``settings.s3_endpoint``
    with its AWS_* keys); fills in the endpoint and region the jobs get where settings have none."""
    s3 = S3Config.from_env()
    if s3 is None and settings.s3_endpoint and os.environ.get("AWS_ACCESS_KEY_ID"):
        s3 = S3Config.from_env({**os.environ, "BOTFLEET_S3_ENDPOINT": settings.s3_endpoint})
    if s3 is not None and not settings.s3_endpoint:
        settings.s3_endpoint = s3.endpoint
    if s3 is not None and s3.region and not settings.s3_region:
        settings.s3_region = s3.region
    if s3 is None:
        log.warning(
            "no object store configured (BOTFLEET_S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY):"
            " status will not show counts, progress or metrics"
        )
    return s3


@dataclass
class Runtime:
    """Made once by :func:`botfleet_operator.run` before kopf starts; every handler reaches it
    as ``memo.runtime``. Its state lives in kopf's event loop thread; reconciles in ``pool``."""

    settings: Settings
    kube: Kube
    executor: Executor
    reconciler: Reconciler
    pool: concurrent.futures.ThreadPoolExecutor
    health: ExecutorHealth
    bodies: dict[str, dict] = field(default_factory=dict)  # key -> the latest body the watch delivered
    index: object | None = None  # kopf's queue index (handlers.queue_index), once the watch has passed it
    _inflight: set[str] = field(default_factory=set)  # keys with a reconcile scheduled or running
    _reconciled_at: dict[str, float] = field(default_factory=dict)  # key -> when its last reconcile ended
    _tasks: set[asyncio.Task] = field(default_factory=set)
    _stopped_orphans: set[str] = field(default_factory=set)
    _level_loop: asyncio.Task | None = None
    failing: dict[str, FailureState] = field(default_factory=dict)  # key -> its reconciles' failure
    _sweep_error: str | None = None  # the orphan sweep's last failure, logged once
    serving: ServingSync | None = None  # with a serving catalog (settings.serving_catalog)
    _serving_loop: asyncio.Task | None = None
    # Events are posted one at a time, in order, off the reconcile threads: under a burst of
    # new requests they would otherwise hold reconcile threads and compete at the API server
    # with the RayJob creates and status patches. Best effort, like kopf's own event posting;
    # the ones queued at exit are still posted (the executor's thread is joined then).
    _event_poster: concurrent.futures.ThreadPoolExecutor = field(
        default_factory=lambda: concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="events")
    )

    @classmethod
    def create(cls, settings: Settings) -> Runtime:
        """Connect to Kubernetes and the object store and make the executor and reconciler."""
        kube = Kube(settings.workers)
        s3 = object_store(settings)
        health = ExecutorHealth(settings.executor)
        if settings.executor == "kuberay":
            executor = KubeRayExecutor(settings, kube.custom)
            health.answered()  # the Kubernetes API: kopf's watch and liveness say if it is down
        else:
            # Not the operator's CA file path: the Ray cluster's nodes have their own files
            # (they set BOTFLEET_S3_CA_FILE themselves when the store needs one).
            s3_env = {k: v for k, v in (s3.to_env() if s3 else {}).items() if k != "BOTFLEET_S3_CA_FILE"}
            executor = RayExecutor(settings, kube.read_secret, s3_env, health)
        storage = Storage(s3, connections=settings.workers) if s3 is not None else None
        if storage is not None:
            # The client now, not in the first reconciles: under a burst of new requests
            # every reconcile thread waited on the first one's import of the S3 client.
            storage.client  # noqa: B018
        reconciler = Reconciler(settings, executor, storage, kube.patch_status, kube.request_uid, kube.read_secret)
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="reconcile")
        serving = None
        if settings.serving_catalog:
            # With kuberay the chart runs the application (a RayService); with ray, the operator deploys it.
            ray = isinstance(executor, RayExecutor)
            serving = ServingSync(
                settings,
                Storage(s3),
                kube.list_requests,
                kube.patch_status,
                executor.s3_env if ray else None,
                ray_headers=executor.access.headers if ray else dict,
            )
        return cls(settings, kube, executor, reconciler, pool, health, serving=serving)

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the level loop (in the running event loop)."""
        self._level_loop = asyncio.get_running_loop().create_task(self._run_level_loop())
        if self.serving is not None:
            self._serving_loop = asyncio.get_running_loop().create_task(self.serving.run(self.pool))

    def stop(self) -> None:
        if self._level_loop is not None:
            self._level_loop.cancel()
            self._level_loop = None
        if self._serving_loop is not None:
            self._serving_loop.cancel()
            self._serving_loop = None

    def current_phases(self) -> list[str | None]:
        """The phase of every request the watch has delivered (the metrics' phase gauge)."""
        return [(body.get("status") or {}).get("phase") for body in list(self.bodies.values())]

    # ----------------------------------------------------------------- the watch

    def seen(self, body: dict) -> None:
        """A request was added or changed: remember it; reconcile it at once if it is new or
        its spec changed, not only at the next tick."""
        key = request_key(body)
        self.bodies[key] = body
        status = body.get("status") or {}
        changed = not status or status.get("observedGeneration") != body["metadata"].get("generation")
        if unfinished(body) and (changed or wants_refresh(body)):
            self.schedule(key, "watch")

    async def gone(self, body: dict, logger: logging.Logger | logging.LoggerAdapter) -> None:
        """A request was deleted: forget it, and stop its Ray job (with kuberay, the garbage
        collector removes the RayJob with its owner). ``logger``: the request's (kopf's)."""
        key = request_key(body)
        self.bodies.pop(key, None)
        self.failing.pop(key, None)
        self._reconciled_at.pop(key, None)
        self.reconciler.forget(key)
        job = job_of(body)
        if job and self.settings.executor == "ray":
            try:
                await asyncio.get_running_loop().run_in_executor(self.pool, self.executor.delete, body, job)
            except Exception as exc:  # noqa: BLE001 - best effort
                logger.warning("cannot stop Ray job %s: %s", job, exc)

    # ----------------------------------------------------------------- reconciles

    def schedule(self, key: str, trigger: str) -> None:
        """Reconcile ``key`` soon, unless a reconcile of it is already under way; ``trigger``
        says who asks (the reconciles metric's label)."""
        if key in self._inflight:
            return
        self._inflight.add(key)
        metrics.RECONCILES.labels(trigger).inc()
        task = asyncio.get_running_loop().create_task(self._reconcile(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _queue(self) -> list:
        """Every request's queue entry: from kopf's index (complete from the start), or from
        the bodies seen so far until the watch has passed the index on."""
        if self.index is None:
            return [queue_entry(body) for body in list(self.bodies.values())]
        return [entry for store in list(self.index.values()) for entry, _phase in list(store)]

    async def _reconcile(self, key: str) -> None:
        try:
            body = self.bodies.get(key)
            if body is None:
                return
            loop = asyncio.get_running_loop()
            try:
                outcome = await loop.run_in_executor(self.pool, self.reconciler.reconcile, body, self._queue())
            except Exception as exc:
                metrics.RECONCILE_ERRORS.labels(type(exc).__name__).inc()
                events = await self._failed(key, body, exc)
            else:
                if self.failing.pop(key, None) is not None:
                    log.info("%s: reconciles work again", key)
                events = outcome.events
            if events:
                self._event_poster.submit(self.kube.post_events, body, events)
        finally:
            self._reconciled_at[key] = time.monotonic()
            self._inflight.discard(key)

    async def _failed(self, key: str, body: dict, exc: Exception) -> list[tuple[str, str, str]]:
        """Record a failed reconcile (failures.py decides): the status says why at once; the
        event and the log line come once per reason (the executor's own trouble is logged by
        its health, once for all requests); the traceback only at debug level."""
        decision = on_failure(
            self.failing.get(key),
            describe(exc),
            time.monotonic(),
            self.settings.reconcile_interval,
            self.settings.retry_max_interval,
        )
        self.failing[key] = decision.state
        failure = decision.state.failure
        log.debug("reconcile of %s failed", key, exc_info=exc)
        if decision.announce and not failure.executor:
            log.warning("%s: %s (retried less and less often)", key, failure.message)
        try:
            await asyncio.get_running_loop().run_in_executor(self.pool, self.reconciler.report_failure, body, failure)
        except Exception as report_exc:  # noqa: BLE001 - the next failure tries again
            log.debug("cannot write the failure of %s to its status: %s", key, report_exc)
        return [("Warning", failure.reason, failure.message)] if decision.announce else []

    def _due(self, key: str) -> bool:
        return is_due(self.failing.get(key), time.monotonic(), self.health.up_since)

    async def _run_level_loop(self) -> None:
        """Reconcile each unfinished request reconcile_interval after its last reconcile
        (one task for all, not a kopf timer per object: timers would put a finalizer on
        every object); every orphan_sweep_interval, with the ray executor, stop the jobs no
        request wants."""
        next_sweep = 0.0
        interval = self.settings.reconcile_interval
        while True:
            await asyncio.sleep(interval / LEVEL_TICKS)
            for key in due_for_level(dict(self.bodies), self._reconciled_at, time.monotonic(), interval):
                if self._due(key):  # a request whose reconciles fail waits out its backoff
                    self.schedule(key, "level")
            if self.settings.executor == "ray" and time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + self.settings.orphan_sweep_interval
                try:
                    await asyncio.get_running_loop().run_in_executor(self.pool, self._sweep_orphans)
                    self._sweep_error = None
                except Exception as exc:  # noqa: BLE001 - retried at the next sweep
                    # Once per change (an unavailable cluster: its health says it).
                    if str(exc) != self._sweep_error and not isinstance(exc, ExecutorUnavailable):
                        log.warning("cannot sweep for orphaned Ray jobs: %s", exc)
                    self._sweep_error = str(exc)

    def _sweep_orphans(self) -> None:
        """Stop the Ray jobs whose BotRequest was deleted, or got a new spec, while no
        operator ran (with kuberay, the garbage collector does this for RayJobs)."""
        # Jobs first: one submitted after this listing is for a request the list below has.
        active = self.executor.active_jobs()
        self._stopped_orphans &= active.keys()  # a stopped job is no longer active: forget it
        wanted = {self.executor.name(body) for body in self.kube.list_requests(self.settings.namespaces)}
        for job_id in orphaned_jobs(active, wanted, self.settings.namespaces):
            if job_id in self._stopped_orphans:  # stopping takes Ray a few seconds: once is enough
                continue
            self._stopped_orphans.add(job_id)
            log.warning(
                "stopping Ray job %s: its BotRequest %s is gone or has a newer spec",
                job_id,
                active[job_id][META_REQUEST],
            )
            self.executor.stop(job_id)
            metrics.ORPHANS_STOPPED.inc()
