"""Pure status logic: what a BotRequest's status should be, given what the world looks like.

Inputs are plain data (the current status, a :class:`JobObservation` from an executor, the
job's files as read from the object store); the output is the whole new status. The
reconciler computes it every time and writes only the difference (:func:`merge_patch`).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

from botfleet import api
from botfleet.layout import Layout, folder

PENDING, PREPARING, TRAINING, PUBLISHING, SUCCEEDED, FAILED = api.PHASES
TERMINAL = (SUCCEEDED, FAILED)

# Normalised job states, whatever the executor.
JOB_ABSENT = "Absent"  # no job exists
JOB_STARTING = "Starting"  # created, cluster/driver not running yet
JOB_RUNNING = "Running"
JOB_RETRYING = "Retrying"
JOB_SUSPENDED = "Suspended"
JOB_SUCCEEDED = "Succeeded"
JOB_FAILED = "Failed"
JOB_FINISHED = (JOB_SUCCEEDED, JOB_FAILED)


def now_iso(now: _dt.datetime | None = None) -> str:
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return now.astimezone(_dt.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> _dt.datetime | None:
    if not value:
        return None
    try:
        return _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


# --------------------------------------------------------------------------- observations


@dataclass(frozen=True)
class JobObservation:
    """What an executor saw of one generation's job."""

    executor: str
    name: str
    state: str = JOB_ABSENT
    job_status: str | None = None  # Ray's: PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED
    deployment_status: str | None = None  # KubeRay's jobDeploymentStatus
    reason: str | None = None  # e.g. DeadlineExceeded, SubmissionFailed, AppFailed
    message: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    failed_attempts: int = 0

    @property
    def exists(self) -> bool:
        return self.state != JOB_ABSENT

    @property
    def finished(self) -> bool:
        return self.state in JOB_FINISHED


def observe_rayjob(name: str, rayjob: dict | None) -> JobObservation:
    """Map a KubeRay RayJob's status (jobStatus + jobDeploymentStatus) to a JobObservation."""
    if rayjob is None:
        return JobObservation("kuberay", name)
    status = rayjob.get("status") or {}
    job_status = status.get("jobStatus") or None
    deployment = status.get("jobDeploymentStatus") or None
    reason = status.get("reason") or None
    message = status.get("message") or None
    if deployment == "Complete":
        state = JOB_SUCCEEDED if job_status == "SUCCEEDED" else JOB_FAILED
        if state == JOB_FAILED and not reason:
            reason = "AppFailed" if job_status == "FAILED" else "JobStopped"
    elif deployment in ("Failed", "ValidationFailed"):
        state = JOB_FAILED
        reason = reason or ("ValidationFailed" if deployment == "ValidationFailed" else "JobFailed")
    elif deployment == "Retrying":
        state = JOB_RETRYING
    elif deployment in ("Suspending", "Suspended"):
        state = JOB_SUSPENDED
    elif deployment == "Running":
        if job_status == "SUCCEEDED":
            state = JOB_SUCCEEDED
        elif job_status in ("FAILED", "STOPPED"):
            # KubeRay marks the deployment Failed/Retrying next; the job is over either way
            # unless retries remain, which the next observation shows.
            state = JOB_RUNNING
        else:
            state = JOB_RUNNING if job_status == "RUNNING" else JOB_STARTING
    else:  # "", New, Initializing, Waiting
        state = JOB_STARTING
    return JobObservation(
        "kuberay",
        name,
        state=state,
        job_status=job_status,
        deployment_status=deployment,
        reason=reason,
        message=message,
        start_time=status.get("startTime"),
        end_time=status.get("endTime"),
        failed_attempts=int(status.get("failed") or 0),
    )


