"""Pure status logic: what a BotRequest's status should be, given what the world looks like.

Inputs are plain data (the current status, a :class:`JobObservation` from an executor, the
job's files as read from the object store); the output is the whole new status. The
reconciler computes it every time and writes only the difference
(:func:`botfleet_operator.patch.merge_patch`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botfleet import api
from botfleet.artifacts import History, Progress, Publication, Result, Stats, TrainingRecord
from botfleet.layout import Layout, folder
from botfleet.reasons import STAGE_FAILURES, Reason
from botfleet.timestamps import now_iso
from botfleet_operator.lifecycle import requested_retry, retry_status, run_status
from botfleet_operator.observation import (
    JOB_RETRYING,
    JOB_RUNNING,
    JOB_STARTING,
    JOB_SUCCEEDED,
    JOB_SUSPENDED,
    JobObservation,
)
from botfleet_operator.publish_status import after_training, awaiting_publish_retry, publish_status, published
from botfleet_operator.refresh import outcome, refresh_status

if TYPE_CHECKING:  # queue.py reads this module's phases
    from botfleet_operator.queue import QueueDecision

PENDING, PREPARING, TRAINING, PUBLISHING, SUCCEEDED, FAILED, SUSPENDED = api.PHASES
TERMINAL = (SUCCEEDED, FAILED)


@dataclass(frozen=True)
class JobFiles:
    """The job's files, as read from ``<model_uri>/`` (None = not there yet)."""

    stats: Stats | None = None  # data/stats.json (only when it matches this spec)
    progress: Progress | None = None  # progress.json
    result: Result | None = None  # result.json
    training: TrainingRecord | None = None  # model/training.json
    model_present: bool = False  # model/config.json
    card_present: bool = False  # model/README.md (or the card result.json names)
    card_uri: str | None = None  # the card result.json names, when not model/README.md
    publication: Publication | None = None  # publish.json
    history: History | None = None  # history.json: the model's versions


@dataclass(frozen=True)
class Situation:
    """Where the request is: its phase, why, in words; and whether its model is trained."""

    phase: str
    reason: str  # a Reason, or KubeRay's own for a failure it reports
    message: str
    trained: bool = False


@dataclass
class Desired:
    """The outcome of :func:`compute_status`."""

    status: dict
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type Normal|Warning, reason, message)
    need_card: bool = False  # the job succeeded but the model card is missing: write it


# --------------------------------------------------------------------------- file contents


def _percent(step: int | None, total: int | None) -> str | None:
    if not total:
        return None
    return f"{max(0, min(100, int(100 * (step or 0) / total)))}%"


def progress_status(progress: Progress | None, finished: bool = False) -> dict | None:
    """``status.progress``: the file's numbers; all steps done once the model is trained."""
    if progress is None and not finished:
        return None
    progress = progress or Progress()
    out: dict[str, Any] = {
        key: value
        for key, value in (
            ("step", progress.step),
            ("totalSteps", progress.total_steps),
            ("epoch", progress.epoch),
            ("loss", progress.loss),
            ("tokensPerSecond", progress.tokens_per_second),
            ("etaSeconds", progress.eta_seconds),
        )
        if value is not None
    }
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


def counts_status(stats: Stats | None) -> tuple[dict | None, int | None]:
    """Per-handle counts and the total kept, from stats.json."""
    if stats is None or not stats.handles:
        return None, None
    return {handle: numbers.counts() for handle, numbers in stats.handles.items()}, stats.kept


def metrics_status(metrics: Mapping[str, Any]) -> dict | None:
    """``status.metrics``: the finite numbers among training.json's (or result.json's) metrics."""
    out = {}
    for src, dst in (
        ("valid_loss_before", "validLossBefore"),
        ("valid_loss_after", "validLossAfter"),
        ("perplexity_before", "perplexityBefore"),
        ("perplexity_after", "perplexityAfter"),
        ("train_loss", "trainLoss"),
    ):
        value = _finite(metrics.get(src))
        if value is not None:
            out[dst] = value
    return out or None


