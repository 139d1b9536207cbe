"""Suspend, resume and retry with the kuberay executor, on the real control plane and
KubeRay's real RayJob CRD. As in test_operator_kuberay.py, no KubeRay controller runs: the
tests play its part (patching each RayJob's status) and write the job's files into S3."""

from __future__ import annotations

import pytest

from botfleet_operator.executors import SUSPENDED_BY
from botfleet_operator.lifecycle import RETRY_ANNOTATION
from tests.fixtures.cluster import wait_for
from tests.fixtures.kuberay_jobs import STATS, finish_job, request

pytestmark = pytest.mark.cluster


def test_suspend_and_resume_use_the_rayjobs_own_suspend(kube, namespace, storage, kuberay_operator):
    kuberay_operator()
    kube.create_request(namespace, request("alice", storage.test_bucket))
    first = wait_for(lambda: kube.get_rayjob(namespace, "alice-g1"), 30, what="the RayJob")
    model_uri = storage.uri("bots", "alice")
    kube.set_rayjob_status(namespace, "alice-g1", jobDeploymentStatus="Running", jobStatus="RUNNING")
    storage.write_json(f"{model_uri}/data/stats.json", STATS)
    storage.write_json(f"{model_uri}/progress.json", {"step": 5, "total_steps": 10})
    kube.wait_phase(namespace, "alice", "Training")

    kube.patch_request(namespace, "alice", {"spec": {"suspend": True}})
    suspended = wait_for(
        lambda: (job := kube.get_rayjob(namespace, "alice-g1"))["spec"].get("suspend") and job,
        30,
        what="the RayJob's spec.suspend",
    )
    assert suspended["metadata"]["annotations"][SUSPENDED_BY] == "spec.suspend"
    kube.wait_phase(namespace, "alice", "Suspended", reason="Suspending")
    # KubeRay deletes the Ray cluster, then says Suspended; the slot is free from then on.
    kube.set_rayjob_status(namespace, "alice-g1", jobDeploymentStatus="Suspended")
    status = kube.wait_phase(namespace, "alice", "Suspended", reason="SuspendRequested")
    assert "at step 5 of 10" in status["message"] and status["job"]["name"] == "alice-g1"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Suspended"] == "True"

    kube.patch_request(namespace, "alice", {"spec": {"suspend": False}})
    resumed = wait_for(
        lambda: (job := kube.get_rayjob(namespace, "alice-g1"))["spec"].get("suspend") is False and job,
        30,
        what="the RayJob resumed",
    )
    assert resumed["metadata"]["uid"] == first["metadata"]["uid"] and SUSPENDED_BY not in (
        resumed["metadata"].get("annotations") or {}
    )
    assert [job["metadata"]["name"] for job in kube.list_rayjobs(namespace)] == ["alice-g1"]  # no new job
    # KubeRay makes a new cluster and submits the job again, which resumes from its checkpoint.
    kube.set_rayjob_status(namespace, "alice-g1", jobDeploymentStatus="Running", jobStatus="RUNNING")
    storage.write_json(f"{model_uri}/progress.json", {"step": 7, "total_steps": 10})
    status = kube.wait_phase(namespace, "alice", "Training", reason="Training")
    assert {c["type"]: c["reason"] for c in status["conditions"]}["Suspended"] == "Resumed"
    finish_job(storage, model_uri)
    kube.set_rayjob_status(namespace, "alice-g1", jobDeploymentStatus="Complete", jobStatus="SUCCEEDED")
    kube.wait_phase(namespace, "alice", "Succeeded")


def test_a_kueue_suspended_rayjob_is_not_resumed_by_botfleet(kube, namespace, storage, kuberay_operator):
    kuberay_operator()
    kube.create_request(namespace, request("alice", storage.test_bucket))
    wait_for(lambda: kube.get_rayjob(namespace, "alice-g1"), 30, what="the RayJob")
    # Kueue suspends the RayJob while it waits for quota (no botfleet annotation on it).
    kube.custom.patch_namespaced_custom_object(
        "ray.io",
        "v1",
        namespace,
        "rayjobs",
        "alice-g1",
        {"spec": {"suspend": True}},
        _content_type="application/merge-patch+json",
    )
    kube.set_rayjob_status(namespace, "alice-g1", jobDeploymentStatus="Suspended")
    kube.wait_phase(namespace, "alice", "Pending", reason="Suspended")
    kube.patch_request(namespace, "alice", {"spec": {"suspend": True}})
    kube.wait_phase(namespace, "alice", "Suspended", reason="SuspendRequested")
    kube.patch_request(namespace, "alice", {"spec": {"suspend": False}})
    kube.wait_phase(namespace, "alice", "Pending", reason="Suspended")
    assert kube.get_rayjob(namespace, "alice-g1")["spec"]["suspend"] is True  # Kueue's to lift


def test_a_failed_request_is_retried_in_a_new_rayjob(kube, namespace, storage, kuberay_operator):
    kuberay_operator()
    kube.create_request(namespace, request("alice", storage.test_bucket))
    wait_for(lambda: kube.get_rayjob(namespace, "alice-g1"), 30, what="the RayJob")
    kube.set_rayjob_status(
        namespace, "alice-g1", jobDeploymentStatus="Failed", jobStatus="FAILED", reason="AppFailed", message="exit 1"
    )
    kube.wait_phase(namespace, "alice", "Failed")
    kube.patch_request(namespace, "alice", {"metadata": {"annotations": {RETRY_ANNOTATION: "1"}}})
    retried = wait_for(lambda: kube.get_rayjob(namespace, "alice-g1-a1"), 30, what="the retry's RayJob")
    assert retried["metadata"]["labels"]["botfleet.dev/generation"] == "1"
    status = kube.wait_phase(namespace, "alice", "Pending", reason="JobStarting")
    assert status["retry"] == {"handled": "1", "attempts": 1} and status["job"]["name"] == "alice-g1-a1"
    assert kube.get_request(namespace, "alice")["metadata"]["generation"] == 1  # the spec untouched
    wait_for(lambda: "RetryRequested" in {e.reason for e in kube.events(namespace, "alice")}, 20, what="the event")


def test_a_job_stuck_waiting_for_its_cluster_fails_at_its_pre_running_deadline(
    kube,
    namespace,
    storage,
    kuberay_operator,
):
    kuberay_operator()
    # The RayJob's cluster never comes up (no KubeRay here: nobody starts it).
    kube.create_request(namespace, request("alice", storage.test_bucket, preRunningDeadlineSeconds=3))
    wait_for(lambda: kube.get_rayjob(namespace, "alice-g1"), 30, what="the RayJob")
    status = kube.wait_phase(namespace, "alice", "Failed", timeout=60)
    assert status["reason"] == "PreRunningDeadlineExceeded"
    assert "(preRunningDeadlineSeconds: 3) for the Ray cluster of RayJob alice-g1" in status["message"]
    assert "2 workers, each 1 GPU, 4 CPUs, 16Gi" in status["message"]
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "PreRunningDeadlineExceeded")
    wait_for(lambda: kube.get_rayjob(namespace, "alice-g1") is None, 30, what="the stuck RayJob to go")
