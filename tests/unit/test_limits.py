"""A request's limits (botfleet_operator.limits): its own or the platform's, and the
deadlines a job can pass, with what it waited for."""

from __future__ import annotations

import datetime as _dt

from botfleet import api
from botfleet_operator import observation
from botfleet_operator.limits import Limits, limits_for, overdue
from botfleet_operator.settings import Settings
from tests.fixtures.bot_requests import body, rayjob_for

START = "2026-12-02T15:00:00Z"
WORKERS = "2 workers, each 1 GPU, 4 CPUs, 16Gi"
LIMITS = Limits(backoff_limit=1, active_deadline_seconds=3600, pre_running_deadline_seconds=600)


def at(seconds: float) -> _dt.datetime:
    return _dt.datetime(2026, 12, 2, 15, 0, tzinfo=_dt.UTC) + _dt.timedelta(seconds=seconds)


def job(state, executor="kuberay", start=START):
    return observation.JobObservation(executor, "alice-g1", state=state, start_time=start)


def test_a_request_sets_its_own_limits_else_the_platforms():
    settings = Settings(backoff_limit=2, active_deadline_seconds=7200, pre_running_deadline_seconds=900)
    plain = api.parse_spec(body()["spec"])
    assert limits_for(plain, settings) == Limits(2, 7200, 900)
    own = body()
    own["spec"].update(backoffLimit=0, activeDeadlineSeconds=60, preRunningDeadlineSeconds=30)
    assert limits_for(api.parse_spec(own["spec"]), settings) == Limits(0, 60, 30)
    # KubeRay enforces a RayJob's own: the request's values go into it.
    spec = rayjob_for(own, settings)["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (0, 60)
    assert "preRunningDeadlineSeconds" not in spec  # the operator's, so the failure says what was waited for
    # A request may shorten or lengthen the wait, not turn the limit off (the platform may).
    assert api.validate({**own["spec"], "preRunningDeadlineSeconds": 0}, api.SPEC_SCHEMA, "spec") != []


def test_a_job_waiting_past_its_pre_running_deadline_fails_saying_for_what():
    starting = job(observation.JOB_STARTING)
    assert overdue(starting, LIMITS, enforce_active=False, started=None, now=at(599), workers=WORKERS) is None
    reason, message = overdue(starting, LIMITS, enforce_active=False, started=None, now=at(601), workers=WORKERS)
    assert reason == "PreRunningDeadlineExceeded"
    assert message.startswith("waited 601 s (preRunningDeadlineSeconds: 600) for the Ray cluster of RayJob alice-g1")
    assert WORKERS in message and "GPUs" in message

    kueue = job(observation.JOB_SUSPENDED)
    _, message = overdue(kueue, LIMITS, enforce_active=False, started=None, now=at(700), workers=WORKERS, queue="gpus")
    assert "quota in Kueue queue 'gpus' for RayJob alice-g1" in message

    pending = job(observation.JOB_STARTING, executor="ray", start=None)
    _, message = overdue(pending, LIMITS, enforce_active=True, started=START, now=at(700), workers=WORKERS)
    assert "Ray job alice-g1" in message and "free CPUs and GPUs" in message  # measured from the launch

    # Running, the pre-running deadline is over; 0 means none.
    running = job(observation.JOB_RUNNING)
    assert overdue(running, LIMITS, enforce_active=False, started=None, now=at(700)) is None
    unlimited = Limits(1, 3600, 0)
    assert overdue(starting, unlimited, enforce_active=False, started=None, now=at(10**6)) is None


def test_the_active_deadline_is_enforced_where_the_executor_does_not():
    running = job(observation.JOB_RUNNING, executor="ray")
    assert overdue(running, LIMITS, enforce_active=True, started=None, now=at(3599)) is None
    reason, message = overdue(running, LIMITS, enforce_active=True, started=None, now=at(3601))
    assert reason == "DeadlineExceeded" and "activeDeadlineSeconds (3600)" in message
    assert overdue(job(observation.JOB_RUNNING), LIMITS, enforce_active=False, started=None, now=at(9999)) is None
