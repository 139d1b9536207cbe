"""Suspend and resume end to end, executor ``ray``: control plane + embedded S3 + a local Ray
head + the operator + the real job (tests/integration/test_operator_e2e.py's set-up).

Suspended mid-training, the Ray job is stopped (it records why and keeps its full log);
resumed, the run goes on in a new Ray job that starts from the newest checkpoint, not from
step 0.
"""

from __future__ import annotations

import pytest

from botfleet.layout import Layout
from tests.fixtures.bot_requests import manifest
from tests.fixtures.cluster import wait_for
from tests.fixtures.posts import upload_posts
from tests.fixtures.training import registered_steps

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_suspended_mid_training_a_run_resumes_from_its_checkpoint(
    kube,
    namespace,
    storage,
    ray_operator,
    ray_head_address,
    tiny_model_uri,
):
    from ray.job_submission import JobStatus, JobSubmissionClient

    uri = upload_posts(storage, "in/pyjokes.jsonl", 180)
    text = manifest("jokes", uri, storage.uri("bots"), base_model=tiny_model_uri, epochs=6)
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=text)
    layout = Layout(storage.uri("bots", "pyjokes"))
    first_job = kube.wait_phase(namespace, "jokes", "Training", timeout=600, reason="Training")["job"]["name"]
    # A checkpoint at each epoch's end: suspend once the first one is registered.
    wait_for(lambda: registered_steps(storage, layout.checkpoints), 600, 1.0, "the first checkpoint")

    kube.patch_request(namespace, "jokes", {"spec": {"suspend": True}})
    status = kube.wait_phase(namespace, "jokes", "Suspended", timeout=120, reason="SuspendRequested")
    assert JobSubmissionClient(ray_head_address).get_job_status(first_job) == JobStatus.STOPPED
    saved = registered_steps(storage, layout.checkpoints)
    stopped = wait_for(lambda: storage.exists(layout.result) and storage.read_json(layout.result), 30, 0.5, "result")
    assert (stopped["status"], stopped["reason"]) == ("failed", "JobStopped"), stopped
    assert "(RayTrainWorker pid=" in storage.read_text(stopped["log"])  # its full log outlives it
    assert status["progress"]["step"] < status["progress"]["totalSteps"]

    kube.patch_request(namespace, "jokes", {"spec": {"suspend": False}})
    status = kube.wait_phase(namespace, "jokes", "Succeeded", timeout=900)
    assert status["job"]["name"] != first_job
    training = storage.read_json(layout.training)
    assert training["resumed_from_step"] >= saved[-1] > 0  # from the checkpoint, not from zero
    assert training["steps"] == training["total_steps"] > training["resumed_from_step"]