def observe_ray_job(name: str, status: str | None, message: str | None = None, start_ms: int | None = None, end_ms: int | None = None) -> JobObservation:
    """Map a Ray job submission's status to a JobObservation (None = no such job)."""
    if status is None:
        return JobObservation("ray", name)
    state = {
        "PENDING": JOB_STARTING,
        "RUNNING": JOB_RUNNING,
        "SUCCEEDED": JOB_SUCCEEDED,
        "FAILED": JOB_FAILED,
        "STOPPED": JOB_FAILED,
    }.get(status, JOB_STARTING)
    reason = {"FAILED": "JobFailed", "STOPPED": "JobStopped"}.get(status)

    def iso(ms):
        return now_iso(_dt.datetime.fromtimestamp(ms / 1000, _dt.timezone.utc)) if ms else None

    return JobObservation("ray", name, state=state, job_status=status, reason=reason, message=message, start_time=iso(start_ms), end_time=iso(end_ms))


@dataclass(frozen=True)
class JobFiles:
    """The job's files, as read from ``<model_uri>/`` (None = not there yet)."""

    stats: dict | None = None  # data/stats.json (only when it matches this spec)
    progress: dict | None = None  # progress.json
    result: dict | None = None  # result.json
    training: dict | None = None  # model/training.json
    model_present: bool = False  # model/config.json
    card_present: bool = False  # model/README.md (or the card result.json names)
    card_uri: str | None = None  # the card result.json names, when not model/README.md


# --------------------------------------------------------------------------- queueing


@dataclass(frozen=True)
class QueueEntry:
    """One BotRequest as the concurrency limit sees it."""

    key: str  # namespace/name
    created: str  # creationTimestamp (RFC 3339; sorts as text)
    active: bool  # holds a training slot: a job was started for it and it has not finished
    waiting: bool  # needs a slot: unfinished, no job yet


@dataclass(frozen=True)
class QueueDecision:
    admit: bool
    position: int = 0  # 1-based place in the queue when not admitted
    queued: int = 0  # requests waiting
    running: int = 0  # slots in use
    limit: int = 0

    @property
    def message(self) -> str:
        return (
            f"queued: position {self.position} of {self.queued}; {self.running} of {self.limit}"
            " training slots in use (operator setting max_concurrent)"
        )


def decide_admission(key: str, entries: list[QueueEntry], limit: int, extra_active: set[str] = frozenset()) -> QueueDecision:
    """Whether ``key`` may start its job now: first come (creationTimestamp), first served.

    ``extra_active`` are keys this operator started but the entries do not show yet.
    A limit of 0 means no limit.
    """
    active = {e.key for e in entries if e.active} | set(extra_active)
    if key in active:
        return QueueDecision(True, running=len(active), limit=limit)
    waiting = sorted((e for e in entries if e.waiting and e.key not in active), key=lambda e: (e.created, e.key))
    if all(e.key != key for e in waiting):
        waiting.append(QueueEntry(key, "~", False, True))  # not indexed yet: last in line
    if limit <= 0:
        return QueueDecision(True, running=len(active), limit=limit)
    free = max(0, limit - len(active))
    rank = next(i for i, e in enumerate(waiting) if e.key == key)
    if rank < free:
        return QueueDecision(True, running=len(active), limit=limit)
    return QueueDecision(False, position=rank - free + 1, queued=max(0, len(waiting) - free), running=len(active), limit=limit)


def queue_entry(body: dict) -> QueueEntry:
    meta = body.get("metadata", {})
    status = body.get("status") or {}
    generation = int(meta.get("generation") or 1)
    phase = status.get("phase")
    has_job = bool((status.get("job") or {}).get("name"))
    done = phase in TERMINAL and status.get("observedGeneration") == generation
    active = has_job and phase not in TERMINAL and not meta.get("deletionTimestamp")
    # A request whose output folder is another's waits for that, not for a slot.
    blocked = status.get("reason") == "OutputInUse" and status.get("observedGeneration") == generation
    waiting = not active and not done and not blocked and not meta.get("deletionTimestamp")
    return QueueEntry(f"{meta.get('namespace')}/{meta.get('name')}", meta.get("creationTimestamp") or "", active, waiting)


# --------------------------------------------------------------------------- status


def _percent(step: int | None, total: int | None) -> str | None:
    if not total:
        return None
    return f"{max(0, min(100, int(100 * (step or 0) / total)))}%"


