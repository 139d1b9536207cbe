"""End to end, executor ``ray``: control plane + embedded S3 + a local Ray head + the operator.

``kubectl apply`` a BotRequest; the operator submits the job to Ray through the job
submission API and follows it to Succeeded; the card and the model are in the object store;
``kubectl get botrequests`` shows the columns. Requests whose source fails end Failed with
a readable reason.

The job is the real one (``python -m botfleet_jobs.job``), on a tiny random GPT-2.
"""

from __future__ import annotations

import contextlib
import time

import pytest

from tests.fixtures.bot_requests import manifest
from tests.fixtures.cluster import wait_for
from tests.fixtures.posts import upload_posts

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_kubectl_apply_to_succeeded_on_ray(kube, namespace, storage, ray_operator, tiny_model_uri):
    uri = upload_posts(storage, "in/pyjokes.jsonl", 180)
    text = manifest("jokes", uri, storage.uri("bots"), base_model=tiny_model_uri)
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=text)

    status = kube.wait_phase(namespace, "jokes", "Succeeded", timeout=240)
    model_uri = storage.uri("bots", "pyjokes")
    assert status["job"]["executor"] == "ray" and status["job"]["jobStatus"] == "SUCCEEDED"
    assert status["counts"]["pyjokes"]["downloaded"] == 181 and status["counts"]["pyjokes"]["retweets"] == 1
    assert status["keptPosts"] == status["counts"]["pyjokes"]["kept"] > 0
    assert (
        status["artifacts"]["model"] == f"{model_uri}/model/"
        and status["artifacts"]["card"] == f"{model_uri}/model/README.md"
    )
    assert status["metrics"]["perplexityAfter"] > 0 and status["progress"]["percent"] == "100%"
    assert status["metrics"]["validLossAfter"] < status["metrics"]["validLossBefore"]
    assert storage.exists(f"{model_uri}/model/README.md") and storage.exists(f"{model_uri}/model/config.json")

    table = kube.kubectl("get", "botrequests", "-n", namespace).stdout.splitlines()
    assert table[0].split() == ["NAME", "HANDLES", "PHASE", "KEPT", "PROGRESS", "AGE"]
    assert table[1].split()[:5] == ["jokes", "pyjokes", "Succeeded", str(status["keptPosts"]), "100%"]
    # Events are posted just after the status patch that the phase came with.
    wait_for(
        lambda: {"JobCreated", "Succeeded"} <= {e.reason for e in kube.events(namespace, "jokes")}, 20, what="events"
    )

    # Applying the same manifest again changes nothing: no second job.
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=text)
    assert kube.get_request(namespace, "jokes")["metadata"]["generation"] == 1


def test_a_request_deleted_mid_training_leaves_nothing_behind(
    kube, namespace, storage, ray_operator, ray_head_address, tiny_model_uri
):
    """deletePolicy: Delete while the job trains: the job is stopped, its files go, the object goes."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    uri = upload_posts(storage, "in/pyjokes.jsonl", 180)
    text = manifest("doomed", uri, storage.uri("bots"), base_model=tiny_model_uri, epochs=40, delete_policy="Delete")
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=text)
    model_uri = storage.uri("bots", "pyjokes")
    status = kube.wait_phase(namespace, "doomed", "Training", timeout=240, reason="Training")
    job_id = status["job"]["name"]
    assert storage.list(model_uri)

    kube.delete_request(namespace, "doomed")
    wait_for(
        lambda: "doomed" not in kube.kubectl("get", "botrequests", "-n", namespace, "-o", "name").stdout,
        120,
        what="the BotRequest to go",
    )
    client = JobSubmissionClient(ray_head_address)
    assert client.get_job_status(job_id) in (JobStatus.STOPPED, JobStatus.FAILED)
    time.sleep(3)  # nothing a dying job still had in flight may land after the clean-up
    assert storage.list(model_uri) == [], "files left behind"
    assert storage.exists(uri)  # the request's input is not its output


def test_failed_sources_end_failed_with_a_readable_reason(kube, namespace, storage, ray_operator):
    few = upload_posts(storage, "in/few.jsonl", 3)
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("few", few, storage.uri("bots"), handle="few"))
    kube.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=manifest("ghost", storage.uri("in/nobody.jsonl"), storage.uri("bots"), handle="nobody"),
    )

    few_status = kube.wait_phase(namespace, "few", "Failed", timeout=240)
    assert few_status["reason"] == "NotEnoughPosts" and "not enough posts" in few_status["message"]
    ghost = kube.wait_phase(namespace, "ghost", "Failed", timeout=240)
    assert ghost["reason"] == "SourceFailed" and "nobody.jsonl" in ghost["message"]
    for name in ("few", "ghost"):
        ready = next(c for c in kube.status(namespace, name)["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "False"
        wait_for(
            lambda name=name: any(e.type == "Warning" for e in kube.events(namespace, name)), 20, what="a Warning event"
        )


def test_jobs_whose_request_went_while_no_operator_ran_are_stopped(
    kube, namespace, storage, ray_head_address, start_operator, embedded_s3
):
    """A Ray job has no owner reference: a BotRequest deleted (or changed) while no operator
    ran would leave its job running. The operator's sweep stops exactly those jobs."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    from botfleet_operator.executors import META_GENERATION, META_REQUEST
    from botfleet_operator.rayjob import submission_id

    client = JobSubmissionClient(ray_head_address)
    alive = kube.create_request(
        namespace,
        {
            "metadata": {"name": "alive"},
            "spec": {
                "handles": [{"handle": "alive", "source": {"dataset": {"uri": storage.uri("in/alive.jsonl")}}}],
                "output": {"uri": storage.uri("bots")},
            },
        },
    )

    def botfleet_job(request: str, job_id: str | None = None) -> str:
        return client.submit_job(
            entrypoint="sleep 600", submission_id=job_id, metadata={META_REQUEST: request, META_GENERATION: "1"}
        )

    jobs = {
        "alive": botfleet_job(f"{namespace}/alive", submission_id(namespace, "alive", alive["metadata"]["uid"], "1")),
        "gone": botfleet_job(f"{namespace}/gone", f"botfleet-{namespace}-gone-0badc0de-g1"),
        "elsewhere": botfleet_job("elsewhere/bot"),  # a namespace this operator does not watch
        "not botfleet's": client.submit_job(entrypoint="sleep 600"),
    }

    def status(which: str) -> JobStatus:
        return client.get_job_status(jobs[which])

    try:
        wait_for(lambda: all(status(j) == JobStatus.RUNNING for j in jobs), 60, what="the jobs to run")
        op = start_operator(
            "--executor",
            "ray",
            "--ray-address",
            ray_head_address,
            "--namespaces",
            namespace,
            "--reconcile-interval",
            "0.3",
            "--orphan-sweep-interval",
            "1",
            env=embedded_s3.config.to_env(),
        )
        wait_for(lambda: status("gone") == JobStatus.STOPPED, 60, what="the orphaned job to be stopped")
        kube.wait_phase(namespace, "alive", "PreparingData")  # its job was adopted, not stopped
        wait_for(lambda: "botfleet_orphaned_jobs_stopped_total 1.0" in op.metrics(), 10, what="the metric")
        time.sleep(2.5)  # more sweeps: they leave every other job alone, and count the orphan once
        assert {j: status(j) for j in jobs if j != "gone"} == {j: JobStatus.RUNNING for j in jobs if j != "gone"}
        assert "botfleet_orphaned_jobs_stopped_total 1.0" in op.metrics()
    finally:
        for job_id in jobs.values():
            with contextlib.suppress(RuntimeError):
                client.stop_job(job_id)
