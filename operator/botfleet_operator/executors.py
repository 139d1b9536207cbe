"""The two ways a training runs, behind one interface.

``name(body)`` the job's deterministic name for the request's current generation;
``observe(body, name)`` what exists (a :class:`JobObservation`); ``submit(body, spec)`` make
it exist for the request's :class:`JobSpec` (idempotent: an existing job is adopted, never
duplicated); ``delete(body, name)`` stop and remove it. All calls block (the runtime runs
them in threads).
"""

from __future__ import annotations

import logging
from typing import Protocol

from botfleet_operator import rayjob as render
from botfleet_operator.observation import JobObservation, observe_ray_job, observe_rayjob
from botfleet_operator.rayjob import JobSpec
from botfleet_operator.settings import Settings

log = logging.getLogger("botfleet_operator")

RAY_GROUP, RAY_VERSION, RAYJOBS = "ray.io", "v1", "rayjobs"

# The metadata of a job botfleet submits to Ray (the ``ray`` executor).
META_REQUEST, META_GENERATION = "botfleet.dev/request", "botfleet.dev/generation"
RAY_ACTIVE = ("PENDING", "RUNNING")


class Executor(Protocol):
    kind: str

    def name(self, body: dict) -> str: ...

    def observe(self, body: dict, name: str) -> JobObservation: ...

    def submit(self, body: dict, spec: JobSpec) -> JobObservation: ...

    def delete(self, body: dict, name: str) -> bool:
        """Stop and remove the job; True once it is gone (nothing of it runs any more)."""
        ...


def _generation(body: dict) -> int:
    return int(body["metadata"].get("generation") or 1)


def orphaned_jobs(active: dict[str, dict], wanted: set[str], namespaces: tuple[str, ...]) -> list[str]:
    """The pending or running Ray jobs botfleet submitted that no BotRequest wants any more:
    deleted, or changed to a newer generation, while no operator ran.

    ``active`` maps the cluster's active submission ids to their metadata; ``wanted`` is each
    known request's job name for its current generation. Jobs that are not botfleet's, or
    belong to a namespace this operator does not watch, are left alone.
    """
    orphans = []
    for job_id, metadata in sorted(active.items()):
        request = metadata.get(META_REQUEST)
        if not request or job_id in wanted:
            continue
        if namespaces and request.split("/", 1)[0] not in namespaces:
            continue
        orphans.append(job_id)
    return orphans


