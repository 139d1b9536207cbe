"""A request's limits: how often a failed job runs again, how long it may wait for its
resources and how long it may run. Each is the request's own (``spec.backoffLimit``,
``spec.preRunningDeadlineSeconds``, ``spec.activeDeadlineSeconds``) or else the platform's
(the operator's settings; Helm ``job.*``).

KubeRay enforces the backoff limit and the active deadline of a RayJob itself; the operator
enforces the pre-running deadline for every executor (so that the failure says what the job
waited for, whatever KubeRay's version) and the active deadline of a job on a Ray cluster.
Pure functions; the reconciler stops the job and reports the failure.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from botfleet import api
from botfleet.reasons import Reason
from botfleet.timestamps import parse_time
from botfleet_operator.observation import JOB_RUNNING, JOB_STARTING, JOB_SUSPENDED, JobObservation
from botfleet_operator.settings import Settings


@dataclass(frozen=True)
class Limits:
    backoff_limit: int
    active_deadline_seconds: int
    pre_running_deadline_seconds: int  # 0: none


def limits_for(spec: api.BotSpec, settings: Settings) -> Limits:
    """The request's limits, the platform's where it gives none."""

    def own(value: int | None, default: int) -> int:
        return default if value is None else value

    return Limits(
        backoff_limit=own(spec.backoff_limit, settings.backoff_limit),
        active_deadline_seconds=own(spec.active_deadline_seconds, settings.active_deadline_seconds),
        pre_running_deadline_seconds=own(spec.pre_running_deadline_seconds, settings.pre_running_deadline_seconds),
    )


def waited_for(job: JobObservation, workers: str | None, queue: str | None) -> str:
    """What a job that has not started running is waiting for, in words."""
    if job.state == JOB_SUSPENDED:
        where = f"Kueue queue {queue!r}" if queue else "the cluster's job queue (the RayJob is suspended)"
        return f"quota in {where} for RayJob {job.name} ({workers})"
    if job.executor == "kuberay":
        return (
            f"the Ray cluster of RayJob {job.name} ({workers}) to start: its pods need nodes with those GPUs,"
            " CPUs and memory free, and the job image pulled (kubectl describe pods -l ray.io/cluster)"
        )
    return f"the Ray cluster to start Ray job {job.name} ({workers}): it needs that many free CPUs and GPUs"


def overdue(
    job: JobObservation,
    limits: Limits,
    *,
    enforce_active: bool,
    started: str | None,
    now: _dt.datetime,
    workers: str | None = None,
    queue: str | None = None,
) -> tuple[str, str] | None:
    """(reason, message) when the job has passed a deadline, else None.

    Waiting to run (starting, or suspended by a queue) is measured against the pre-running
    deadline from when the job started (``job.start_time``, else ``started``: when the
    operator launched it); running, against the active deadline, when ``enforce_active``
    (the executor does not enforce it itself)."""
    since = parse_time(job.start_time) or parse_time(started)
    if since is None:
        return None
    elapsed = (now - since).total_seconds()
    waiting = job.state == JOB_STARTING or job.state == JOB_SUSPENDED
    deadline = limits.pre_running_deadline_seconds
    if waiting and deadline and elapsed > deadline:
        message = (
            f"waited {elapsed:.0f} s (preRunningDeadlineSeconds: {deadline}) for {waited_for(job, workers, queue)}"
        )
        return Reason.PRE_RUNNING_DEADLINE_EXCEEDED, message
    deadline = limits.active_deadline_seconds
    if enforce_active and job.state == JOB_RUNNING and elapsed > deadline:
        return Reason.DEADLINE_EXCEEDED, f"ran {elapsed:.0f} s, past its activeDeadlineSeconds ({deadline})"
    return None
