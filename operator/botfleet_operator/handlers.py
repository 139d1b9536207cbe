"""The kopf side: handlers that trigger reconciles, and the operator's entrypoints.

Level-based: a per-object timer reconciles every unfinished BotRequest every
``reconcile_interval`` seconds, and a watch-event handler reacts at once to new objects and
spec changes. Every write to a BotRequest is a status patch; kopf keeps its own bookkeeping
in annotations (never in the pruned status), and a finalizer is added only to requests with
``spec.output.deletePolicy: Delete`` (their artifacts must go before the object does).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import logging
import os
import time

from botfleet import api
from botfleet_operator import metrics
from botfleet_operator.settings import Settings
from botfleet_operator.queue import queue_entry
from botfleet_operator.status import is_terminal_for

log = logging.getLogger("botfleet_operator")

FINALIZER = "botfleet.dev/delete-artifacts"
INDEX = "botrequests_queue"


def _plain(body) -> dict:
    """A deep, plain-dict copy of a kopf body."""
    return copy.deepcopy({k: body[k] for k in body})


def _api_clients(settings: Settings):
    import kubernetes

    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = max(4, settings.workers)
    client = kubernetes.client.ApiClient(configuration)
    return kubernetes.client.CustomObjectsApi(client), kubernetes.client.CoreV1Api(client)


def build(settings: Settings):
    """Make the kopf registry, the kopf settings and the reconciler for ``settings``."""
    import kopf

    from botfleet_operator.executors import META_REQUEST, KubeRayExecutor, RayExecutor, orphaned_jobs
    from botfleet_operator.reconciler import Reconciler
    from botfleet.storage import S3Config, Storage

    custom, core = _api_clients(settings)
    s3 = S3Config.from_env()
    if s3 is None and settings.s3_endpoint and os.environ.get("AWS_ACCESS_KEY_ID"):
        s3 = S3Config.from_env({**os.environ, "BOTFLEET_S3_ENDPOINT": settings.s3_endpoint})
    if s3 is not None and not settings.s3_endpoint:
        settings.s3_endpoint = s3.endpoint
    if s3 is not None and s3.region and not settings.s3_region:
        settings.s3_region = s3.region
    storage = Storage(s3) if s3 is not None else None
    if storage is None:
        log.warning("no object store configured (BOTFLEET_S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY):"
                    " status will not show counts, progress or metrics")

    def read_secret(namespace: str, name: str, key: str) -> str | None:
        import base64

        from kubernetes.client.exceptions import ApiException

        try:
            secret = core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        raw = (secret.data or {}).get(key)
        return base64.b64decode(raw).decode() if raw is not None else None

    if settings.executor == "kuberay":
        executor = KubeRayExecutor(settings, custom)
    else:
        # Not the operator's CA file path: the Ray cluster's nodes have their own files
        # (they set BOTFLEET_S3_CA_FILE themselves when the store needs one).
        s3_env = {k: v for k, v in (s3.to_env() if s3 else {}).items() if k != "BOTFLEET_S3_CA_FILE"}
        executor = RayExecutor(settings, read_secret, s3_env)

    def patch_status(namespace: str, name: str, patch: dict) -> None:
        custom.patch_namespaced_custom_object_status(
            api.GROUP, api.VERSION, namespace, api.PLURAL, name, {"status": patch},
            _content_type="application/merge-patch+json",
        )

    def request_uid(namespace: str, name: str) -> str | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return custom.get_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, name)["metadata"]["uid"]
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    reconciler = Reconciler(settings, executor, storage, patch_status, request_uid)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="reconcile")

    registry = kopf.OperatorRegistry()
    resource = (api.GROUP, api.VERSION, api.PLURAL)

    @kopf.index(*resource, registry=registry, id=INDEX)
    def queue_index(namespace, name, body, **_):
        return {f"{namespace}/{name}": (queue_entry(body), (body.get("status") or {}).get("phase"))}

    def snapshot(index) -> list:
        entries = []
        for store in list(index.values()):
            for entry, _phase in list(store):
                entries.append(entry)
        return entries

    stopped_orphans: set[str] = set()

    def sweep_orphans() -> None:
        """Stop the Ray jobs whose BotRequest was deleted, or got a new spec, while no
        operator ran (with kuberay, the garbage collector does this for RayJobs)."""
        # Jobs first: one submitted after this listing is for a request the list below has.
        active = executor.active_jobs()
        if settings.namespaces:
            requests = [r for ns in settings.namespaces for r in custom.list_namespaced_custom_object(api.GROUP, api.VERSION, ns, api.PLURAL)["items"]]
        else:
            requests = custom.list_cluster_custom_object(api.GROUP, api.VERSION, api.PLURAL)["items"]
        wanted = {executor.name(body) for body in requests}
        for job_id in orphaned_jobs(active, wanted, settings.namespaces):
            if job_id in stopped_orphans:  # stopping takes Ray a few seconds: once is enough
                continue
            stopped_orphans.add(job_id)
            log.warning("stopping Ray job %s: its BotRequest %s is gone or has a newer spec", job_id, active[job_id][META_REQUEST])
            executor.stop(job_id)
            metrics.ORPHANS_STOPPED.inc()

    objects: dict[str, dict] = {}  # key -> latest body seen by the watch
    inflight: set[str] = set()
    shared: dict = {}  # "index": kopf's queue index (complete before any handler runs)
    tasks: set = set()

    def current_phases():
        return [(body.get("status") or {}).get("phase") for body in list(objects.values())]

    async def run_reconcile(key: str) -> None:
        body = objects.get(key)
        if body is None:
            return
        index = shared.get("index")
        entries = snapshot(index) if index is not None else [queue_entry(b) for b in list(objects.values())]
        loop = asyncio.get_running_loop()
        try:
            outcome = await loop.run_in_executor(pool, reconciler.reconcile, body, entries)
        except Exception as exc:
            metrics.RECONCILE_ERRORS.labels(type(exc).__name__).inc()
            log.exception("reconcile of %s failed", key)
            outcome = None
            events = [("Warning", "ReconcileError", f"{type(exc).__name__}: {exc}")]
        else:
            events = outcome.events
        if events:
            await loop.run_in_executor(pool, post_events, body, events)

    def post_events(body: dict, events) -> None:
        import datetime

        from kubernetes import client as k8s

        meta = body["metadata"]
        now = datetime.datetime.now(datetime.timezone.utc)
        for kind, reason, message in events:
            event = k8s.CoreV1Event(
                metadata=k8s.V1ObjectMeta(generate_name=f"{meta['name']}.", namespace=meta["namespace"]),
                involved_object=k8s.V1ObjectReference(
                    api_version=api.API_VERSION, kind=api.KIND, name=meta["name"], namespace=meta["namespace"],
                    uid=meta.get("uid"), resource_version=meta.get("resourceVersion"),
                ),
                reason=reason, message=message[:1024], type=kind, count=1,
                first_timestamp=now, last_timestamp=now,
                source=k8s.V1EventSource(component="botfleet-operator"),
                reporting_component="botfleet.dev/operator", reporting_instance=os.environ.get("HOSTNAME", "botfleet-operator"),
            )
            try:
                core.create_namespaced_event(meta["namespace"], event)
            except Exception as exc:  # noqa: BLE001 - events are best effort
                log.warning("cannot post event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], exc)

    def schedule(key: str) -> None:
        """Reconcile ``key`` soon, unless a reconcile of it is already under way."""
        if key in inflight:
            return
        inflight.add(key)

        async def go():
            try:
                await run_reconcile(key)
            finally:
                inflight.discard(key)

        task = asyncio.get_running_loop().create_task(go())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def unfinished(body: dict) -> bool:
        return not is_terminal_for(body) and not body.get("metadata", {}).get("deletionTimestamp")

    async def level_loop() -> None:
        """Every reconcile_interval, reconcile each unfinished request (one task for all,
        not a kopf timer per object: timers would put a finalizer on every object); every
        orphan_sweep_interval, with the ray executor, stop the jobs no request wants."""
        next_sweep = 0.0
        while True:
            await asyncio.sleep(settings.reconcile_interval)
            for key, body in list(objects.items()):
                if unfinished(body):
                    schedule(key)
            if settings.executor == "ray" and time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + settings.orphan_sweep_interval
                try:
                    await asyncio.get_running_loop().run_in_executor(pool, sweep_orphans)
                except Exception as exc:  # noqa: BLE001 - retried at the next sweep
                    log.warning("cannot sweep for orphaned Ray jobs: %s", exc)

    @kopf.on.login(registry=registry)
    def login(**kwargs):
        # A private registry has none of kopf's default login handlers: in-cluster service
        # account first, then $KUBECONFIG, as the kubernetes client does.
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_):
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="botfleet.dev")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="botfleet.dev", key="last-handled-configuration")
        settings.persistence.finalizer = FINALIZER
        settings.posting.level = logging.INFO
        settings.execution.max_workers = settings_obj.workers
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        shared["loop_task"] = asyncio.get_running_loop().create_task(level_loop())

    @kopf.on.cleanup(registry=registry)
    async def stop(**_):
        task = shared.pop("loop_task", None)
        if task is not None:
            task.cancel()

    settings_obj = settings

    @kopf.on.event(*resource, registry=registry, id="react")
    async def react(event, body, logger, **kwargs):
        shared["index"] = kwargs[INDEX]
        kind = event.get("type")
        meta = body.get("metadata", {})
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        if kind == "DELETED":
            objects.pop(key, None)
            reconciler.forget(key)
            job = ((body.get("status") or {}).get("job") or {}).get("name")
            if job and settings.executor == "ray":  # KubeRay's RayJob goes with its owner (GC)
                loop = asyncio.get_running_loop()
                try:
                    await loop.run_in_executor(pool, executor.delete, _plain(body), job)
                except Exception as exc:  # noqa: BLE001 - best effort
                    logger.warning("cannot stop Ray job %s: %s", job, exc)
            return
        raw = _plain(body)
        objects[key] = raw
        status = raw.get("status") or {}
        if unfinished(raw) and (not status or status.get("observedGeneration") != meta.get("generation")):
            schedule(key)  # new, or its spec changed: at once, not at the next tick

    def deletes_artifacts(spec, **_) -> bool:
        return (spec.get("output") or {}).get("deletePolicy") == "Delete"

    @kopf.on.delete(*resource, registry=registry, id="delete-artifacts", when=deletes_artifacts)
    def delete_artifacts(body, logger, **_):
        raw = _plain(body)
        job = ((raw.get("status") or {}).get("job") or {}).get("name")
        if job:
            executor.delete(raw, job)
        try:
            count = reconciler.delete_artifacts(raw)
        except Exception as exc:
            raise kopf.TemporaryError(f"cannot delete the artifacts: {exc}", delay=10) from exc
        logger.info("deleted %d objects under %s", count, api.parse_spec(raw["spec"]).model_uri)

    return registry, reconciler, current_phases

