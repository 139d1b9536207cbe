"""The BotRequest API: the one source of truth.

``SPEC_SCHEMA`` and ``STATUS_SCHEMA`` are OpenAPI v3 structural schemas. The CRD
(``charts/botfleet/crds/``) is generated from them (``botfleet crd``), the CLI validates
request files with them (``validate``), and the typed dataclasses below are checked
against them by the tests, so the four cannot drift. Every rule is plain OpenAPI
(pattern, enum, ranges, item counts) because the oldest API server we support (1.20)
has no CEL.
"""

from __future__ import annotations

import dataclasses
import functools
import keyword
import math
import re
import reprlib
from dataclasses import dataclass, field
from typing import Any

import yaml

from botfleet.errors import UserError
from botfleet.reasons import Reason
from botfleet.yaml_input import YamlInputError, read_yaml

GROUP = "botfleet.dev"
VERSION = "v1alpha1"
KIND = "BotRequest"
PLURAL = "botrequests"
SINGULAR = "botrequest"
SHORT_NAMES = ["bot", "br"]
API_VERSION = f"{GROUP}/{VERSION}"

# The label Kueue reads; passed through to the RayJob when a request carries it.
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# A new value asks for a refresh (like `kubectl rollout restart`'s restartedAt).
REFRESH_ANNOTATION = "botfleet.dev/refresh-requested"


def _str(description: str, **rules: Any) -> dict:
    return {"type": "string", "description": description, **rules}


def _int(description: str, **rules: Any) -> dict:
    return {"type": "integer", "description": description, **rules}


def _obj(description: str, properties: dict, **rules: Any) -> dict:
    return {"type": "object", "description": description, "properties": properties, **rules}


def _secret_ref(description: str) -> dict:
    return _obj(
        description,
        {"name": _str("Secret name, in the BotRequest's namespace."), "key": _str("Key in the Secret.")},
        required=["name", "key"],
    )


CRON_SCHEDULE = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|\S+( +\S+){4})$"
S3_OR_FILE_URI = r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?|file:///.*)$"
# One object (a source file): a key after the bucket, not ending in '/'.
OBJECT_URI = r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.*[^/]|file:///.*[^/])$"
HTTP_URL = r"^https?://[^\s/]+(/.*)?$"
# A Hub repository id: the Hub's own rule for namespaces and names (ORG/NAME).
HUB_REPO = r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,94}[A-Za-z0-9])?/[A-Za-z0-9]([A-Za-z0-9_.-]{0,94}[A-Za-z0-9])?$"

SOURCE_SCHEMA = _obj(
    "Where the posts come from: exactly one of the fields.",
    {
        "archive": _obj(
            "A Twitter/X archive export: the .zip, or its data/tweets*.js.",
            {"uri": _str("s3://bucket/key (or file:///path for the local CLI).", pattern=OBJECT_URI)},
            required=["uri"],
        ),
        "dataset": _obj(
            "Records with a `text` field and optional `is_retweet`, `id`, `created_at`.",
            {
                "uri": _str("s3://bucket/key (or file:///path for the local CLI).", pattern=OBJECT_URI),
                "format": _str("File format.", enum=["jsonl", "csv"], default="jsonl"),
            },
            required=["uri"],
        ),
        "mastodon": _obj(
            "A Mastodon account's public statuses; boosts count as retweets.",
            {"instance": _str("Base URL of the instance, e.g. https://mastodon.social.", pattern=HTTP_URL)},
            required=["instance"],
        ),
        "bluesky": _obj(
            "A Bluesky account's public author feed; reposts count as retweets.",
            {
                "service": _str(
                    "Base URL of the AppView serving the public API.",
                    pattern=HTTP_URL,
                    default="https://public.api.bsky.app",
                )
            },
        ),
        "twitter": _obj(
            "Twitter API v2 user timeline (a paid API); needs a bearer token.",
            {
                "bearerTokenSecretRef": _secret_ref("Secret holding the API v2 bearer token."),
                "apiBase": _str("API base URL.", pattern=HTTP_URL, default="https://api.twitter.com"),
            },
            required=["bearerTokenSecretRef"],
        ),
    },
    minProperties=1,
    maxProperties=1,
)

HANDLE_SCHEMA = _obj(
    "One person whose posts train the bot.",
    {
        "handle": _str(
            "Account name; a leading @ is ignored. Letters, digits, _ . and - (Bluesky handles are domains).",
            pattern=r"^@?[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$",
        ),
        "displayName": _str("Name shown in the model card; defaults to the handle.", maxLength=100),
        "source": SOURCE_SCHEMA,
    },
    required=["handle", "source"],
)

