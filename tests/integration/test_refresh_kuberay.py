"""Refresh on the real control plane: `kubectl annotate` a finished request and the operator
(executor kuberay) starts one refresh RayJob, once; its result reaches the status. As in
test_operator_kuberay, the test plays KubeRay and writes the job's files into real S3."""

from __future__ import annotations

import pytest

from botfleet import api
from tests.fixtures.cluster import wait_for
from tests.fixtures.kuberay_jobs import STATS, finish_job, request

pytestmark = pytest.mark.cluster


def succeed(kube, namespace, storage, job: str, result: dict) -> dict:
    model_uri = storage.uri("bots", "alice")
    storage.write_json(f"{model_uri}/data/stats.json", STATS)
    finish_job(storage, model_uri)
    storage.write_json(f"{model_uri}/history.json", {"versions": [{"version": result.get("version", 1), "posts": 90}]})
    storage.write_json(f"{model_uri}/result.json", {"status": "succeeded", **result})
    kube.set_rayjob_status(namespace, job, jobDeploymentStatus="Complete", jobStatus="SUCCEEDED")
    return wait_for(
        lambda: (s := kube.status(namespace, "alice")).get("phase") == "Succeeded" and s["job"]["name"] == job and s,
        30,
        what=f"Succeeded after {job}",
    )


def test_a_new_annotation_value_starts_one_refresh_rayjob(kube, namespace, storage, kuberay_operator):
    op = kuberay_operator()
    kube.create_request(namespace, request("alice", storage.test_bucket))
    wait_for(lambda: kube.get_rayjob(namespace, "alice-g1"), 30, what="the RayJob")
    succeed(kube, namespace, storage, "alice-g1", {"version": 1})
    spec_before = kube.get_request(namespace, "alice")["spec"]

    kube.kubectl("annotate", "botrequest", "alice", "-n", namespace, f"{api.REFRESH_ANNOTATION}=2026-12-02T10:00")
    rayjob = wait_for(lambda: kube.get_rayjob(namespace, "alice-g1-r1"), 30, what="the refresh's RayJob")
    env = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "BOTFLEET_REFRESH", "value": "1"} in env
    status = kube.status(namespace, "alice")
    assert status["refresh"] == {"generation": 1, "count": 1, "trigger": "2026-12-02T10:00"}
    assert status["phase"] == "Pending" and "completionTime" not in status

    status = succeed(kube, namespace, storage, "alice-g1-r1", {"version": 2, "new_posts": 12})
    assert status["message"].endswith("(+12 new posts: version 2)")
    assert status["refresh"]["lastResult"] == "+12 new posts: version 2"
    described = kube.kubectl("describe", "botrequest", "alice", "-n", namespace).stdout
    assert "Last Result:" in described and "History:" in described

    # Handled once: neither more reconciles nor a restarted operator start another.
    op.stop()
    kuberay_operator()
    kube.wait_phase(namespace, "alice", "Succeeded")
    assert sorted(j["metadata"]["name"] for j in kube.list_rayjobs(namespace)) == ["alice-g1", "alice-g1-r1"]
    assert kube.get_request(namespace, "alice")["spec"] == spec_before  # spec never written