def _finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (JSON has no NaN or infinity)."""
    if isinstance(value, (int, float)) and value == value and value not in (float("inf"), float("-inf")):
        return float(value)
    return None


HISTORY_SHOWN = 10  # the newest versions in status.history; history.json has them all


def history_status(history: History | None, layout: Layout) -> list[dict] | None:
    """``status.history``: the newest versions, oldest first, and where each one is."""
    if history is None or not history.versions:
        return None
    shown = []
    for v in history.versions[-HISTORY_SHOWN:]:
        where = folder(layout.model) if v is history.latest else v.archived
        entry = {
            "version": v.version,
            "finishedAt": v.finished_at,
            "posts": v.posts,
            "newPosts": v.new_posts,
            "perplexity": _finite(v.perplexity),
            "model": where,
        }
        shown.append({k: value for k, value in entry.items() if value is not None})
    return shown


# --------------------------------------------------------------------------- the situation


def failure_reason(files: JobFiles, job: JobObservation) -> tuple[str, str]:
    """(reason, message) of a failed run: the job's own error first, then KubeRay's/Ray's.

    The job names the reason in result.json; a job older than that only names the stage."""
    result = files.result
    error = (result.error or "").strip() if result else ""
    if error:
        reason = result.reason or STAGE_FAILURES.get(result.stage)
        where = f" (full log: {result.log})" if result.log else ""
        return reason or (Reason.DATA_FAILED if files.stats is None else Reason.TRAINING_FAILED), error + where
    reason = job.reason or Reason.JOB_FAILED
    message = job.message or f"the training job failed ({job.deployment_status or job.job_status or 'no detail'})"
    return reason, message


def _before_the_job(job: JobObservation, queue: QueueDecision | None, output_in_use: str | None) -> Situation:
    if queue is not None and not queue.admit:
        return Situation(PENDING, Reason.QUEUED, queue.message)
    if output_in_use:
        return Situation(PENDING, Reason.OUTPUT_IN_USE, output_in_use)
    return Situation(PENDING, Reason.LAUNCHING, f"starting training job {job.name}")


def _while_running(files: JobFiles) -> Situation:
    if files.result is not None and files.result.succeeded:
        return Situation(PUBLISHING, Reason.JOB_FINISHING, "training done; the job is finishing", trained=True)
    if files.stats is None:
        return Situation(PREPARING, Reason.PREPARING_DATA, "the data stage is gathering and filtering posts")
    if files.progress is None:
        _, kept = counts_status(files.stats)
        return Situation(TRAINING, Reason.TRAINING_STARTING, f"dataset ready ({kept} posts kept); training is starting")
    progress = progress_status(files.progress) or {}
    return Situation(TRAINING, Reason.TRAINING, f"step {progress.get('step', 0)} of {progress.get('totalSteps', '?')}")


def _after_success(files: JobFiles, layout: Layout) -> Situation:
    if not files.model_present:
        message = f"the job succeeded but wrote no model at {folder(layout.model)}"
        return Situation(FAILED, Reason.MODEL_MISSING, message, trained=True)
    if not files.card_present:
        message = f"writing the model card to {files.card_uri or layout.card}"
        return Situation(PUBLISHING, Reason.WRITING_CARD, message, trained=True)
    return Situation(SUCCEEDED, Reason.SUCCEEDED, f"model published at {folder(layout.model)}", trained=True)


def _suspended(job: JobObservation, files: JobFiles, stopped: bool) -> Situation:
    """spec.suspend is true: the job stops (``stopped``: nothing of it runs any more)."""
    if not stopped:
        return Situation(SUSPENDED, Reason.SUSPENDING, f"suspending: stopping job {job.name} (spec.suspend is true)")
    if not job.exists and files.progress is None:
        message = "suspended before training started: out of the queue until spec.suspend is false"
    else:
        progress = progress_status(files.progress) or {}
        at = f" at step {progress['step']} of {progress.get('totalSteps', '?')}" if "step" in progress else ""
        message = (
            f"suspended{at}: job {job.name} stopped, no training slot held;"
            " spec.suspend: false resumes from the newest checkpoint"
        )
    return Situation(SUSPENDED, Reason.SUSPEND_REQUESTED, message)


def situation(
    job: JobObservation,
    files: JobFiles,
    layout: Layout,
    *,
    queue: QueueDecision | None,
    invalid: str | None,
    output_in_use: str | None,
    suspended: bool | None = None,
    overdue: tuple[str, str] | None = None,
) -> Situation:
    """The phase, reason and message of the request's current generation."""
    if invalid:
        return Situation(FAILED, Reason.INVALID_SPEC, invalid)
    if overdue:
        return Situation(FAILED, *overdue)
    if suspended is not None:
        return _suspended(job, files, suspended)
    if not job.exists:
        return _before_the_job(job, queue, output_in_use)
    if job.state == JOB_SUSPENDED:
        message = f"RayJob {job.name} is suspended (waiting for quota, e.g. a Kueue queue)"
        return Situation(PENDING, Reason.SUSPENDED, message)
    if job.state == JOB_STARTING:
        what = "the Ray cluster of RayJob" if job.executor == "kuberay" else "Ray job"
        return Situation(PENDING, Reason.JOB_STARTING, f"waiting for {what} {job.name} to start")
    if job.state == JOB_RETRYING:
        message = (
            f"the training job failed ({job.message or job.reason or 'no detail'});"
            f" KubeRay is retrying it (attempt {job.failed_attempts + 1})"
        )
        return Situation(PENDING, Reason.RETRYING, message)
    if job.state == JOB_RUNNING:
        return _while_running(files)
    if job.state == JOB_SUCCEEDED:
        return _after_success(files, layout)
    return Situation(FAILED, *failure_reason(files, job))