def progress_status(progress: dict | None, finished: bool = False) -> dict | None:
    if not progress and not finished:
        return None
    progress = progress or {}
    out: dict[str, Any] = {}
    for src, dst, cast in (
        ("step", "step", int),
        ("total_steps", "totalSteps", int),
        ("epoch", "epoch", float),
        ("loss", "loss", float),
        ("tokens_per_second", "tokensPerSecond", float),
        ("eta_seconds", "etaSeconds", float),
    ):
        value = progress.get(src)
        if value is not None:
            try:
                out[dst] = cast(value)
            except (TypeError, ValueError):
                pass
    if finished:
        out["percent"] = "100%"
        if out.get("totalSteps"):
            out["step"] = out["totalSteps"]
        out["etaSeconds"] = 0.0
    else:
        percent = _percent(out.get("step"), out.get("totalSteps"))
        if percent:
            out["percent"] = percent
    return out or None


def counts_status(stats: dict | None) -> tuple[dict | None, int | None]:
    """Per-handle counts and the total kept, from stats.json."""
    if not stats:
        return None, None
    counts: dict[str, dict] = {}
    handles = stats.get("handles")
    if isinstance(handles, dict):
        items = handles.items()
    elif isinstance(handles, list):
        items = ((h.get("handle") or h.get("name"), h) for h in handles if isinstance(h, dict))
    else:
        items = ()
    for handle, numbers in items:
        if not handle or not isinstance(numbers, dict):
            continue
        numbers = numbers.get("counts", numbers)
        counts[str(handle)] = {k: int(numbers[k]) for k in ("downloaded", "retweets", "short", "kept") if isinstance(numbers.get(k), (int, float))}
    kept = stats.get("kept")
    if not isinstance(kept, (int, float)):
        kept = sum(c.get("kept", 0) for c in counts.values()) if counts else None
    return (counts or None), (int(kept) if kept is not None else None)


def metrics_status(training: dict | None) -> dict | None:
    if not training:
        return None
    out = {}
    for src, dst in (
        ("valid_loss_before", "validLossBefore"),
        ("valid_loss_after", "validLossAfter"),
        ("perplexity_before", "perplexityBefore"),
        ("perplexity_after", "perplexityAfter"),
        ("train_loss", "trainLoss"),
    ):
        value = training.get(src)
        if isinstance(value, (int, float)) and value == value and value not in (float("inf"), float("-inf")):
            out[dst] = float(value)
    return out or None


def condition(type_: str, ok: bool | None, reason: str, message: str, generation: int) -> dict:
    return {
        "type": type_,
        "status": "Unknown" if ok is None else ("True" if ok else "False"),
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def merge_conditions(old: list[dict] | None, new: list[dict], now: str) -> list[dict]:
    """Keep each condition's lastTransitionTime unless its status changed."""
    previous = {c.get("type"): c for c in (old or [])}
    merged = []
    for cond in new:
        before = previous.get(cond["type"])
        stamp = before.get("lastTransitionTime") if before and before.get("status") == cond["status"] else None
        merged.append({**cond, "lastTransitionTime": stamp or now})
    return merged


FAILURE_REASONS = {
    # Phrases in the data stage's error message -> the reason the status shows.
    "not enough": "NotEnoughPosts",
    "too few": "NotEnoughPosts",
    "no such account": "SourceFailed",
    "unknown account": "SourceFailed",
    "not found": "SourceFailed",
    "does not exist": "SourceFailed",
}
STAGE_REASONS = {"data": "DataFailed", "training": "TrainingFailed", "publishing": "PublishingFailed"}


def failure_reason(files: JobFiles, job: JobObservation) -> tuple[str, str]:
    """(reason, message) of a failed run: the job's own error first, then KubeRay's/Ray's."""
    result = files.result or {}
    error = str(result.get("error") or "").strip()
    if error:
        reason = str(result.get("reason") or "")
        stage = result.get("stage")
        if not reason and stage in (None, "data"):
            lowered = error.lower()
            reason = next((r for phrase, r in FAILURE_REASONS.items() if phrase in lowered), "")
        if not reason:
            reason = STAGE_REASONS.get(stage) or ("DataFailed" if files.stats is None else "TrainingFailed")
        return reason, error
    reason = job.reason or "JobFailed"
    message = job.message or f"the training job failed ({job.deployment_status or job.job_status or 'no detail'})"
    return reason, message


@dataclass
class Desired:
    """The outcome of :func:`compute_status`."""

    status: dict
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type Normal|Warning, reason, message)
    need_card: bool = False  # the job succeeded but the model card is missing: write it