class KubeRayExecutor:
    """A KubeRay ``RayJob`` per request generation, owned by the BotRequest."""

    kind = "kuberay"

    def __init__(self, settings: Settings, custom_api) -> None:
        self.settings = settings
        self.api = custom_api  # kubernetes.client.CustomObjectsApi

    def name(self, body: dict) -> str:
        meta = body["metadata"]
        return render.job_name(meta["name"], _generation(body), meta.get("namespace", ""))

    def _get(self, namespace: str, name: str) -> dict | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.api.get_namespaced_custom_object(RAY_GROUP, RAY_VERSION, namespace, RAYJOBS, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _ours(self, body: dict, rayjob: dict) -> bool:
        uid = body["metadata"].get("uid")
        owners = rayjob.get("metadata", {}).get("ownerReferences") or []
        return any(o.get("uid") == uid for o in owners)

    def observe(self, body: dict, name: str) -> JobObservation:
        rayjob = self._get(body["metadata"]["namespace"], name)
        if rayjob is not None and not self._ours(body, rayjob):
            # A predecessor's (same name, deleted BotRequest) RayJob the garbage collector
            # has not removed yet: not ours; it goes away on its own.
            return JobObservation(
                self.kind, name, message="an older object's RayJob of the same name is being garbage-collected"
            )
        if rayjob is not None and rayjob["metadata"].get("deletionTimestamp"):
            return JobObservation(self.kind, name)
        return observe_rayjob(name, rayjob)

    def submit(self, body: dict, spec: JobSpec) -> JobObservation:
        from kubernetes.client.exceptions import ApiException

        manifest = render.render_rayjob(body, spec, self.settings)
        namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        try:
            created = self.api.create_namespaced_custom_object(RAY_GROUP, RAY_VERSION, namespace, RAYJOBS, manifest)
        except ApiException as exc:
            if exc.status != 409:
                raise
            return self.observe(body, name)  # already there: adopt it if it is this request's
        return observe_rayjob(name, created)

    def delete(self, body: dict, name: str) -> bool:
        from kubernetes.client.exceptions import ApiException

        namespace = body["metadata"]["namespace"]
        try:
            # Foreground: the RayJob stays until its Ray cluster and pods are gone, so "gone"
            # means nothing of the job can still write.
            self.api.delete_namespaced_custom_object(
                RAY_GROUP, RAY_VERSION, namespace, RAYJOBS, name, propagation_policy="Foreground"
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            return True
        return self._get(namespace, name) is None


class RayExecutor:
    """A job submitted to an existing Ray cluster through Ray's job submission API."""

    kind = "ray"

    def __init__(self, settings: Settings, secret_reader, s3_env: dict[str, str]) -> None:
        self.settings = settings
        self.read_secret = secret_reader  # (namespace, name, key) -> str | None
        self.s3_env = s3_env
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            self._client = JobSubmissionClient(self.settings.ray_address)
        return self._client

    def name(self, body: dict) -> str:
        meta = body["metadata"]
        return render.submission_id(
            meta.get("namespace", "default"), meta["name"], meta.get("uid", ""), _generation(body)
        )

    def _info(self, name: str):
        try:
            return self.client.get_job_info(name)
        except RuntimeError as exc:  # the client raises RuntimeError on 404
            if "404" in str(exc) or "does not exist" in str(exc).lower() or "not found" in str(exc).lower():
                return None
            raise

    def observe(self, body: dict, name: str) -> JobObservation:
        info = self._info(name)
        if info is None:
            return observe_ray_job(name, None)
        return observe_ray_job(
            name, str(getattr(info.status, "value", info.status)), info.message, info.start_time, info.end_time
        )

    def _env(self, body: dict, spec: JobSpec) -> dict[str, str]:
        """The job's environment, with the values of the Secrets it names: Ray's job API
        takes no Secret references."""
        namespace = body["metadata"]["namespace"]
        values: dict[str, str] = {}
        for ref in render.referenced_secrets(spec.typed):
            value = self.read_secret(namespace, ref.name, ref.key)
            if value is not None:
                values[render.secret_env_name(ref)] = value
        wandb = render.wandb_key(spec.typed, self.settings)
        value = self.read_secret(namespace, wandb[0].name, wandb[0].key) if wandb is not None else None
        if value:
            values["WANDB_API_KEY"] = value
        return render.ray_job_env(body, spec, self.s3_env, values)

    def submit(self, body: dict, spec: JobSpec) -> JobObservation:
        name = self.name(body)
        existing = self.observe(body, name)
        if existing.exists:
            return existing
        meta = body["metadata"]
        try:
            self.client.submit_job(
                entrypoint=self.settings.job_entrypoint,
                submission_id=name,
                runtime_env={"env_vars": self._env(body, spec)},
                metadata={META_REQUEST: f"{meta['namespace']}/{meta['name']}", META_GENERATION: str(_generation(body))},
            )
        except RuntimeError:
            # Refused: most likely it exists already (a concurrent or earlier submit).
            existing = self.observe(body, name)
            if existing.exists:
                return existing
            raise
        return self.observe(body, name)

    def delete(self, body: dict, name: str) -> bool:
        info = self._info(name)
        if info is not None and str(getattr(info.status, "value", info.status)) in RAY_ACTIVE:
            self.stop(name)
            return False  # Ray stops it in the background: ask again
        return True

    def stop(self, name: str) -> None:
        try:
            self.client.stop_job(name)
        except RuntimeError as exc:
            log.warning("could not stop Ray job %s: %s", name, exc)

    def active_jobs(self) -> dict[str, dict]:
        """The cluster's pending and running submitted jobs: submission id -> metadata."""
        return {
            job.submission_id: dict(job.metadata or {})
            for job in self.client.list_jobs()
            if job.submission_id and str(getattr(job.status, "value", job.status)) in RAY_ACTIVE
        }