# --------------------------------------------------------------------------- status parts


def outputs_status(files: JobFiles, layout: Layout, job: JobObservation, current: Situation) -> dict:
    """``progress``, ``metrics`` and ``artifacts``: what the run has produced so far."""
    out: dict[str, Any] = {}
    artifacts: dict[str, str] = {}
    if files.stats is not None:
        artifacts["dataset"] = folder(layout.data)
    # Progress: live while training, complete once trained.
    progress = progress_status(files.progress, finished=current.trained and current.phase != FAILED)
    if progress and (current.phase not in (PENDING, PREPARING) or job.state == JOB_RETRYING):
        out["progress"] = progress
    if current.phase in (TRAINING, PUBLISHING, SUCCEEDED) or (current.phase in (FAILED, SUSPENDED) and files.progress):
        artifacts["checkpoints"] = folder(layout.checkpoints)
    if current.trained and files.model_present:
        artifacts["model"] = folder(layout.model)
        recorded = files.training.metrics() if files.training else (files.result.metrics if files.result else {})
        metrics = metrics_status(recorded)
        if metrics:
            out["metrics"] = metrics
    if files.card_present and current.trained:
        artifacts["card"] = files.card_uri or layout.card
    if files.result is not None and files.result.tracking_run_url:
        artifacts["trackingRun"] = str(files.result.tracking_run_url)
    if files.result is not None and files.result.log:
        artifacts["log"] = files.result.log
    if artifacts:
        out["artifacts"] = artifacts
    return out


def job_status(old: dict, job: JobObservation, workers: str | None) -> dict:
    """``status.job``: the job and the worker shape it was started with."""
    old_job = old.get("job") or {}
    if old_job.get("name") == job.name and old_job.get("workers"):
        workers = old_job["workers"]  # the operator's defaults may have changed since
    return {
        k: v
        for k, v in (
            ("executor", job.executor),
            ("name", job.name),
            ("workers", workers),
            ("jobStatus", job.job_status),
            ("jobDeploymentStatus", job.deployment_status),
        )
        if v
    }


