"""The operator's configuration: one dataclass, filled from the environment and/or flags.

Every setting has an environment variable (``BOTFLEET_OPERATOR_<NAME>``, upper case) and a
flag (``--<name-with-dashes>``) of ``botfleet operator``; flags win over the environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from botfleet import __version__, api

EXECUTORS = ("kuberay", "ray")
RAY_AUTH_MODES = ("token", "disabled")  # KubeRay's authOptions.mode
ENV_PREFIX = "BOTFLEET_OPERATOR_"

# What a platform team may add to the Ray pods' spec (job_pod, job_worker_pod): scheduling,
# pulling and security. The containers and volumes are the operator's.
JOB_POD_FIELDS = (
    "affinity",
    "imagePullSecrets",
    "nodeSelector",
    "priorityClassName",
    "runtimeClassName",
    "schedulerName",
    "securityContext",
    "serviceAccountName",
    "tolerations",
)


@dataclass
class Settings:
    executor: str = field(
        default="kuberay",
        metadata={"help": "how trainings run: kuberay (a RayJob per request) or ray (an existing Ray cluster)"},
    )
    ray_address: str = field(
        default="http://127.0.0.1:8265", metadata={"help": "Ray dashboard address, for the ray executor"}
    )
    job_image: str = field(
        default=f"botfleet/job:{__version__}",
        metadata={"help": "container image of the Ray head and workers (kuberay executor)"},
    )
    job_entrypoint: str = field(default="python -m botfleet_jobs.job", metadata={"help": "the training job's command"})
    ray_version: str = field(
        default="2.60.0", metadata={"help": "Ray version in the job image (RayJob rayClusterSpec.rayVersion)"}
    )
    max_concurrent: int = field(
        default=4, metadata={"help": "most trainings at once; the rest wait in Pending (0 = no limit)"}
    )
    namespaces: tuple[str, ...] = field(
        default=(), metadata={"help": "namespaces to watch, comma-separated (empty = all)"}
    )
    s3_endpoint: str = field(
        default="",
        metadata={"help": "object store endpoint the jobs use (default: the operator's BOTFLEET_S3_ENDPOINT)"},
    )
    s3_region: str = field(
        default="", metadata={"help": "region the jobs sign S3 requests for (default: the operator's AWS_REGION)"}
    )
    s3_ca_secret: str = field(
        default="",
        metadata={
            "help": "Secret (in the request's namespace) with ca.crt, the object store's CA, mounted into the job pods"
            " (kuberay executor; empty = public CAs)"
        },
    )
    s3_secret: str = field(
        default="botfleet-s3",
        metadata={"help": "Secret (in the request's namespace) with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY for jobs"},
    )
    wandb_secret: str = field(
        default="",
        metadata={"help": "default Secret holding the W&B API key for requests that name none (empty = none)"},
    )
    wandb_secret_key: str = field(
        default="WANDB_API_KEY", metadata={"help": "key of the API key in the default W&B Secret"}
    )
    ttl_seconds_after_finished: int = field(default=300, metadata={"help": "RayJob ttlSecondsAfterFinished"})
    backoff_limit: int = field(default=1, metadata={"help": "RayJob backoffLimit (retries of a failed job)"})
    active_deadline_seconds: int = field(default=6 * 3600, metadata={"help": "RayJob activeDeadlineSeconds"})
    pre_running_deadline_seconds: int = field(
        default=1800,
        metadata={
            "help": "seconds a job may wait for its resources before it fails, for requests that give no"
            " spec.preRunningDeadlineSeconds (0 = no limit)"
        },
    )
    default_workers: int = field(
        default=api.WorkerDefaults.workers,
        metadata={"help": "Ray Train workers of a request that gives no spec.training.workers"},
    )
    default_gpus_per_worker: int = field(
        default=api.WorkerDefaults.gpus_per_worker,
        metadata={"help": "GPUs per worker of a request that gives no spec.training.gpusPerWorker"},
    )
    default_cpus_per_worker: int = field(
        default=api.WorkerDefaults.cpus_per_worker,
        metadata={"help": "CPUs per worker of a request that gives no spec.resources.cpusPerWorker"},
    )
    default_memory_per_worker: str = field(
        default=api.WorkerDefaults.memory_per_worker,
        metadata={"help": "memory per worker of a request that gives no spec.resources.memoryPerWorker"},
    )
    job_pod: dict = field(
        default_factory=dict,
        metadata={"help": f"JSON object added to the spec of every Ray pod (keys: {', '.join(JOB_POD_FIELDS)})"},
    )
    job_worker_pod: dict = field(
        default_factory=dict,
        metadata={
            "help": "JSON object added to the worker pods' spec only, over job_pod"
            " (e.g. GPU nodes' nodeSelector and tolerations)"
        },
    )
    job_model_cache_volume: dict = field(
        default_factory=dict,
        metadata={
            "help": "JSON Kubernetes volume source mounted in the worker pods as their base-model cache, e.g."
            ' {"persistentVolumeClaim": {"claimName": "botfleet-models"}}: a node\'s pods, and later jobs,'
            " download each base model once (empty = each pod's own temporary folder)"
        },
    )
    job_container_security_context: dict = field(
        default_factory=dict,
        metadata={"help": "JSON securityContext of the Ray containers (e.g. for the PodSecurity 'restricted' profile)"},
    )
    head_cpus: int = field(
        default=2, metadata={"help": "CPUs of the Ray head pod (it runs the data stage and the driver)"}
    )
    head_memory: str = field(default="8Gi", metadata={"help": "memory of the Ray head pod"})
    reconcile_interval: float = field(
        default=5.0, metadata={"help": "seconds between level-based reconciles of an unfinished request"}
    )
    orphan_sweep_interval: float = field(
        default=60.0, metadata={"help": "seconds between sweeps for Ray jobs whose BotRequest is gone (ray executor)"}
    )
    metrics_port: int = field(default=8080, metadata={"help": "Prometheus /metrics port (0 = off)"})
    health_port: int = field(default=8081, metadata={"help": "liveness /healthz port (0 = off)"})
    bind_address: str = field(
        default="0.0.0.0", metadata={"help": "address the metrics and health endpoints listen on"}
    )
    workers: int = field(default=16, metadata={"help": "threads for blocking calls (Kubernetes, S3, Ray)"})
    log_level: str = field(default="INFO", metadata={"help": "DEBUG, INFO, WARNING or ERROR"})
    ray_auth_token_file: str = field(
        default="",
        metadata={
            "help": "file holding the Ray cluster's auth token (ray executor; e.g. a mounted Secret, or"
            " ~/.ray/auth_token of the head), sent with every call and read again when it changes (empty = none)"
        },
    )
    job_ray_auth: str = field(
        default="token",
        metadata={"help": "authentication of each RayJob's Ray cluster (kuberay executor): token or disabled"},
    )
    job_ray_auth_secret: str = field(
        default="",
        metadata={
            "help": "Secret (in the request's namespace, key auth_token) with the token of the RayJobs' clusters"
            " (empty = KubeRay makes a random one per cluster)"
        },
    )
    retry_max_interval: float = field(
        default=60.0,
        metadata={
            "help": "most seconds between retries of a request whose reconciles keep failing (they back off"
            " from reconcile_interval)"
        },
    )
    ready_port: int = field(
        default=8082, metadata={"help": "readiness /readyz port: 503 while the executor is down (0 = off)"}
    )
    # Serving (operator/botfleet_operator/serving.py): on when serving_catalog is set.
    serving_catalog: str = field(
        default="",
        metadata={
            "help": "URI of the serving catalog the operator writes (the served bots), e.g."
            " s3://bots/.botfleet/serving-catalog.json; empty = this installation serves nothing"
        },
    )
    serving_endpoint: str = field(
        default="", metadata={"help": "base URL of the serving API (.../v1) the status shows, for people"}
    )
    serving_sync_interval: float = field(
        default=10.0, metadata={"help": "seconds between rewrites of the catalog and the serving status, if changed"}
    )
    serving_import_path: str = field(
        default="botfleet_serving.app:build_app", metadata={"help": "the Serve application builder"}
    )
    serving_models_per_replica: int = field(default=8, metadata={"help": "bots each serving replica keeps loaded"})
    serving_min_replicas: int = field(default=1, metadata={"help": "serving replicas at least (autoscaling)"})
    serving_max_replicas: int = field(default=2, metadata={"help": "serving replicas at most (autoscaling)"})
    serving_replica_cpus: float = field(default=1.0, metadata={"help": "CPUs of each serving replica"})
    serving_replica_gpus: float = field(default=0.0, metadata={"help": "GPUs of each serving replica"})
    serving_port: int = field(
        default=8000,
        metadata={"help": "HTTP port of Serve on the Ray cluster when the operator starts it (ray executor)"},
    )

    def __post_init__(self) -> None:
        if isinstance(self.namespaces, str):
            self.namespaces = tuple(n.strip() for n in self.namespaces.split(",") if n.strip())
        self.namespaces = tuple(self.namespaces)
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor: must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.max_concurrent < 0:
            raise ValueError(f"max_concurrent: must be at least 0, got {self.max_concurrent}")
        for name in ("ttl_seconds_after_finished", "backoff_limit", "pre_running_deadline_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must be at least 0, got {getattr(self, name)}")
        if self.active_deadline_seconds < 1:
            raise ValueError(f"active_deadline_seconds: must be at least 1, got {self.active_deadline_seconds}")
        for name in ("reconcile_interval", "orphan_sweep_interval", "retry_max_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}: must be positive, got {getattr(self, name)}")
        if self.job_ray_auth not in RAY_AUTH_MODES:
            raise ValueError(f"job_ray_auth: must be one of {', '.join(RAY_AUTH_MODES)}, got {self.job_ray_auth!r}")
        self._check_serving()
        self.worker_defaults  # noqa: B018 - validates the default_* settings against the schema
        for name in ("job_pod", "job_worker_pod", "job_container_security_context", "job_model_cache_volume"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name}: must be a JSON object, got {getattr(self, name)!r}")
        if self.job_model_cache_volume and (
            len(self.job_model_cache_volume) != 1 or "name" in self.job_model_cache_volume
        ):
            raise ValueError(
                "job_model_cache_volume: must name one volume source (e.g. persistentVolumeClaim or hostPath),"
                f" got {sorted(self.job_model_cache_volume)}"
            )
        for name in ("job_pod", "job_worker_pod"):
            unknown = sorted(set(getattr(self, name)) - set(JOB_POD_FIELDS))
            if unknown:
                raise ValueError(f"{name}: cannot set {', '.join(unknown)} (allowed: {', '.join(JOB_POD_FIELDS)})")

    def _check_serving(self) -> None:
        problems = api.validate(self.serving_catalog, {"type": "string", "pattern": api.OBJECT_URI}, "serving_catalog")
        if self.serving_catalog and problems:
            raise ValueError(f"{problems[0]} (an s3:// or file:/// object)")
        if self.serving_sync_interval <= 0:
            raise ValueError(f"serving_sync_interval: must be positive, got {self.serving_sync_interval}")
        if not 1 <= self.serving_min_replicas <= self.serving_max_replicas:
            raise ValueError(
                "serving_min_replicas, serving_max_replicas: need 1 <= min <= max,"
                f" got {self.serving_min_replicas} and {self.serving_max_replicas}"
            )
        if self.serving_models_per_replica < 1:
            raise ValueError(f"serving_models_per_replica: must be at least 1, got {self.serving_models_per_replica}")

    @property
    def worker_defaults(self) -> api.WorkerDefaults:
        """The worker shape of requests that leave it out (the ``default_*`` settings)."""
        return api.WorkerDefaults(
            workers=self.default_workers,
            gpus_per_worker=self.default_gpus_per_worker,
            cpus_per_worker=self.default_cpus_per_worker,
            memory_per_worker=self.default_memory_per_worker,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> Settings:
        env = os.environ if env is None else env
        values = {}
        for f in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _convert(f, raw)
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_argv(cls, argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
        args = parser().parse_args(argv)
        overrides = {k: v for k, v in vars(args).items() if v is not None}
        return cls.from_env(
            env, **{k: _convert(_field(k), v) if isinstance(v, str) else v for k, v in overrides.items()}
        )


def _field(name: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(Settings) if f.name == name)


def _convert(f: dataclasses.Field, raw: str):
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError:
        raise ValueError(f"{f.name}: must be a number, got {raw!r}") from None
    if kind.startswith("tuple"):
        return tuple(n.strip() for n in raw.split(",") if n.strip())
    if kind == "dict":
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{f.name}: must be JSON, got {raw!r} ({exc})") from None
    return raw


def parser(prog: str = "botfleet operator") -> argparse.ArgumentParser:
    """The flags of ``botfleet operator`` (each also readable from BOTFLEET_OPERATOR_<NAME>)."""
    p = argparse.ArgumentParser(
        prog=prog, description="Run the BotRequest operator (in a cluster, or against $KUBECONFIG)."
    )
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        help_text = f"{f.metadata.get('help', '')} [env {ENV_PREFIX}{f.name.upper()}; default {default!r}]"
        if f.name == "executor":
            p.add_argument(flag, choices=EXECUTORS, default=None, help=help_text)
        else:
            p.add_argument(flag, default=None, help=help_text)