SPEC_SCHEMA = _obj(
    "What bot to make.",
    {
        "handles": {
            "type": "array",
            "description": "One to three people; more than one makes an AI CYBORG.",
            "minItems": 1,
            "maxItems": 3,
            "items": HANDLE_SCHEMA,
        },
        "data": _obj(
            "How posts are gathered and turned into a dataset.",
            {
                "maxPosts": _int("Newest posts to gather per handle.", minimum=1, maximum=100000, default=3200),
                "seed": _int("Seed for shuffling and the train/validation split.", minimum=0, default=42),
            },
            default={},
        ),
        "training": _obj(
            "Fine-tuning settings; the defaults are the reference pipeline's.",
            {
                "baseModel": _str(
                    "A model hub id or an s3:// folder of a saved causal LM.", minLength=1, default="gpt2"
                ),
                "epochs": _int(
                    "Reshuffled copies of the data written into the training text.", minimum=1, maximum=100, default=4
                ),
                "learningRate": {
                    "type": "number",
                    "description": "Peak learning rate (cosine schedule, no warmup).",
                    "exclusiveMinimum": True,
                    "minimum": 0,
                    "maximum": 1,
                    "default": 1.372e-4,
                },
                "blockSize": _int("Tokens per training sequence.", minimum=8, maximum=8192, default=1024),
                "batchSizePerWorker": _int("Sequences per step per worker.", minimum=1, maximum=1024, default=1),
                "gradientAccumulation": _int(
                    "Steps accumulated per optimizer step.", minimum=1, maximum=1024, default=1
                ),
                "zeroStage": _int("DeepSpeed ZeRO stage.", minimum=0, maximum=3, default=2),
                # No default: absent means "pick for the hardware" (and a 1.20 API server
                # rejects an empty-string default).
                "precision": _str(
                    "bf16, or fp32 (CPU only); absent means bf16 on GPUs and fp32 on CPU.", enum=["bf16", "fp32"]
                ),
                # No defaults for the worker shape: it is the installation's (see WorkerDefaults).
                "workers": _int("Ray Train workers; absent means the installation's default.", minimum=1, maximum=64),
                "gpusPerWorker": _int(
                    "GPUs per worker, 0 trains on CPU; absent means the installation's default.", minimum=0, maximum=8
                ),
                "seed": _int("Training seed.", minimum=0, default=42),
                "maxFailures": _int(
                    "Times a failed worker group is restarted from the newest checkpoint before the job fails.",
                    minimum=0,
                    maximum=10,
                    default=0,
                ),
            },
            default={},
        ),
        "resources": _obj(
            "Resources of each Ray worker pod when run on a cluster.",
            {
                "cpusPerWorker": _int(
                    "CPUs per worker; absent means the installation's default.", minimum=1, maximum=256
                ),
                "memoryPerWorker": _str(
                    "Memory per worker, a Kubernetes quantity; absent means the installation's default.",
                    pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$",
                ),
            },
            default={},
        ),
        "tracking": _obj(
            "Experiment tracking.",
            {
                "wandb": _obj(
                    "Weights & Biases: online with an API key, offline files kept with the outputs otherwise.",
                    {
                        "mode": _str(
                            "online, offline or disabled; absent means online with a key, else offline.",
                            enum=["online", "offline", "disabled"],
                        ),
                        "project": _str("W&B project.", default="huggingtweets", minLength=1),
                        "entity": _str("W&B entity (team or user); empty means the key's default."),
                        "apiKeySecretRef": _secret_ref("Secret holding the W&B API key."),
                    },
                    default={},
                )
            },
            default={},
        ),
        "output": _obj(
            "Where the dataset, checkpoints, model and card go: <uri>/<model-id>/...",
            {
                "uri": _str("s3://bucket/prefix (or file:///path for the local CLI).", pattern=S3_OR_FILE_URI),
                "deletePolicy": _str(
                    "Retain keeps the artifacts when the BotRequest is deleted.",
                    enum=["Retain", "Delete"],
                    default="Retain",
                ),
                "keepVersions": _int(
                    "Earlier versions (each successful training is one) kept under <model-id>/versions/;"
                    " the latest is always <model-id>/model/.",
                    minimum=0,
                    maximum=100,
                    default=3,
                ),
            },
            required=["uri"],
        ),
        "serving": _obj(
            "Whether the installation's serving application serves this bot once it has succeeded.",
            {
                # No default: absent means served wherever the installation serves (an
                # operator with a serving catalog), and nothing where it does not.
                "enabled": {
                    "type": "boolean",
                    "description": "false keeps the bot unlisted; absent means served where the installation serves.",
                },
            },
            default={},
        ),
        "publish": _obj(
            "Where the finished bot is published, once its parrot check passes; absent means only the object store.",
            {
                "huggingFace": _obj(
                    "A Hugging Face Hub model repository: created if needed; each training is one commit.",
                    {
                        "repo": _str("The repository, ORG/NAME.", pattern=HUB_REPO),
                        "tokenSecretRef": _secret_ref("Secret holding a Hub token that may write to the repository."),
                        "private": {
                            "type": "boolean",
                            "description": "Create the repository private (an existing one keeps its visibility).",
                            "default": False,
                        },
                        "endpoint": _str(
                            "The Hub's URL, for a self-hosted Hub.", pattern=HTTP_URL, default="https://huggingface.co"
                        ),
                    },
                    required=["repo", "tokenSecretRef"],
                ),
                "allowParrot": {
                    "type": "boolean",
                    "description": "Publish even when the parrot check finds that the bot repeats its training posts.",
                    "default": False,
                },
            },
        ),
        "refresh": _obj(
            "Training again on what is new: on `schedule`, on a new value of the"
            f" {REFRESH_ANNOTATION} annotation, or with `botfleet refresh`.",
            {
                "from": _str(
                    "base: each refresh trains from training.baseModel; previous: from the latest version.",
                    enum=["base", "previous"],
                    default="base",
                ),
                "schedule": _str(
                    "When to refresh: cron (minute hour day month weekday) or @hourly, @daily, @weekly,"
                    " @monthly; absent: only when asked.",
                    pattern=CRON_SCHEDULE,
                ),
                "timeZone": _str("The IANA time zone the schedule is read in.", default="UTC", minLength=1),
            },
            default={},
        ),
        "suspend": {
            "type": "boolean",
            "description": "true stops the job (its training slot is freed; a queued request leaves the queue);"
            " false again resumes training from its newest checkpoint.",
            "default": False,
        },
        # No defaults for the limits: absent means the installation's (Helm job.*).
        "backoffLimit": _int(
            "Times a failed job is run again (from its newest checkpoint); absent means the installation's default.",
            minimum=0,
            maximum=100,
        ),
        "activeDeadlineSeconds": _int(
            "Seconds the job may take in all before it fails (DeadlineExceeded); absent means the installation's"
            " default.",
            minimum=1,
        ),
        "preRunningDeadlineSeconds": _int(
            "Seconds the job may wait for its resources (its Ray cluster's pods, queue quota, free CPUs and GPUs)"
            " before it fails (PreRunningDeadlineExceeded, saying what it waited for); absent means the"
            " installation's default.",
            minimum=1,
        ),
    },
    required=["handles", "output"],
)