def condition(type_: str, ok: bool | None, reason: str, message: str, generation: int) -> dict:
    return {
        "type": type_,
        "status": "Unknown" if ok is None else ("True" if ok else "False"),
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def conditions(current: Situation, files: JobFiles, layout: Layout, generation: int) -> list[dict]:
    """Ready, DataReady and Trained; a failure fails the stages not done yet."""
    if files.stats is not None:
        message = f"{counts_status(files.stats)[1]} posts kept, dataset at {folder(layout.data)}"
        data = condition("DataReady", True, Reason.DATASET_READY, message, generation)
    elif current.phase == FAILED:
        data = condition("DataReady", False, current.reason, current.message, generation)
    else:
        waiting = Reason.PENDING if current.phase == PENDING else Reason.PREPARING
        data = condition("DataReady", False, waiting, "the data stage has not finished", generation)
    if current.trained:
        trained = condition("Trained", True, Reason.TRAINING_SUCCEEDED, "the training job succeeded", generation)
    elif current.phase == FAILED:
        trained = condition("Trained", False, current.reason, current.message, generation)
    else:
        waiting = Reason.TRAINING if current.phase == TRAINING else Reason.PENDING
        trained = condition("Trained", False, waiting, "training has not finished", generation)
    return [condition("Ready", current.phase == SUCCEEDED, current.reason, current.message, generation), data, trained]


def suspended_condition(current: Situation, old: dict, generation: int) -> list[dict]:
    """Suspended, once the request has been suspended: True while it is, then False."""
    if current.phase == SUSPENDED:
        return [condition("Suspended", True, current.reason, current.message, generation)]
    if any(c.get("type") == "Suspended" for c in old.get("conditions") or ()):
        return [condition("Suspended", False, Reason.RESUMED, "spec.suspend is false: training resumes", generation)]
    return []


def merge_conditions(old: list[dict] | None, new: list[dict], now: str) -> list[dict]:
    """Keep each condition's lastTransitionTime unless its status changed."""
    previous = {c.get("type"): c for c in (old or [])}
    merged = []
    for cond in new:
        before = previous.get(cond["type"])
        stamp = before.get("lastTransitionTime") if before and before.get("status") == cond["status"] else None
        merged.append({**cond, "lastTransitionTime": stamp or now})
    return merged


# --------------------------------------------------------------------------- the whole status


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
    publish_repo: str | None = None,
    suspended: bool | None = None,
    overdue: tuple[str, str] | None = None,
) -> Desired:
    """The whole status of the request's current generation.

    ``queue`` is the admission decision when no job has been started for this generation
    (None once one has). ``invalid`` is a spec problem the API server could not catch.
    ``output_in_use`` says which other BotRequest owns the output folder (no job started).
    ``workers`` is the worker shape the operator's defaults give the spec now; a job
    already in status keeps the shape it was started with. ``publish_repo`` is the Hub
    repository the spec publishes to (None: it does not). ``suspended`` is set while
    spec.suspend is true: whether the job has stopped. ``overdue`` is the (reason, message)
    of a deadline the job passed (:mod:`botfleet_operator.limits`): the operator stopped it.
    """
    now = now or now_iso()
    generation = int(body.get("metadata", {}).get("generation") or 1)
    old = body.get("status") or {}
    same_generation = old.get("observedGeneration") == generation
    current = situation(
        job,
        files,
        layout,
        queue=queue,
        invalid=invalid,
        output_in_use=output_in_use,
        suspended=suspended,
        overdue=overdue,
    )
    if publish_repo and current.phase == SUCCEEDED:  # trained, with its card: the Hub decides
        current = Situation(*after_training(files.publication, publish_repo, folder(layout.model)), trained=True)

    status: dict[str, Any] = {"observedGeneration": generation, "modelId": model_id, "handles": ",".join(handles)}
    if same_generation and old.get("startTime"):
        status["startTime"] = old["startTime"]
    counts, kept = counts_status(files.stats)
    if counts is not None:
        status.update(counts=counts, keptPosts=kept)
    status.update(outputs_status(files, layout, job, current))
    history = history_status(files.history, layout)
    if history:
        status["history"] = history
    if job.exists or (queue is None and not invalid and not output_in_use):
        status["job"] = job_status(old, job, workers)
    refresh = refresh_status(old, files.result, current.phase in TERMINAL)
    if refresh:
        status["refresh"] = refresh
    message = current.message
    if current.phase == SUCCEEDED and files.result is not None and files.result.new_posts is not None:
        message = f"{message} ({outcome(files.result)})"  # a refresh's job
    status.update(phase=current.phase, reason=current.reason, message=message)
    if current.phase != PENDING or current.reason not in (Reason.QUEUED, Reason.OUTPUT_IN_USE):
        status.setdefault("startTime", now)
    if current.phase in TERMINAL:
        finished_before = same_generation and old.get("phase") == current.phase and old.get("completionTime")
        status["completionTime"] = old["completionTime"] if finished_before else now
    retry = retry_status(body)
    if retry:
        status["retry"] = retry
    status["run"] = run_status(body)
    listed = conditions(current, files, layout, generation) + suspended_condition(current, old, generation)
    if publish_repo:
        ok, reason, message = published(files.publication, publish_repo, current.message)
        listed.append(condition("Published", ok, reason, message, generation))
        status["publish"] = publish_status(files.publication, publish_repo)
    status["conditions"] = merge_conditions(old.get("conditions"), listed, now)

    events = []
    if not same_generation or old.get("phase") != current.phase or old.get("reason") != current.reason:
        kind = "Warning" if current.phase == FAILED or current.reason == Reason.OUTPUT_IN_USE else "Normal"
        events.append((kind, current.reason, f"{current.phase}: {current.message}"))
    need_card = job.state == JOB_SUCCEEDED and files.model_present and not files.card_present
    return Desired(status, events, need_card=need_card)


def is_terminal_for(body: dict) -> bool:
    """Whether the current generation already reached Succeeded or Failed (and no retry of
    the failure is asked for)."""
    status = body.get("status") or {}
    generation = int((body.get("metadata") or {}).get("generation") or 1)
    done = status.get("phase") in TERMINAL and status.get("observedGeneration") == generation
    return done and not awaiting_publish_retry(status) and requested_retry(body) is None
