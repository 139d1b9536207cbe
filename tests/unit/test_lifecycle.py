"""A request's lifecycle beyond one run, as the pure status logic sees it: the job's full
log named in the status."""

from __future__ import annotations

from botfleet_operator import observation
from tests.unit.test_operator import body, compute, job_files, running

LOG = "s3://bots/alice/logs/job-20261202T150000Z.log"


def test_a_failure_says_where_the_full_log_is():
    failed = running(observation.JOB_FAILED, job_status="FAILED")
    result = {"status": "failed", "stage": "training", "error": "worker died", "reason": "TrainingFailed", "log": LOG}
    status = compute(body(), failed, job_files(result=result)).status
    assert status["message"] == f"worker died (full log: {LOG})" and status["artifacts"]["log"] == LOG
    trained = job_files(result={"status": "succeeded", "log": LOG}, model_present=True, card_present=True)
    done = compute(body(), running(observation.JOB_SUCCEEDED, job_status="SUCCEEDED"), trained).status
    assert done["phase"] == "Succeeded" and done["artifacts"]["log"] == LOG
