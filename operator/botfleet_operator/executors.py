"""The two ways a training runs, behind one interface.

``name(body)`` the job's deterministic name for the request's current run (its generation,
refresh and retry);
``observe(body, name)`` what exists (a :class:`JobObservation`); ``submit(body, spec)`` make
it exist for the request's :class:`JobSpec` (idempotent: an existing job is adopted, never
duplicated); ``delete(body, name)`` stop and remove it; ``suspend(body, name)`` stop it for
spec.suspend and ``resume(body, name)`` undo that, where the job itself can go on
(``resumes_in_place``; otherwise the resumed run is a new job). All calls block (the
runtime runs them in threads).
"""

from __future__ import annotations

import logging
from typing import Protocol

from botfleet_operator import rayjob as render
from botfleet_operator.failures import ExecutorUnavailable
from botfleet_operator.health import ExecutorHealth
from botfleet_operator.observation import JobObservation, observe_ray_job, observe_rayjob
from botfleet_operator.ray_access import RayAccess, RayToken, auth_headers
from botfleet_operator.rayjob import JobSpec
from botfleet_operator.refresh import run_tag
from botfleet_operator.settings import Settings

log = logging.getLogger("botfleet_operator")

RAY_GROUP, RAY_VERSION, RAYJOBS = "ray.io", "v1", "rayjobs"

# The metadata of a job botfleet submits to Ray (the ``ray`` executor).
META_REQUEST, META_GENERATION = "botfleet.dev/request", "botfleet.dev/generation"
RAY_ACTIVE = ("PENDING", "RUNNING")
# On a RayJob botfleet suspended (spec.suspend), not Kueue: only those does botfleet resume.
SUSPENDED_BY = "botfleet.dev/suspended-by"


class Executor(Protocol):
    kind: str

    def name(self, body: dict) -> str: ...

    def observe(self, body: dict, name: str) -> JobObservation: ...

    def submit(self, body: dict, spec: JobSpec) -> JobObservation: ...

    def delete(self, body: dict, name: str) -> bool:
        """Stop and remove the job; True once it is gone (nothing of it runs any more)."""
        ...

    resumes_in_place: bool

    def suspend(self, body: dict, name: str) -> bool:
        """Stop the job for spec.suspend; True once nothing of it runs any more."""
        ...

    def resume(self, body: dict, name: str) -> None:
        """Let a job this executor suspended go on (a no-op for any other job)."""
        ...


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
        return render.rayjob_name(body)

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

    # KubeRay suspends a RayJob by deleting its Ray cluster and keeping the RayJob; resumed,
    # it makes a new cluster and submits the job again, which resumes from its checkpoint.
    resumes_in_place = True

    def _patch(self, namespace: str, name: str, patch: dict) -> None:
        self.api.patch_namespaced_custom_object(
            RAY_GROUP, RAY_VERSION, namespace, RAYJOBS, name, patch, _content_type="application/merge-patch+json"
        )

    def suspend(self, body: dict, name: str) -> bool:
        namespace = body["metadata"]["namespace"]
        rayjob = self._get(namespace, name)
        if rayjob is None:
            return True
        if not (rayjob.get("spec") or {}).get("suspend"):
            marked = {"metadata": {"annotations": {SUSPENDED_BY: "spec.suspend"}}, "spec": {"suspend": True}}
            self._patch(namespace, name, marked)
            return False
        return (rayjob.get("status") or {}).get("jobDeploymentStatus") == "Suspended"

    def resume(self, body: dict, name: str) -> None:
        namespace = body["metadata"]["namespace"]
        rayjob = self._get(namespace, name)
        if rayjob is not None and (rayjob["metadata"].get("annotations") or {}).get(SUSPENDED_BY):
            self._patch(
                namespace, name, {"metadata": {"annotations": {SUSPENDED_BY: None}}, "spec": {"suspend": False}}
            )


class RayExecutor:
    """A job submitted to an existing Ray cluster through Ray's job submission API, with the
    cluster's token when it has one (every call goes through :meth:`_ray`)."""

    kind = "ray"

    def __init__(
        self, settings: Settings, secret_reader, s3_env: dict[str, str], health: ExecutorHealth | None = None
    ) -> None:
        self.settings = settings
        self.read_secret = secret_reader  # (namespace, name, key) -> str | None
        self.s3_env = s3_env
        self.access = RayAccess(settings.ray_address, RayToken(settings.ray_auth_token_file))
        self.health = health or ExecutorHealth(self.kind)
        self._client = None
        self._client_token: str | None = None

    def _current_client(self):
        """Ray's client, made again when the token changed (it keeps its headers)."""
        token = self.access.token.value()
        if self._client is None or token != self._client_token:
            from ray.job_submission import JobSubmissionClient

            self._client = None  # until made: the constructor calls the cluster, and may fail
            self._client = JobSubmissionClient(self.settings.ray_address, headers=auth_headers(token))
            self._client_token = token
        return self._client

    def _ray(self, call):
        """``call(client)``, its failures to authenticate or connect as ExecutorUnavailable;
        whether the cluster answered goes to ``health``."""
        try:
            with self.access.errors():
                result = call(self._current_client())
        except ExecutorUnavailable as exc:
            self.health.unavailable(exc)
            raise
        except RuntimeError:  # an answer, if not the one hoped for (e.g. 404)
            self.health.answered()
            raise
        self.health.answered()
        return result

    def name(self, body: dict) -> str:
        meta = body["metadata"]
        return render.submission_id(meta.get("namespace", "default"), meta["name"], meta.get("uid", ""), run_tag(body))

    def _info(self, name: str):
        try:
            return self._ray(lambda client: client.get_job_info(name))
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
            env = self._env(body, spec)
            self._ray(
                lambda client: client.submit_job(
                    entrypoint=self.settings.job_entrypoint,
                    submission_id=name,
                    runtime_env={"env_vars": env},
                    metadata={
                        META_REQUEST: f"{meta['namespace']}/{meta['name']}",
                        META_GENERATION: run_tag(body),
                    },
                )
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

    # A stopped Ray job cannot go on: the resumed run is a new submission (from the checkpoint).
    resumes_in_place = False

    def suspend(self, body: dict, name: str) -> bool:
        return self.delete(body, name)

    def resume(self, body: dict, name: str) -> None:
        pass

    def stop(self, name: str) -> None:
        try:
            self._ray(lambda client: client.stop_job(name))
        except RuntimeError as exc:
            log.warning("could not stop Ray job %s: %s", name, exc)

    def active_jobs(self) -> dict[str, dict]:
        """The cluster's pending and running submitted jobs: submission id -> metadata."""
        return {
            job.submission_id: dict(job.metadata or {})
            for job in self._ray(lambda client: client.list_jobs())
            if job.submission_id and str(getattr(job.status, "value", job.status)) in RAY_ACTIVE
        }