PHASES = ["Pending", "PreparingData", "Training", "Publishing", "Succeeded", "Failed", "Suspended"]

_COUNTS = _obj(
    "Posts counted by the data stage, as in the model card.",
    {name: _int(f"{name} posts.") for name in ("downloaded", "retweets", "short", "kept")},
)

STATUS_SCHEMA = _obj(
    "Observed state, written by the operator only.",
    {
        "phase": _str("Where the request is.", enum=PHASES),
        "reason": _str("Machine-readable reason for the phase (e.g. Queued, SourceFailed)."),
        "message": _str("Human-readable detail for the phase."),
        "observedGeneration": _int("The spec generation this status describes.", format="int64"),
        "modelId": _str("Handles lower-cased, sorted and joined with '-'."),
        "handles": _str("The handles, comma-separated (for kubectl get)."),
        "startTime": _str("When work on this generation started.", format="date-time"),
        "completionTime": _str("When this generation reached Succeeded or Failed.", format="date-time"),
        "keptPosts": _int("Posts kept for training, all handles together."),
        "counts": {
            "type": "object",
            "description": "Per-handle counts.",
            "additionalProperties": _COUNTS,
        },
        "progress": _obj(
            "Training progress from the job's progress file.",
            {
                "percent": _str("Progress for kubectl get, e.g. '42%'."),
                "step": _int("Optimizer steps done."),
                "totalSteps": _int("Optimizer steps planned."),
                "epoch": {"type": "number", "description": "Epochs done (fractional)."},
                "loss": {"type": "number", "description": "Latest training loss."},
                "tokensPerSecond": {"type": "number", "description": "Training throughput."},
                "etaSeconds": {"type": "number", "description": "Estimated seconds left."},
            },
        ),
        "metrics": _obj(
            "Evaluation on the validation text.",
            {
                name: {"type": "number", "description": desc}
                for name, desc in (
                    ("validLossBefore", "Validation loss before fine-tuning."),
                    ("validLossAfter", "Validation loss after fine-tuning."),
                    ("perplexityBefore", "Validation perplexity before fine-tuning."),
                    ("perplexityAfter", "Validation perplexity after fine-tuning."),
                    ("trainLoss", "Final training loss."),
                )
            },
        ),
        "artifacts": _obj(
            "Where the outputs are.",
            {
                name: _str(desc)
                for name, desc in (
                    ("dataset", "The dataset folder."),
                    ("checkpoints", "The checkpoint folder."),
                    ("model", "The model folder (Hugging Face format)."),
                    ("card", "The model card."),
                    ("trackingRun", "The W&B run, when there is one."),
                    ("log", "The job's full log (logs/job-<time>.log), kept after the Ray cluster is gone."),
                )
            },
        ),
        "publish": _obj(
            "Where the bot is published (spec.publish).",
            {
                "repo": _str("The Hub repository, ORG/NAME."),
                "url": _str("The repository's page."),
                "commit": _str("The commit holding this generation's model."),
            },
        ),
        "job": _obj(
            "The training job.",
            {
                "executor": _str("kuberay or ray."),
                "name": _str("RayJob name or Ray job submission id."),
                "workers": _str(
                    "The job's workers as started, with the operator's defaults filled in"
                    " (e.g. '2 workers, each 1 GPU, 4 CPUs, 16Gi')."
                ),
                "jobStatus": _str("Ray job status (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED)."),
                "jobDeploymentStatus": _str("KubeRay deployment status, for the kuberay executor."),
            },
        ),
        "serving": _obj(
            "Where the bot is served, while it is (the installation's serving application).",
            {
                "model": _str("The model name clients ask for: <namespace>/<BotRequest name>."),
                "endpoint": _str("The base URL of the OpenAI-compatible API (…/v1)."),
            },
        ),
        "history": {
            "type": "array",
            "description": "The latest versions of the model (each successful training is one), oldest first.",
            "items": _obj(
                "A version.",
                {
                    "version": _int("Its number, from 1."),
                    "finishedAt": _str("When its training finished.", format="date-time"),
                    "posts": _int("Posts kept for its training, all handles together."),
                    "newPosts": _int("Posts its data had that the previous version's did not."),
                    "perplexity": {"type": "number", "description": "Its validation perplexity."},
                    "model": _str("Where it is: model/ for the latest, versions/vN/ for a kept earlier one."),
                },
            ),
        },
        "refresh": _obj(
            "Refreshes (spec.refresh): what the operator handled, so that it acts on each trigger once.",
            {
                "generation": _int("The run generation the refreshes below are of.", format="int64"),
                "count": _int("Refreshes of that run started; the job of refresh N ends in -rN."),
                "trigger": _str(f"The last {REFRESH_ANNOTATION} value handled."),
                "scheduledAt": _str("The last scheduled time handled.", format="date-time"),
                "lastResult": _str("What the last refresh found, e.g. '+12 new posts: version 3'."),
                "error": _str("Why spec.refresh's schedule cannot be used."),
            },
        ),
        "run": _obj(
            "The run the job belongs to: a change of spec.suspend, spec.serving or spec.refresh alone"
            " keeps it (and its job).",
            {
                "generation": _int("The generation the run started at.", format="int64"),
                "spec": _str("A digest of the spec without spec.suspend."),
            },
        ),
        "retry": _obj(
            "Retries of a failed request (a new value of annotation botfleet.dev/retry-requested starts one).",
            {
                "handled": _str(
                    "The annotation's value the operator has seen (a value seen before a failure asks nothing)."
                ),
                "attempts": _int("Retries started; each runs a job of its own (named ...-r<attempts>)."),
                "backoff": _int("Of those, the ones spec.backoffLimit started after a failure (ray executor)."),
            },
        ),
        "conditions": {
            "type": "array",
            "description": "Standard conditions: Ready, DataReady, Trained; Serving where the installation serves;"
            " Published when spec.publish asks.",
            "items": _obj(
                "A condition.",
                {
                    "type": _str("Condition type."),
                    "status": _str("True, False or Unknown.", enum=["True", "False", "Unknown"]),
                    "reason": _str("CamelCase reason."),
                    "message": _str("Human-readable detail."),
                    "lastTransitionTime": _str("When status last changed.", format="date-time"),
                    "observedGeneration": _int("Generation the condition describes.", format="int64"),
                },
                required=["type", "status"],
            ),
        },
    },
)


