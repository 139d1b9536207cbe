"""Pure rendering of what the operator creates: names, the job environment, the KubeRay RayJob.

Nothing here talks to a cluster; everything is a function of the BotRequest object (as the
API server returns it, defaults filled in), its :class:`JobSpec` and the operator's :class:`Settings`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from botfleet import api
from botfleet.secrets import secret_env_name
from botfleet_operator.lifecycle import run_generation
from botfleet_operator.limits import limits_for
from botfleet_operator.refresh import REFRESH_ENV, refresh_count, run_tag
from botfleet_operator.settings import Settings

# KubeRay appends 6 characters to a RayJob's name to name its RayCluster, whose name must
# fit 53 characters (its pods and services add more): a RayJob name has at most 47
# (ray-operator/controllers/ray/utils: MaxRayJobNameLength), and is a DNS-1035 label.
MAX_RAYJOB_NAME = 47
MAX_SUBMISSION_ID = 120

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_REQUEST = "botfleet.dev/request"
LABEL_GENERATION = "botfleet.dev/generation"
MANAGED_BY = "botfleet"

S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
S3_CA_DIR = "/etc/botfleet/s3-ca"  # where the job pods mount settings.s3_ca_secret
MODEL_CACHE_DIR = "/var/cache/botfleet/models"  # where the worker pods mount settings.job_model_cache_volume


def _hash(*parts: str, length: int = 8) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def job_name(name: str, tag: str, namespace: str = "") -> str:
    """The deterministic RayJob name of a request's run: ``<name>-g<tag>``, the tag being
    :func:`botfleet_operator.refresh.run_tag` (its run generation, then ``-r<N>`` for a
    refresh and ``-a<N>`` for a retry).

    Too long for KubeRay (47 characters) is cut and made unique with a hash; a name that
    does not start with a letter (DNS-1035) gets a ``bot-`` prefix.
    """
    suffix = f"-g{tag}"
    base = name if re.match(r"^[a-z]", name) else f"bot-{name}"
    full = base + suffix
    if len(full) <= MAX_RAYJOB_NAME:
        return full
    digest = "-" + _hash(namespace, name)
    keep = MAX_RAYJOB_NAME - len(digest) - len(suffix)
    return base[:keep].rstrip("-") + digest + suffix


def submission_id(namespace: str, name: str, uid: str, tag: str) -> str:
    """The deterministic Ray job submission id (the ``ray`` executor's idempotency key).

    It carries the object's uid, so a BotRequest deleted and made again with the same name
    never meets its predecessor's job; and the run's tag, as :func:`job_name` does.
    """
    base = f"botfleet-{namespace}-{name}"
    tail = f"-{uid[:8]}-g{tag}"
    if len(base) + len(tail) > MAX_SUBMISSION_ID:
        base = base[: MAX_SUBMISSION_ID - len(tail) - 9] + "-" + _hash(namespace, name)
    return base + tail


def rayjob_name(body: dict) -> str:
    """The RayJob of the request's current run (its generation, refresh and retry)."""
    meta = body["metadata"]
    return job_name(meta["name"], run_tag(body), meta.get("namespace", ""))


@dataclass(frozen=True)
class JobSpec:
    """A request's spec as its job runs it: the worker shape it leaves out is the operator's
    default. ``document`` is what the job reads (``BOTFLEET_REQUEST``), ``typed`` the same parsed."""

    document: dict
    typed: api.BotSpec


def resolve_spec(body: dict, settings: Settings) -> JobSpec:
    """Fill in the worker defaults and parse, once per reconcile; raises
    :class:`api.ValidationError` with the errors of the request's own spec."""
    spec = body.get("spec")
    document = settings.worker_defaults.fill(spec) if isinstance(spec, dict) else spec
    return JobSpec(document, api.parse_spec(document))


def worker_shape(spec: api.BotSpec, with_memory: bool) -> str:
    """The workers a resolved spec asks for, for people: "2 workers, each 1 GPU, 4 CPUs, 16Gi"."""
    t, r = spec.training, spec.resources

    def count(n: int, unit: str) -> str:
        return f"{n} {unit}{'s' if n != 1 else ''}"

    each = [count(t.gpus_per_worker, "GPU") if t.gpus_per_worker else "no GPU", count(r.cpus_per_worker, "CPU")]
    if with_memory:
        each.append(r.memory_per_worker)
    return f"1 worker: {', '.join(each)}" if t.workers == 1 else f"{t.workers} workers, each {', '.join(each)}"


def request_json(body: dict, spec: JobSpec) -> str:
    """The BotRequest the job reads from ``BOTFLEET_REQUEST``: apiVersion, kind, the
    identifying metadata and the spec as the job runs it (never status, never managed fields)."""
    meta = body.get("metadata", {})
    document = {
        "apiVersion": body.get("apiVersion", api.API_VERSION),
        "kind": body.get("kind", api.KIND),
        "metadata": {
            k: meta[k] for k in ("name", "namespace", "uid", "generation", "labels") if meta.get(k) is not None
        },
        "spec": spec.document,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def referenced_secrets(spec: api.BotSpec) -> list[api.SecretRef]:
    """Every Secret key a request names (source tokens, the W&B key, the Hub token), without duplicates."""
    refs: list[api.SecretRef] = []
    for handle in spec.handles:
        ref = getattr(handle.source.config, "bearer_token_secret_ref", None)
        if ref is not None:
            refs.append(ref)
    if spec.tracking.wandb.api_key_secret_ref is not None:
        refs.append(spec.tracking.wandb.api_key_secret_ref)
    if spec.publish is not None and spec.publish.hugging_face is not None:
        refs.append(spec.publish.hugging_face.token_secret_ref)
    unique: list[api.SecretRef] = []
    for ref in refs:
        if ref not in unique:
            unique.append(ref)
    return unique


def wandb_key(spec: api.BotSpec, settings: Settings) -> tuple[api.SecretRef, bool] | None:
    """The Secret key the job's ``WANDB_API_KEY`` comes from, and whether that Secret may be
    missing: the one the request names, else the operator's default Secret (unless W&B is
    disabled), else none."""
    named = spec.tracking.wandb.api_key_secret_ref
    if named is not None:
        return named, False
    if settings.wandb_secret and spec.tracking.wandb.mode != "disabled":
        return api.SecretRef(settings.wandb_secret, settings.wandb_secret_key), True
    return None


def container_env(body: dict, spec: JobSpec, settings: Settings) -> list[dict]:
    """Environment of the Ray containers: the request inline, every credential from a Secret."""
    env = [
        {"name": "BOTFLEET_REQUEST", "value": request_json(body, spec)},
        {"name": "RAY_USAGE_STATS_ENABLED", "value": "0"},
        {"name": "AWS_EC2_METADATA_DISABLED", "value": "true"},
    ]
    if refresh_count(body):
        env.append({"name": REFRESH_ENV, "value": "1"})
    if settings.s3_endpoint:
        env += [
            {"name": "BOTFLEET_S3_ENDPOINT", "value": settings.s3_endpoint},
            {"name": "AWS_ENDPOINT_URL", "value": settings.s3_endpoint},
        ]
    if settings.s3_region:
        env += [{"name": name, "value": settings.s3_region} for name in ("AWS_REGION", "AWS_DEFAULT_REGION")]
    if settings.s3_ca_secret:
        env.append({"name": "BOTFLEET_S3_CA_FILE", "value": f"{S3_CA_DIR}/ca.crt"})
    env += [{"name": key, "valueFrom": {"secretKeyRef": {"name": settings.s3_secret, "key": key}}} for key in S3_KEYS]
    for ref in referenced_secrets(spec.typed):
        env.append({"name": secret_env_name(ref), "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    wandb = wandb_key(spec.typed, settings)
    if wandb is not None:
        ref, optional = wandb
        key_ref = {"name": ref.name, "key": ref.key, **({"optional": True} if optional else {})}
        env.append({"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": key_ref}})
    return env


def labels_for(body: dict, generation: int) -> dict:
    meta = body["metadata"]
    labels = {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_REQUEST: meta["name"],
        LABEL_GENERATION: str(generation),
    }
    queue = (meta.get("labels") or {}).get(api.QUEUE_LABEL)
    if queue:
        labels[api.QUEUE_LABEL] = queue
    return labels


def owner_reference(body: dict) -> dict:
    meta = body["metadata"]
    return {
        "apiVersion": body.get("apiVersion", api.API_VERSION),
        "kind": body.get("kind", api.KIND),
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _container(
    name: str, settings: Settings, env: list[dict], cpus: int, memory: str, gpus: int, ports: list[dict] | None = None
) -> dict:
    limits = {"cpu": str(cpus), "memory": memory}
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    container = {
        "name": name,
        "image": settings.job_image,
        "env": env,
        "resources": {"requests": dict(limits), "limits": limits},
    }
    if ports:
        container["ports"] = ports
    if settings.job_container_security_context:
        container["securityContext"] = settings.job_container_security_context
    return container


def _pod_spec(container: dict, extra: dict, mounts: list[tuple[dict, dict]]) -> dict:
    """A Ray pod running ``container``, with the platform's additions (``extra``: scheduling,
    pull secrets, security) and ``mounts``: (volume, volumeMount) pairs."""
    if not mounts:
        return {**extra, "containers": [container]}
    return {
        **extra,
        "containers": [{**container, "volumeMounts": [mount for _, mount in mounts]}],
        "volumes": [volume for volume, _ in mounts],
    }


def _mounts(settings: Settings, worker: bool) -> list[tuple[dict, dict]]:
    """The object store's CA where ``container_env`` says, in every Ray pod; and in the
    workers, which load the base model, the platform's model cache volume if it gave one."""
    mounts = []
    if settings.s3_ca_secret:
        volume = {"name": "s3-ca", "secret": {"secretName": settings.s3_ca_secret}}
        mounts.append((volume, {"name": "s3-ca", "mountPath": S3_CA_DIR, "readOnly": True}))
    if worker and settings.job_model_cache_volume:
        volume = {"name": "model-cache", **settings.job_model_cache_volume}
        mounts.append((volume, {"name": "model-cache", "mountPath": MODEL_CACHE_DIR}))
    return mounts


def _worker_env(env: list[dict], settings: Settings) -> list[dict]:
    if not settings.job_model_cache_volume:
        return env
    return [*env, {"name": "BOTFLEET_MODEL_CACHE", "value": MODEL_CACHE_DIR}]  # read by botfleet_jobs.model_cache


def _submitter_pod_spec(settings: Settings) -> dict:
    """The pod of KubeRay's submitter Job (it runs ``ray job submit``; KubeRay fills in the
    command). KubeRay's default template has none of the platform's settings (pull secrets,
    security context), which a private registry or PodSecurity "restricted" would refuse."""
    container = _container("ray-job-submitter", settings, [], cpus=1, memory="1Gi", gpus=0)  # KubeRay's default limits
    return {**settings.job_pod, "restartPolicy": "Never", "containers": [container]}


def cluster_auth(settings: Settings) -> dict:
    """What a KubeRay Ray cluster spec (a RayJob's ``rayClusterSpec``, a RayService's
    ``rayClusterConfig``) needs to lock its cluster: ``authOptions`` in token mode, unless the
    platform opted out (``job_ray_auth: disabled``). KubeRay then puts the token, from
    ``job_ray_auth_secret`` or a random one it keeps in a Secret named after the cluster, into
    every Ray container and the submitter, and uses it for its own calls: the job reaches its
    cluster as before, and nobody else does (a dashboard open to all runs anyone's code)."""
    if settings.job_ray_auth == "disabled":
        return {}
    options = {"mode": "token"}
    if settings.job_ray_auth_secret:
        options["secretName"] = settings.job_ray_auth_secret
    return {"authOptions": options}


def render_rayjob(body: dict, spec: JobSpec, settings: Settings) -> dict:
    """The KubeRay ``RayJob`` (ray.io/v1) that trains the request's current generation."""
    meta = body["metadata"]
    generation = run_generation(body)
    env = container_env(body, spec, settings)
    training, resources = spec.typed.training, spec.typed.resources
    labels = labels_for(body, generation)
    limits = limits_for(spec.typed, settings)
    pod_labels = {k: v for k, v in labels.items() if k != api.QUEUE_LABEL}
    worker_gpus = training.gpus_per_worker
    head = _container(
        "ray-head",
        settings,
        env,
        settings.head_cpus,
        settings.head_memory,
        0,
        ports=[
            {"containerPort": 6379, "name": "gcs"},
            {"containerPort": 8265, "name": "dashboard"},
            {"containerPort": 10001, "name": "client"},
        ],
    )
    worker = _container(
        "ray-worker",
        settings,
        _worker_env(env, settings),
        resources.cpus_per_worker,
        resources.memory_per_worker,
        worker_gpus,
    )
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {
            "name": rayjob_name(body),
            "namespace": meta.get("namespace", "default"),
            "labels": labels,
            "annotations": {"botfleet.dev/model-uri": spec.typed.model_uri},
            "ownerReferences": [owner_reference(body)],
        },
        "spec": {
            "entrypoint": settings.job_entrypoint,
            "submissionMode": "K8sJobMode",
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
            "backoffLimit": limits.backoff_limit,
            "activeDeadlineSeconds": limits.active_deadline_seconds,
            "submitterPodTemplate": {"metadata": {"labels": pod_labels}, "spec": _submitter_pod_spec(settings)},
            "rayClusterSpec": {
                "rayVersion": settings.ray_version,
                **cluster_auth(settings),
                "headGroupSpec": {
                    # No Ray tasks on the head: the driver (data stage) runs there, training on workers.
                    "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0"},
                    "template": {
                        "metadata": {"labels": pod_labels},
                        "spec": _pod_spec(head, settings.job_pod, _mounts(settings, worker=False)),
                    },
                },
                "workerGroupSpecs": [
                    {
                        "groupName": "gpu-workers" if worker_gpus else "cpu-workers",
                        "replicas": training.workers,
                        "minReplicas": training.workers,
                        "maxReplicas": training.workers,
                        "rayStartParams": {
                            "num-cpus": str(resources.cpus_per_worker),
                            **({"num-gpus": str(worker_gpus)} if worker_gpus else {}),
                        },
                        "template": {
                            "metadata": {"labels": pod_labels},
                            "spec": _pod_spec(
                                worker,
                                {**settings.job_pod, **settings.job_worker_pod},
                                _mounts(settings, worker=True),
                            ),
                        },
                    }
                ],
            },
        },
    }


def ray_job_env(body: dict, spec: JobSpec, s3_env: dict[str, str], secret_values: dict[str, str]) -> dict[str, str]:
    """Environment of a job submitted to an existing Ray cluster (the ``ray`` executor).

    ``secret_values`` maps env names (``secret_env_name``, ``WANDB_API_KEY``) to the values the
    operator read from the referenced Secrets: Ray's job API has no Secret references.
    """
    env = {"BOTFLEET_REQUEST": request_json(body, spec), "RAY_USAGE_STATS_ENABLED": "0"}
    if refresh_count(body):
        env[REFRESH_ENV] = "1"
    env.update(s3_env)
    env.update(secret_values)
    return env