def compute_status(
    body: dict,
    *,
    model_id: str,
    handles: list[str],
    layout: Layout,
    job: JobObservation,
    files: JobFiles,
    queue: QueueDecision | None = None,
    now: str | None = None,
    invalid: str | None = None,
    workers: str | None = None,
    output_in_use: str | None = None,
) -> Desired:
    """The whole status of the request's current generation.

    ``queue`` is the admission decision when no job has been started for this generation
    (None once one has). ``invalid`` is a spec problem the API server could not catch.
    ``output_in_use`` says which other BotRequest owns the output folder (no job started).
    ``workers`` is the worker shape the operator's defaults give the spec now; a job
    already in status keeps the shape it was started with.
    """
    now = now or now_iso()
    meta = body.get("metadata", {})
    generation = int(meta.get("generation") or 1)
    old = body.get("status") or {}
    same_generation = old.get("observedGeneration") == generation
    counts, kept = counts_status(files.stats)

    status: dict[str, Any] = {
        "observedGeneration": generation,
        "modelId": model_id,
        "handles": ",".join(handles),
    }
    if same_generation and old.get("startTime"):
        status["startTime"] = old["startTime"]
    if counts is not None:
        status["counts"] = counts
    if kept is not None:
        status["keptPosts"] = kept
    artifacts: dict[str, str] = {}
    if files.stats is not None:
        artifacts["dataset"] = folder(layout.data)

    data_ready = files.stats is not None
    trained = False
    if invalid:
        phase, reason, message = FAILED, "InvalidSpec", invalid
    elif not job.exists and queue is not None and not queue.admit:
        phase, reason, message = PENDING, "Queued", queue.message
    elif not job.exists and output_in_use:
        phase, reason, message = PENDING, "OutputInUse", output_in_use
    elif not job.exists:
        phase, reason, message = PENDING, "Launching", f"starting training job {job.name}"
    elif job.state == JOB_SUSPENDED:
        phase, reason, message = PENDING, "Suspended", f"RayJob {job.name} is suspended (waiting for quota, e.g. a Kueue queue)"
    elif job.state == JOB_STARTING:
        phase, reason = PENDING, "JobStarting"
        message = f"waiting for {'the Ray cluster of RayJob' if job.executor == 'kuberay' else 'Ray job'} {job.name} to start"
    elif job.state == JOB_RETRYING:
        phase, reason = PENDING, "Retrying"
        message = f"the training job failed ({job.message or job.reason or 'no detail'}); KubeRay is retrying it (attempt {job.failed_attempts + 1})"
    elif job.state == JOB_RUNNING:
        result_ok = (files.result or {}).get("status") == "succeeded"
        if result_ok:
            phase, reason, message = PUBLISHING, "JobFinishing", "training done; the job is finishing"
            trained = True
        elif files.stats is None:
            phase, reason, message = PREPARING, "PreparingData", "the data stage is gathering and filtering posts"
        elif files.progress is None:
            phase, reason, message = TRAINING, "TrainingStarting", f"dataset ready ({kept} posts kept); training is starting"
        else:
            phase, reason = TRAINING, "Training"
            p = progress_status(files.progress) or {}
            message = f"step {p.get('step', 0)} of {p.get('totalSteps', '?')}"
    elif job.state == JOB_SUCCEEDED:
        trained = True
        if not files.model_present:
            phase, reason, message = FAILED, "ModelMissing", f"the job succeeded but wrote no model at {folder(layout.model)}"
        elif not files.card_present:
            phase, reason, message = PUBLISHING, "WritingCard", f"writing the model card to {files.card_uri or layout.card}"
        else:
            phase, reason, message = SUCCEEDED, "Succeeded", f"model published at {folder(layout.model)}"
    else:  # JOB_FAILED
        reason, message = failure_reason(files, job)
        phase = FAILED

    # Progress: live while training, complete once trained.
    progress = progress_status(files.progress, finished=trained and phase != FAILED)
    if progress and phase not in (PENDING, PREPARING):
        status["progress"] = progress
    elif progress and phase == PENDING and job.state == JOB_RETRYING:
        status["progress"] = progress
    if phase in (TRAINING, PUBLISHING, SUCCEEDED) or (phase == FAILED and files.progress):
        artifacts["checkpoints"] = (files.result or {}).get("checkpoints") or folder(layout.checkpoints)
    if trained and files.model_present:
        artifacts["model"] = folder(layout.model)
        metrics = metrics_status(files.training or (files.result or {}).get("metrics"))
        if metrics:
            status["metrics"] = metrics
    if files.card_present and trained:
        artifacts["card"] = files.card_uri or layout.card
    tracking = (files.result or {}).get("tracking_run_url")
    if tracking:
        artifacts["trackingRun"] = str(tracking)
    if artifacts:
        status["artifacts"] = artifacts
    if job.exists or (queue is None and not invalid and not output_in_use):
        old_job = old.get("job") or {}
        if old_job.get("name") == job.name and old_job.get("workers"):
            workers = old_job["workers"]  # the operator's defaults may have changed since
        status["job"] = {k: v for k, v in (
            ("executor", job.executor),
            ("name", job.name),
            ("workers", workers),
            ("jobStatus", job.job_status),
            ("jobDeploymentStatus", job.deployment_status),
        ) if v}
    status.update(phase=phase, reason=reason, message=message)
    if phase != PENDING or reason not in ("Queued", "OutputInUse"):
        status.setdefault("startTime", now)
    if phase in TERMINAL:
        status["completionTime"] = old.get("completionTime") if same_generation and old.get("phase") == phase and old.get("completionTime") else now

    if data_ready:
        data_cond = condition("DataReady", True, "DatasetReady", f"{kept} posts kept, dataset at {folder(layout.data)}", generation)
    elif phase == FAILED:
        data_cond = condition("DataReady", False, reason, message, generation)
    else:
        data_cond = condition("DataReady", False, "Pending" if phase == PENDING else "Preparing", "the data stage has not finished", generation)
    if trained:
        trained_cond = condition("Trained", True, "TrainingSucceeded", "the training job succeeded", generation)
    elif phase == FAILED:
        trained_cond = condition("Trained", False, reason, message, generation)
    else:
        trained_cond = condition("Trained", False, "Training" if phase == TRAINING else "Pending", "training has not finished", generation)
    ready_cond = condition("Ready", phase == SUCCEEDED, reason, message, generation)
    status["conditions"] = merge_conditions(old.get("conditions"), [ready_cond, data_cond, trained_cond], now)

    events = []
    if not same_generation or old.get("phase") != phase or old.get("reason") != reason:
        kind = "Warning" if phase == FAILED or reason == "OutputInUse" else "Normal"
        events.append((kind, reason, f"{phase}: {message}"))
    return Desired(status, events, need_card=job.state == JOB_SUCCEEDED and files.model_present and not files.card_present)


# --------------------------------------------------------------------------- patches


def merge_patch(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new`` (None: no change)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return None if old == new else new
    patch = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif isinstance(value, dict) and isinstance(old[key], dict):
            sub = merge_patch(old[key], value)
            if sub is not None and sub != {}:
                patch[key] = sub
        elif old[key] != value:
            patch[key] = value
    return patch or None


def is_terminal_for(body: dict) -> bool:
    """Whether the current generation already reached Succeeded or Failed."""
    status = body.get("status") or {}
    generation = int((body.get("metadata") or {}).get("generation") or 1)
    return status.get("phase") in TERMINAL and status.get("observedGeneration") == generation