# --------------------------------------------------------------------------- validation


class ValidationError(UserError, ValueError):
    """A request that breaks the schema; the message names the field and the rule."""


_QUOTE = reprlib.Repr()  # keyword arguments only from Python 3.12
_QUOTE.maxlevel, _QUOTE.maxdict, _QUOTE.maxlist, _QUOTE.maxstring, _QUOTE.maxother, _QUOTE.maxlong = 2, 3, 3, 60, 60, 40


def shown(value: Any) -> str:
    """``value`` as an error quotes it: cut, however large it is (a request may hold
    megabytes in one field, or a small YAML alias bomb that expands to far more)."""
    return _QUOTE.repr(value)


@functools.cache
def _go_regexp(pattern: str) -> re.Pattern:
    """The schema's pattern as the API server reads it (Go's RE2: ``$`` is the end of the
    text; in Python it also matches before a final new line)."""
    return re.compile(pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith(r"\$") else pattern)


def validate(value: Any, schema: dict, path: str) -> list[str]:
    """Check `value` against the subset of OpenAPI the schemas above use.

    Returns one message per problem, each naming the field path and the rule, in the
    style of the API server ("spec.handles: at most 3 items").
    """
    errors: list[str] = []
    kind = schema.get("type")
    python_types = {
        "object": dict,
        "array": list,
        "string": str,
        "integer": int,
        "number": (int, float),
        "boolean": bool,
    }
    if kind and (not isinstance(value, python_types[kind]) or (isinstance(value, bool) != (kind == "boolean"))):
        return [f"{path}: must be {'an' if kind[0] in 'aeiou' else 'a'} {kind}, got {type(value).__name__}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: must be one of {', '.join(map(repr, schema['enum']))}, got {shown(value)}"]
    if kind == "string":
        if "pattern" in schema and not _go_regexp(schema["pattern"]).search(value):
            errors.append(f"{path}: {shown(value)} does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0):
            errors.append(
                f"{path}: must not be empty"
                if schema["minLength"] == 1
                else f"{path}: at least {schema['minLength']} characters"
            )
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: at most {schema['maxLength']} characters")
    if kind == "number" and not math.isfinite(value):
        return [f"{path}: must be a finite number, got {value}"]  # JSON, so the API server, has no NaN
    if kind in ("integer", "number"):
        if "minimum" in schema:
            if schema.get("exclusiveMinimum") and value <= schema["minimum"]:
                errors.append(f"{path}: must be greater than {schema['minimum']}")
            elif value < schema["minimum"]:
                errors.append(f"{path}: must be at least {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: must be at most {schema['maximum']}")
    if kind == "array":
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{path}: at least {schema['minItems']} item{'s' if schema['minItems'] > 1 else ''}")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return errors + [f"{path}: at most {schema['maxItems']} items"]  # the items need no reading
        for index, item in enumerate(value):
            errors += validate(item, schema["items"], f"{path}[{index}]")
    if kind == "object":
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{path}.{name}: required")
        if (
            "minProperties" in schema
            and len(value) < schema["minProperties"]
            or ("maxProperties" in schema and len(value) > schema["maxProperties"])
        ):
            choices = ", ".join(properties)
            errors.append(
                f"{path}: exactly one of {choices}, got {len(value)}"
                if schema.get("maxProperties") == 1
                else f"{path}: wrong number of fields"
            )
        for name, item in value.items():
            if name in properties:
                errors += validate(item, properties[name], f"{path}.{name}")
            elif "additionalProperties" in schema:
                errors += validate(item, schema["additionalProperties"], f"{path}.{_key(name)}")
            else:
                errors.append(f"{path}.{_key(name)}: unknown field (known: {', '.join(properties)})")
    return errors


def _key(name: Any) -> str:
    """A mapping key as a field path shows it (a key can be as long as a value)."""
    return name if isinstance(name, str) and len(name) <= 60 and name.isprintable() else shown(name)


def with_defaults(value: Any, schema: dict) -> Any:
    """Fill in schema defaults the way the API server does for a structural schema."""
    if schema.get("type") == "object" and isinstance(value, dict):
        filled = dict(value)
        for name, sub in schema.get("properties", {}).items():
            if name not in filled and "default" in sub:
                filled[name] = sub["default"]
            if name in filled:
                filled[name] = with_defaults(filled[name], sub)
        return filled
    if schema.get("type") == "array" and isinstance(value, list):
        return [with_defaults(item, schema["items"]) for item in value]
    return value


# --------------------------------------------------------------------------- typed model
# Field names are the schema's camelCase properties in snake_case; tests/unit/test_api.py
# checks that every dataclass matches its schema exactly.


@dataclass(frozen=True)
class SecretRef:
    name: str
    key: str


@dataclass(frozen=True)
class ArchiveSource:
    uri: str


@dataclass(frozen=True)
class DatasetSource:
    uri: str
    format: str = "jsonl"


@dataclass(frozen=True)
class MastodonSource:
    instance: str


@dataclass(frozen=True)
class BlueskySource:
    service: str = "https://public.api.bsky.app"


@dataclass(frozen=True)
class TwitterSource:
    bearer_token_secret_ref: SecretRef
    api_base: str = "https://api.twitter.com"


@dataclass(frozen=True)
class Source:
    archive: ArchiveSource | None = None
    dataset: DatasetSource | None = None
    mastodon: MastodonSource | None = None
    bluesky: BlueskySource | None = None
    twitter: TwitterSource | None = None

    @property
    def kind(self) -> str:
        """The one source given ("" for a Source made in code without one)."""
        return next((f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None), "")

    @property
    def config(self) -> Any:
        return getattr(self, self.kind)


@dataclass(frozen=True)
class Handle:
    handle: str
    source: Source
    display_name: str | None = None

    @property
    def name(self) -> str:
        """The handle as the model id uses it: lower-cased, without '@'."""
        return normalize_handle(self.handle)

    @property
    def label(self) -> str:
        return self.display_name or self.handle.lstrip("@")


@dataclass(frozen=True)
class DataSpec:
    max_posts: int = 3200
    seed: int = 42


@dataclass(frozen=True)
class TrainingSpec:
    base_model: str = "gpt2"
    epochs: int = 4
    learning_rate: float = 1.372e-4
    block_size: int = 1024
    batch_size_per_worker: int = 1
    gradient_accumulation: int = 1
    zero_stage: int = 2
    precision: str | None = None
    workers: int | None = None
    gpus_per_worker: int | None = None
    seed: int = 42
    max_failures: int = 0

    def resolved_precision(self) -> str:
        """What was asked; else bf16 on GPUs and fp32 on CPU."""
        if self.precision:
            return self.precision
        if self.gpus_per_worker is None:
            raise ValueError("gpus_per_worker is not resolved: apply the WorkerDefaults first")
        return "bf16" if self.gpus_per_worker > 0 else "fp32"


@dataclass(frozen=True)
class Resources:
    cpus_per_worker: int | None = None
    memory_per_worker: str | None = None


@dataclass(frozen=True)
class WandbSpec:
    mode: str | None = None
    project: str = "huggingtweets"
    entity: str | None = None
    api_key_secret_ref: SecretRef | None = None


@dataclass(frozen=True)
class TrackingSpec:
    wandb: WandbSpec = field(default_factory=WandbSpec)


@dataclass(frozen=True)
class OutputSpec:
    uri: str
    delete_policy: str = "Retain"
    keep_versions: int = 3


@dataclass(frozen=True)
class RefreshSpec:
    from_: str = "base"  # `from` in the schema (a Python keyword)
    schedule: str | None = None
    time_zone: str = "UTC"


@dataclass(frozen=True)
class ServingSpec:
    enabled: bool | None = None


@dataclass(frozen=True)
class HuggingFacePublish:
    repo: str
    token_secret_ref: SecretRef
    private: bool = False
    endpoint: str = "https://huggingface.co"


@dataclass(frozen=True)
class PublishSpec:
    hugging_face: HuggingFacePublish | None = None
    allow_parrot: bool = False


@dataclass(frozen=True)
class BotSpec:
    handles: tuple[Handle, ...]
    output: OutputSpec
    data: DataSpec = field(default_factory=DataSpec)
    training: TrainingSpec = field(default_factory=TrainingSpec)
    resources: Resources = field(default_factory=Resources)
    tracking: TrackingSpec = field(default_factory=TrackingSpec)
    serving: ServingSpec = field(default_factory=ServingSpec)
    publish: PublishSpec | None = None
    refresh: RefreshSpec = field(default_factory=RefreshSpec)
    suspend: bool = False
    backoff_limit: int | None = None
    active_deadline_seconds: int | None = None
    pre_running_deadline_seconds: int | None = None

    @property
    def model_id(self) -> str:
        return model_id(h.handle for h in self.handles)

    @property
    def model_uri(self) -> str:
        """<output>/<model-id>: everything this bot writes lives under it."""
        return self.output.uri.rstrip("/") + "/" + self.model_id


@dataclass(frozen=True)
class BotRequest:
    name: str
    spec: BotSpec
    namespace: str = "default"
    labels: dict = field(default_factory=dict)
    generation: int = 1


# The worker shape has no schema default: how many workers, GPUs, CPUs and how much memory
# a request gets when it does not say is the installation's choice (the operator's settings,
# Helm's job.workerDefaults), and on the local CLI the machine's. (section, field) pairs.
WORKER_FIELDS = (
    ("training", "workers"),
    ("training", "gpusPerWorker"),
    ("resources", "cpusPerWorker"),
    ("resources", "memoryPerWorker"),
)


@dataclass(frozen=True)
class WorkerDefaults:
    """What a request that leaves out (part of) its worker shape gets."""

    workers: int = 1
    gpus_per_worker: int = 1
    cpus_per_worker: int = 4
    memory_per_worker: str = "16Gi"

    def __post_init__(self) -> None:
        errors = []
        for section, key in WORKER_FIELDS:
            node = SPEC_SCHEMA["properties"][section]["properties"][key]
            errors += validate(getattr(self, _snake(key)), node, f"spec.{section}.{key} (default)")
        if errors:
            raise ValidationError("; ".join(errors))

    def fill(self, spec: dict) -> dict:
        """A spec document (as stored) with each worker field it leaves out filled in."""
        filled = dict(spec)
        for section, key in WORKER_FIELDS:
            filled[section] = {key: getattr(self, _snake(key)), **(filled.get(section) or {})}
        return filled

    def resolve(self, spec: BotSpec) -> BotSpec:
        """A typed spec with each worker field it leaves out filled in."""
        sections = {}
        for section, key in WORKER_FIELDS:
            part, name = sections.get(section, getattr(spec, section)), _snake(key)
            if getattr(part, name) is None:
                part = dataclasses.replace(part, **{name: getattr(self, name)})
            sections[section] = part
        return dataclasses.replace(spec, **sections)


def spec_document(spec: BotSpec) -> dict:
    """A typed spec back as the document it was parsed from (defaults filled in)."""

    def document(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            fields = ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
            return {_camel(name): document(item) for name, item in fields if item is not None}
        if isinstance(value, tuple):
            return [document(item) for item in value]
        return value

    return document(spec)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def normalize_handle(handle: str) -> str:
    return handle.strip().lstrip("@").lower()


def model_id(handles) -> str:
    """The reference's id: handles lower-cased, '@' stripped, sorted, joined with '-'."""
    return "-".join(sorted(normalize_handle(h) for h in handles))


def _snake(name: str) -> str:
    snake = re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()
    return snake + "_" if keyword.iskeyword(snake) else snake


def _build(cls: type, value: Any) -> Any:
    """Turn a validated, defaulted dict into the dataclass `cls` (recursively)."""
    if not dataclasses.is_dataclass(cls) or value is None:
        return value
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, item in value.items():
        name = _snake(key)
        kwargs[name] = _build_typed(hints[name], item)
    return cls(**kwargs)


def _build_typed(hint: str, value: Any) -> Any:
    target = hint.split(" | ")[0]
    if target.startswith("tuple["):
        element = globals()[target[len("tuple[") : -len(", ...]")]]
        return tuple(_build(element, item) for item in value)
    cls = globals().get(target)
    return _build(cls, value) if cls is not None else value


def parse_spec(spec: Any, path: str = "spec") -> BotSpec:
    errors = validate(spec, SPEC_SCHEMA, path)
    names = (
        [
            normalize_handle(h["handle"])
            for h in spec.get("handles", [])
            if isinstance(h, dict) and isinstance(h.get("handle"), str)
        ]
        if isinstance(spec, dict)
        else []
    )
    if len(set(names)) != len(names):
        errors.append(f"{path}.handles: handles must be distinct")
    if errors:
        raise ValidationError("; ".join(errors))
    return _build(BotSpec, with_defaults(spec, SPEC_SCHEMA))


DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
# The part of a request's metadata botfleet reads (the API server checks the rest).
METADATA_SCHEMA = _obj(
    "The request's metadata.",
    {
        "name": {"type": "string"},
        "namespace": _str("", pattern=DNS_LABEL),
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "generation": _int("", minimum=1),
    },
    additionalProperties={},
)


def parse_request(document: Any) -> BotRequest:
    """Validate a BotRequest document (as read from YAML or the API) and type it."""
    if not isinstance(document, dict):
        raise ValidationError("BotRequest: must be a mapping")
    problems = []
    if document.get("apiVersion") != API_VERSION:
        problems.append(f"apiVersion: must be {API_VERSION}, got {shown(document.get('apiVersion'))}")
    if document.get("kind") != KIND:
        problems.append(f"kind: must be {KIND}, got {shown(document.get('kind'))}")
    metadata = document.get("metadata")
    problems += validate(metadata, METADATA_SCHEMA, "metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not _go_regexp(DNS_LABEL).search(name):
        problems.append(f"metadata.name: must be a DNS label (lower-case letters, digits, '-'), got {shown(name)}")
    if problems:
        raise ValidationError("; ".join(problems))
    return BotRequest(
        name=metadata["name"],
        namespace=metadata.get("namespace", "default"),
        labels=dict(metadata.get("labels") or {}),
        generation=metadata.get("generation", 1),
        spec=parse_spec(document.get("spec")),
    )


def load_request(path: str) -> BotRequest:
    """Read and validate a BotRequest YAML file, naming the file in every error."""
    try:
        document = read_yaml(path)
    except YamlInputError as error:
        raise ValidationError(str(error)) from None
    try:
        return parse_request(document)
    except ValidationError as error:
        raise ValidationError(f"{path}: {error}") from error


# --------------------------------------------------------------------------- the CRD


def crd() -> dict:
    """The CustomResourceDefinition, generated from the schemas above."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "listKind": f"{KIND}List",
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Handles", "type": "string", "jsonPath": ".status.handles"},
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {
                            "name": "Kept",
                            "type": "integer",
                            "jsonPath": ".status.keptPosts",
                            "description": "Posts kept for training",
                        },
                        {"name": "Progress", "type": "string", "jsonPath": ".status.progress.percent"},
                        {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "priority": 1},
                        {"name": "Workers", "type": "string", "jsonPath": ".status.job.workers", "priority": 1},
                        {"name": "Model", "type": "string", "jsonPath": ".status.artifacts.model", "priority": 1},
                        {
                            "name": "Served-As",
                            "type": "string",
                            "jsonPath": ".status.serving.model",
                            "description": "The model name the serving API knows the bot by",
                            "priority": 1,
                        },
                        {"name": "Published", "type": "string", "jsonPath": ".status.publish.url", "priority": 1},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A request for a GPT-2 bot fine-tuned on one to three people's posts.",
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": SPEC_SCHEMA,
                                "status": STATUS_SCHEMA,
                            },
                            "required": ["spec"],
                        }
                    },
                }
            ],
        },
    }


def crd_yaml() -> str:
    header = "# Generated by `botfleet crd` from core/botfleet/api.py: do not edit by hand.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=120)


# --------------------------------------------------------------------------- the docs


def _rules(schema: dict) -> str:
    rules = []
    if "enum" in schema:
        rules.append("one of " + ", ".join(f"`{v}`" if v else '`""`' for v in schema["enum"]))
    for key, label in (
        ("minimum", "≥"),
        ("maximum", "≤"),
        ("minItems", "items ≥"),
        ("maxItems", "items ≤"),
        ("maxLength", "length ≤"),
    ):
        if key in schema:
            label = ">" if key == "minimum" and schema.get("exclusiveMinimum") else label
            rules.append(f"{label} {schema[key]}")
    if "pattern" in schema:
        rules.append("matches `" + schema["pattern"].replace("|", "\\|") + "`")  # '|' would end the table cell
    if schema.get("maxProperties") == 1:
        rules.append("exactly one field")
    return "; ".join(rules)


def _rows(schema: dict, path: str, required: bool):
    default = schema.get("default")
    if isinstance(default, bool):  # as YAML and JSON write it
        default = str(default).lower()
    shown_default = "" if default in (None, {}) else f"`{default}`"
    yield (
        f"| `{path}` | {schema['type']} | {'yes' if required else ''} | {shown_default}"
        f" | {_rules(schema)} | {schema.get('description', '')} |"
    )
    children = schema.get("items", schema) if schema["type"] in ("array", "object") else {}
    suffix = "[]" if schema["type"] == "array" else ""
    for name, sub in children.get("properties", {}).items():
        yield from _rows(sub, f"{path}{suffix}.{name}", name in children.get("required", []))


def spec_reference_markdown() -> str:
    """docs/api.md: every spec field with its type, default and rules, from the schema, then
    every reason the status gives."""
    shape = ", ".join(f"`spec.{section}.{key}`" for section, key in WORKER_FIELDS)
    defaults_text = ", ".join(f"`{key}: {getattr(WorkerDefaults(), _snake(key))}`" for _, key in WORKER_FIELDS)
    lines = [
        "# BotRequest API reference (`botfleet.dev/v1alpha1`)",
        "",
        "Generated by `botfleet api-docs` from `core/botfleet/api.py`, the schema the CRD,",
        "the CLI and these docs share. The status fields are listed in the CRD",
        "(`kubectl explain botrequest.status`).",
        "",
        f"The worker shape ({shape}) has no default in the schema: what a request leaves out",
        "is the installation's, set by the operator's `--default-*` settings (Helm values",
        f"`job.workerDefaults`; out of the box {defaults_text}).",
        "`botfleet run` on one machine gives such a request one worker, with a GPU when the",
        "machine has one.",
        "",
        "| field | type | required | default | rules | description |",
        "| --- | --- | --- | --- | --- | --- |",
        *_rows(SPEC_SCHEMA, "spec", True),
        "",
        *_reasons_section(),
    ]
    return "\n".join(lines) + "\n"


def _reasons_section() -> list[str]:
    """docs/api.md's list of every reason the status, its conditions and events give."""
    return [
        "## Reasons",
        "",
        "`status.reason` (`kubectl get botrequests -o wide`), the conditions' reasons and the",
        "events' reasons (`kubectl describe botrequest`) are one of these. A failure KubeRay",
        "reports with a reason of its own shows that reason.",
        "",
        "| reason | where | meaning |",
        "| --- | --- | --- |",
        *(f"| `{reason}` | {reason.where} | {reason.description} |" for reason in Reason),
    ]
