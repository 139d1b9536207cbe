"""A request's lifecycle beyond one run, as the pure logic sees it: the job's full log named
in the status, retries asked for by an annotation, suspend and resume."""

from __future__ import annotations

from botfleet_operator import lifecycle, observation
from botfleet_operator import queue as q
from botfleet_operator import rayjob as render
from botfleet_operator import status as st
from botfleet_operator.settings import Settings
from tests.fixtures.bot_requests import LAYOUT, NOW, STATS, body, compute, job_files, rayjob_for, running

LOG = "s3://bots/alice/logs/job-20261202T150000Z.log"


def test_a_failure_says_where_the_full_log_is():
    failed = running(observation.JOB_FAILED, job_status="FAILED")
    result = {"status": "failed", "stage": "training", "error": "worker died", "reason": "TrainingFailed", "log": LOG}
    status = compute(body(), failed, job_files(result=result)).status
    assert status["message"] == f"worker died (full log: {LOG})" and status["artifacts"]["log"] == LOG
    trained = job_files(result={"status": "succeeded", "log": LOG}, model_present=True, card_present=True)
    done = compute(body(), running(observation.JOB_SUCCEEDED, job_status="SUCCEEDED"), trained).status
    assert done["phase"] == "Succeeded" and done["artifacts"]["log"] == LOG


# --------------------------------------------------------------------------- retry

FAILED = {"phase": "Failed", "observedGeneration": 1, "job": {"name": "alice-g1"}}


def with_retry_annotation(doc: dict, value: str) -> dict:
    doc["metadata"]["annotations"] = {lifecycle.RETRY_ANNOTATION: value}
    return doc


def test_a_new_annotation_value_asks_to_retry_a_failed_request_once():
    assert lifecycle.requested_retry(body(status=FAILED)) is None  # no annotation
    asked = with_retry_annotation(body(status=FAILED), "2026-12-02T15:00:00Z")
    assert lifecycle.requested_retry(asked) == "2026-12-02T15:00:00Z"
    assert not st.is_terminal_for(asked)  # the level loop reconciles it
    assert q.queue_entry(asked).waiting  # and it needs a training slot again
    handled = with_retry_annotation(
        body(status={**FAILED, "retry": {"handled": "2026-12-02T15:00:00Z"}}), "2026-12-02T15:00:00Z"
    )
    assert lifecycle.requested_retry(handled) is None and st.is_terminal_for(handled)
    # Only a failure of the current generation is retried; a running or succeeded one is not.
    assert lifecycle.requested_retry(with_retry_annotation(body(generation=2, status=FAILED), "x")) is None
    for phase in ("Training", "Succeeded"):
        assert lifecycle.requested_retry(with_retry_annotation(body(status={**FAILED, "phase": phase}), "x")) is None


def test_the_status_records_the_annotation_seen_so_an_earlier_value_asks_nothing():
    doc = with_retry_annotation(body(status={"retry": {"attempts": 2, "handled": "a"}}), "b")
    status = compute(doc, running()).status
    assert status["retry"] == {"handled": "b", "attempts": 2}
    assert "retry" not in compute(body(), running()).status


def test_each_attempt_has_a_job_of_its_own():
    first = body(status=FAILED)
    retried = body(status={**FAILED, "retry": {"attempts": 2}})
    assert render.rayjob_name(first) == "alice-g1" and render.rayjob_name(retried) == "alice-g1-a2"
    settings = Settings()
    assert rayjob_for(retried, settings)["metadata"]["name"] == "alice-g1-a2"
    assert render.submission_id("ns", "alice", "0123456789abcdef", "1-a2") == "botfleet-ns-alice-01234567-g1-a2"
    assert len(render.job_name("a" * 63, "12-a99", "ns")) <= render.MAX_RAYJOB_NAME


# --------------------------------------------------------------------------- suspend


def suspended_body(generation=2, suspend=True, status=None) -> dict:
    doc = body(generation=generation, status=status)
    doc["spec"]["suspend"] = suspend
    return doc


def test_toggling_suspend_keeps_the_run_and_its_job():
    first = body()
    run = lifecycle.run_status(first)
    assert run["generation"] == 1 and render.rayjob_name(first) == "alice-g1"
    toggled = suspended_body(generation=2, status={"run": run})
    assert lifecycle.run_generation(toggled) == 1 and render.rayjob_name(toggled) == "alice-g1"
    assert rayjob_for(toggled, Settings())["metadata"]["name"] == "alice-g1"
    resumed = suspended_body(generation=3, suspend=False, status={"run": run})
    assert render.rayjob_name(resumed) == "alice-g1"
    # Any other change is a new run, with a new job.
    changed = suspended_body(generation=4, suspend=False, status={"run": run})
    changed["spec"]["training"]["epochs"] = 9
    assert lifecycle.run_generation(changed) == 4 and render.rayjob_name(changed) == "alice-g4"


def test_a_suspended_request_says_how_far_it_got_and_holds_no_slot():
    doc = suspended_body(status={"phase": "Training", "observedGeneration": 1, "job": {"name": "alice-g1"}})
    progress = {"step": 40, "total_steps": 100, "loss": 3.0}
    stopping = compute_suspended(doc, running(), job_files(stats=STATS, progress=progress), stopped=False)
    assert (stopping["phase"], stopping["reason"]) == ("Suspended", "Suspending")
    assert q.queue_entry(suspended_body(status=stopping)).active  # its job still runs: the slot stays taken

    stopped = compute_suspended(doc, running(), job_files(stats=STATS, progress=progress), stopped=True)
    assert (stopped["phase"], stopped["reason"]) == ("Suspended", "SuspendRequested")
    assert "at step 40 of 100" in stopped["message"] and "newest checkpoint" in stopped["message"]
    assert stopped["progress"]["step"] == 40 and stopped["artifacts"]["checkpoints"]
    conditions = {c["type"]: c for c in stopped["conditions"]}
    assert conditions["Suspended"]["status"] == "True" and conditions["Ready"]["status"] == "False"
    entry = q.queue_entry(suspended_body(status=stopped))
    assert not entry.active and not entry.waiting  # out of the queue, slot free
    assert lifecycle.settled_suspended(suspended_body(status=stopped))

    # Resumed: it needs a slot again, and the condition says it resumed.
    resumed = suspended_body(generation=3, suspend=False, status=stopped)
    assert q.queue_entry(resumed).waiting and not lifecycle.settled_suspended(resumed)
    after = compute(resumed, running()).status
    conditions = {c["type"]: c for c in after["conditions"]}
    assert (conditions["Suspended"]["status"], conditions["Suspended"]["reason"]) == ("False", "Resumed")


def test_a_queued_request_suspended_leaves_the_queue():
    queued = suspended_body(status={"phase": "Pending", "reason": "Queued", "observedGeneration": 1})
    assert not q.queue_entry(queued).waiting
    no_job = observation.JobObservation("kuberay", "")
    status = compute_suspended(queued, no_job, st.JobFiles(), stopped=True)
    assert status["phase"] == "Suspended" and "before training started" in status["message"]


def compute_suspended(doc, job, files, stopped):
    return st.compute_status(
        doc, model_id="alice", handles=["alice"], layout=LAYOUT, job=job, files=files, now=NOW, suspended=stopped
    ).status
