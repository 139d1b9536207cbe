"""What an executor sees of a job, whatever runs it: a KubeRay RayJob or a Ray job submission.

Both are mapped to one :class:`JobObservation` with a normalised state (``JOB_*``), so the
status logic never reads an executor's own vocabulary.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

from botfleet.reasons import Reason
from botfleet.timestamps import now_iso

# Normalised job states, whatever the executor.
JOB_ABSENT = "Absent"  # no job exists
JOB_STARTING = "Starting"  # created, cluster/driver not running yet
JOB_RUNNING = "Running"
JOB_RETRYING = "Retrying"
JOB_SUSPENDED = "Suspended"
JOB_SUCCEEDED = "Succeeded"
JOB_FAILED = "Failed"
JOB_FINISHED = (JOB_SUCCEEDED, JOB_FAILED)


@dataclass(frozen=True)
class JobObservation:
    """What an executor saw of one generation's job."""

    executor: str
    name: str
    state: str = JOB_ABSENT
    job_status: str | None = None  # Ray's: PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED
    deployment_status: str | None = None  # KubeRay's jobDeploymentStatus
    reason: str | None = None  # a Reason, or KubeRay's own (e.g. DeadlineExceeded)
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
            reason = Reason.APP_FAILED if job_status == "FAILED" else Reason.JOB_STOPPED
    elif deployment in ("Failed", "ValidationFailed"):
        state = JOB_FAILED
        reason = reason or (Reason.VALIDATION_FAILED if deployment == "ValidationFailed" else Reason.JOB_FAILED)
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


def observe_ray_job(
    name: str, status: str | None, message: str | None = None, start_ms: int | None = None, end_ms: int | None = None
) -> JobObservation:
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
    reason = {"FAILED": Reason.JOB_FAILED, "STOPPED": Reason.JOB_STOPPED}.get(status)

    def iso(ms):
        return now_iso(_dt.datetime.fromtimestamp(ms / 1000, _dt.UTC)) if ms else None

    return JobObservation(
        "ray",
        name,
        state=state,
        job_status=status,
        reason=reason,
        message=message,
        start_time=iso(start_ms),
        end_time=iso(end_ms),
    )
