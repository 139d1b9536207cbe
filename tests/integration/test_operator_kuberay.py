"""The operator (executor kuberay) against the real control plane and KubeRay's real CRDs.

No KubeRay controller runs here: the tests play its part by patching each RayJob's status
the way KubeRay does, and write the job's files into a real S3 server the way the job does.
"""

from __future__ import annotations

import json

import pytest

from botfleet import api
from botfleet.artifacts import Result
from botfleet.reasons import Reason
from tests.fixtures.cluster import wait_for
from tests.fixtures.kuberay_jobs import STATS, finish_job, request

pytestmark = pytest.mark.cluster


def test_bad_specs_are_rejected_naming_the_field(kube, namespace, storage):
    bad = request("bad", storage.test_bucket)
    bad["spec"]["handles"] = [{"handle": "a", "source": {}}] * 4
    result = kube.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps({"apiVersion": "botfleet.dev/v1alpha1", "kind": "BotRequest", **bad}),
        check=False,
    )
    assert result.returncode != 0
    assert "spec.handles" in result.stderr


def test_request_follows_its_rayjob_to_success(kube, namespace, storage, kuberay_operator):
    op = kuberay_operator()
    kube.create_request(namespace, request("alice", storage.test_bucket, labels={"kueue.x-k8s.io/queue-name": "gpus"}))
    model_uri = storage.uri("bots", "alice")

    rayjob = wait_for(lambda: kube.get_rayjob(namespace, "alice-g1"), 30, what="the RayJob")
    owner = kube.get_request(namespace, "alice")
    assert rayjob["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
    assert rayjob["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpus"
    spec = rayjob["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["backoffLimit"] == 1
    worker = spec["rayClusterSpec"]["workerGroupSpecs"][0]
    assert (
        worker["replicas"] == 2
        and worker["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    )
    # The API server kept every field the operator wrote: KubeRay's schema knows them all.
    assert spec["activeDeadlineSeconds"] > 0 and spec["ttlSecondsAfterFinished"] >= 0
    # The job's Ray cluster is locked: KubeRay gives it a random token.
    assert spec["rayClusterSpec"]["authOptions"] == {"mode": "token"}

    status = kube.wait_phase(namespace, "alice", "Pending", reason="JobStarting")
    assert status["job"]["name"] == "alice-g1" and status["observedGeneration"] == 1 and status["startTime"]

    kube.set_rayjob_status(namespace, "alice-g1", jobDeploymentStatus="Initializing")
    kube.wait_phase(namespace, "alice", "Pending", reason="JobStarting")
    kube.set_rayjob_status(
        namespace, "alice-g1", jobDeploymentStatus="Running", jobStatus="RUNNING", jobId="alice-g1-abc"
    )
    kube.wait_phase(namespace, "alice", "PreparingData")

    # The data stage's counts reach the status as soon as stats.json exists.
    storage.write_json(f"{model_uri}/data/stats.json", STATS)
    status = kube.wait_phase(namespace, "alice", "Training")
    assert status["counts"] == {"alice": {"downloaded": 120, "retweets": 20, "short": 10, "kept": 90}}
    assert status["keptPosts"] == 90 and status["artifacts"]["dataset"] == f"{model_uri}/data/"

    storage.write_json(
        f"{model_uri}/progress.json",
        {"step": 10, "total_steps": 40, "epoch": 0.25, "loss": 4.0, "tokens_per_second": 1234.5, "eta_seconds": 30},
    )
    wait_for(lambda: kube.status(namespace, "alice").get("progress", {}).get("percent") == "25%", 30, what="progress")
    progress = kube.status(namespace, "alice")["progress"]
    assert progress == {
        "percent": "25%",
        "step": 10,
        "totalSteps": 40,
        "epoch": 0.25,
        "loss": 4.0,
        "tokensPerSecond": 1234.5,
        "etaSeconds": 30.0,
    }

    finish_job(storage, model_uri)
    kube.set_rayjob_status(namespace, "alice-g1", jobDeploymentStatus="Complete", jobStatus="SUCCEEDED")
    status = kube.wait_phase(namespace, "alice", "Succeeded")
    assert status["job"] == {
        "executor": "kuberay",
        "name": "alice-g1",
        "workers": "2 workers, each 1 GPU, 4 CPUs, 16Gi",
        "jobStatus": "SUCCEEDED",
        "jobDeploymentStatus": "Complete",
    }
    assert status["metrics"] == {
        "validLossBefore": 5.5,
        "validLossAfter": 3.25,
        "perplexityBefore": 244.7,
        "perplexityAfter": 25.8,
        "trainLoss": 3.0,
    }
    assert (
        status["artifacts"]["model"] == f"{model_uri}/model/"
        and status["artifacts"]["card"] == f"{model_uri}/model/README.md"
    )
    assert status["progress"]["percent"] == "100%" and status["completionTime"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert {t: c["status"] for t, c in conditions.items()} == {"Ready": "True", "DataReady": "True", "Trained": "True"}
    assert all(c["lastTransitionTime"] and c["observedGeneration"] == 1 for c in conditions.values())

    # An Event for every transition; the job's creation is announced once, by JobCreated.
    reasons = wait_for(
        lambda: (lambda r: r if "Succeeded" in r else None)([e.reason for e in kube.events(namespace, "alice")]),
        20,
        what="events",
    )
    for expected in ("JobCreated", "PreparingData", "TrainingStarting", "Succeeded"):
        assert expected in reasons, reasons
    assert "JobStarting" not in reasons and "Launching" not in reasons, reasons

    table = kube.kubectl("get", "botrequests", "-n", namespace, "-o", "wide").stdout
    header, row = table.splitlines()[:2]
    assert header.split()[:5] == ["NAME", "HANDLES", "PHASE", "KEPT", "PROGRESS"]
    assert row.split()[:5] == ["alice", "alice", "Succeeded", "90", "100%"]
    assert header.split()[5:7] == ["REASON", "WORKERS"] and "2 workers, each 1 GPU, 4 CPUs, 16Gi" in row

    text = op.metrics()
    assert 'botfleet_botrequests{phase="Succeeded"} 1.0' in text
    assert (
        "botfleet_reconcile_duration_seconds_count" in text
        and 'botfleet_jobs_started_total{executor="kuberay"} 1.0' in text
    )
    # kopf's bookkeeping never went into the status (it would be pruned): no undeclared keys.
    assert set(status) <= set(api.STATUS_SCHEMA["properties"])


def test_rayjob_pods_take_the_operators_settings_where_the_request_is_silent(
    kube, namespace, storage, kuberay_operator
):
    gpu_nodes = {
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }
    restricted = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    kuberay_operator(
        "--default-workers",
        "3",
        "--default-gpus-per-worker",
        "2",
        "--default-memory-per-worker",
        "24Gi",
        "--s3-ca-secret",
        "s3-ca",
        "--job-pod",
        json.dumps(
            {
                "imagePullSecrets": [{"name": "registry"}],
                "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            }
        ),
        "--job-worker-pod",
        json.dumps(gpu_nodes),
        "--job-container-security-context",
        json.dumps(restricted),
        "--job-ray-auth-secret",
        "ray-token",
    )
    silent = request("alice", storage.test_bucket, resources={"cpusPerWorker": 6})
    del silent["spec"]["training"]
    kube.create_request(namespace, silent)
    rayjob = wait_for(lambda: kube.get_rayjob(namespace, "alice-g1"), 30, what="the RayJob")
    group = rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert group["replicas"] == 3 and group["rayStartParams"] == {"num-cpus": "6", "num-gpus": "2"}
    container = group["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"cpu": "6", "memory": "24Gi", "nvidia.com/gpu": "2"}
    # The store's CA Secret is mounted, and the platform's pod settings are there: KubeRay's
    # CRD kept them all (nothing pruned).
    worker_pod = group["template"]["spec"]
    assert worker_pod["volumes"] == [{"name": "s3-ca", "secret": {"secretName": "s3-ca"}}]
    assert (worker_pod["nodeSelector"], worker_pod["tolerations"]) == (
        gpu_nodes["nodeSelector"],
        gpu_nodes["tolerations"],
    )
    assert rayjob["spec"]["rayClusterSpec"]["authOptions"] == {"mode": "token", "secretName": "ray-token"}
    head_pod = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    submitter_pod = rayjob["spec"]["submitterPodTemplate"]["spec"]
    assert "tolerations" not in head_pod and "tolerations" not in submitter_pod
    for pod in (head_pod, worker_pod, submitter_pod):
        assert pod["imagePullSecrets"] == [{"name": "registry"}] and pod["securityContext"]["seccompProfile"] == {
            "type": "RuntimeDefault"
        }
        assert pod["containers"][0]["securityContext"] == restricted
    assert {"name": "BOTFLEET_S3_CA_FILE", "value": f"{container['volumeMounts'][0]['mountPath']}/ca.crt"} in container[
        "env"
    ]
    sent = json.loads(next(e["value"] for e in container["env"] if e["name"] == "BOTFLEET_REQUEST"))["spec"]
    assert (sent["training"]["workers"], sent["training"]["gpusPerWorker"]) == (3, 2)
    assert sent["resources"] == {"cpusPerWorker": 6, "memoryPerWorker": "24Gi"}
    # The CRD defaulted none of it, and the operator wrote no spec: Git's copy stays the truth.
    stored = kube.get_request(namespace, "alice")["spec"]
    assert "workers" not in stored.get("training", {}) and "gpusPerWorker" not in stored.get("training", {})
    assert stored["resources"] == {"cpusPerWorker": 6}
    # `kubectl describe` says what the request got.
    created = wait_for(
        lambda: [e.message for e in kube.events(namespace, "alice") if e.reason == "JobCreated"],
        20,
        what="the JobCreated event",
    )
    assert created == ["created RayJob alice-g1: 3 workers, each 2 GPUs, 6 CPUs, 24Gi"]
    assert kube.status(namespace, "alice")["job"]["workers"] == "3 workers, each 2 GPUs, 6 CPUs, 24Gi"


def test_failures_have_readable_reasons(kube, namespace, storage, kuberay_operator):
    kuberay_operator()
    kube.create_request(namespace, request("alice", storage.test_bucket))
    wait_for(lambda: kube.get_rayjob(namespace, "alice-g1"), 30, what="the RayJob")
    kube.set_rayjob_status(namespace, "alice-g1", jobDeploymentStatus="Running", jobStatus="RUNNING")
    kube.wait_phase(namespace, "alice", "PreparingData")
    kube.set_rayjob_status(
        namespace, "alice-g1", jobDeploymentStatus="Retrying", jobStatus="FAILED", failed=1, message="the driver exited"
    )
    status = kube.wait_phase(namespace, "alice", "Pending", reason="Retrying")
    assert "attempt 2" in status["message"]
    failed = Result.failed(
        "data", "@alice: not enough posts to train on (4 kept; need at least 10)", Reason.NOT_ENOUGH_POSTS
    )
    storage.write_json(storage.uri("bots", "alice", "result.json"), failed.to_dict())  # as the job writes it
    kube.set_rayjob_status(
        namespace, "alice-g1", jobDeploymentStatus="Failed", jobStatus="FAILED", failed=2, reason="AppFailed"
    )
    status = kube.wait_phase(namespace, "alice", "Failed")
    assert status["reason"] == "NotEnoughPosts"
    assert status["message"] == "@alice: not enough posts to train on (4 kept; need at least 10)"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NotEnoughPosts")
    wait_for(
        lambda: any(e.type == "Warning" and e.reason == "NotEnoughPosts" for e in kube.events(namespace, "alice")),
        20,
        what="a Warning event",
    )

    # A deployment failure without the job's own word: KubeRay's reason and message.
    kube.create_request(
        namespace, request("bob", storage.test_bucket, handles=[{"handle": "bob", "source": {"bluesky": {}}}])
    )
    wait_for(lambda: kube.get_rayjob(namespace, "bob-g1"), 30, what="the RayJob")
    kube.set_rayjob_status(
        namespace,
        "bob-g1",
        jobDeploymentStatus="Failed",
        reason="DeadlineExceeded",
        message="The RayJob has passed the activeDeadlineSeconds.",
    )
    status = kube.wait_phase(namespace, "bob", "Failed")
    assert (status["reason"], status["message"]) == (
        "DeadlineExceeded",
        "The RayJob has passed the activeDeadlineSeconds.",
    )


def test_operator_writes_a_missing_card(kube, namespace, storage, kuberay_operator):
    kuberay_operator()
    kube.create_request(namespace, request("alice", storage.test_bucket))
    wait_for(lambda: kube.get_rayjob(namespace, "alice-g1"), 30, what="the RayJob")
    model_uri = storage.uri("bots", "alice")
    storage.write_json(f"{model_uri}/data/stats.json", STATS)
    finish_job(storage, model_uri, card=False)
    kube.set_rayjob_status(namespace, "alice-g1", jobDeploymentStatus="Complete", jobStatus="SUCCEEDED")
    status = kube.wait_phase(namespace, "alice", "Succeeded")
    assert status["artifacts"]["card"] == f"{model_uri}/model/README.md"
    assert "| Tweets kept | 90 |" in storage.read_text(f"{model_uri}/model/README.md")


def test_concurrency_limit_queues_the_rest(kube, namespace, storage, kuberay_operator):
    kuberay_operator("--max-concurrent", "2")
    for name in ("a1", "a2", "a3", "a4"):
        kube.create_request(
            namespace, request(name, storage.test_bucket, handles=[{"handle": name, "source": {"bluesky": {}}}])
        )
    wait_for(lambda: len(kube.list_rayjobs(namespace)) >= 2, 30, what="two RayJobs")
    status = kube.wait_phase(namespace, "a4", "Pending", reason="Queued")
    assert "position 2 of 2" in status["message"] and "max_concurrent" in status["message"]
    kube.wait_phase(namespace, "a3", "Pending", reason="Queued")
    # (a3 may be queued before a4 is: its message settles once a4 is in line too)
    wait_for(
        lambda: kube.status(namespace, "a3")["message"].startswith("queued: position 1 of 2"),
        30,
        what="a3 first in line of two",
    )
    assert sorted(j["metadata"]["name"] for j in kube.list_rayjobs(namespace)) == ["a1-g1", "a2-g1"]

    # One finishes: the first in line starts, the other keeps waiting.
    kube.set_rayjob_status(namespace, "a1-g1", jobDeploymentStatus="Failed", reason="AppFailed")
    kube.wait_phase(namespace, "a1", "Failed")
    wait_for(lambda: kube.get_rayjob(namespace, "a3-g1"), 30, what="a3's RayJob")
    kube.wait_phase(namespace, "a4", "Pending", reason="Queued")
    assert len(kube.list_rayjobs(namespace)) == 3


def test_restart_mid_training_neither_duplicates_nor_loses(kube, namespace, storage, kuberay_operator):
    first = kuberay_operator()
    kube.create_request(namespace, request("alice", storage.test_bucket))
    rayjob = wait_for(lambda: kube.get_rayjob(namespace, "alice-g1"), 30, what="the RayJob")
    model_uri = storage.uri("bots", "alice")
    kube.set_rayjob_status(namespace, "alice-g1", jobDeploymentStatus="Running", jobStatus="RUNNING")
    storage.write_json(f"{model_uri}/data/stats.json", STATS)
    storage.write_json(f"{model_uri}/progress.json", {"step": 5, "total_steps": 10})
    kube.wait_phase(namespace, "alice", "Training")
    first.kill()

    storage.write_json(f"{model_uri}/progress.json", {"step": 8, "total_steps": 10})
    kuberay_operator()
    wait_for(
        lambda: kube.status(namespace, "alice").get("progress", {}).get("step") == 8,
        30,
        what="progress after the restart",
    )
    jobs = kube.list_rayjobs(namespace)
    assert [j["metadata"]["uid"] for j in jobs] == [rayjob["metadata"]["uid"]]  # the same RayJob, adopted
    assert kube.status(namespace, "alice")["progress"]["percent"] == "80%"
    finish_job(storage, model_uri)
    kube.set_rayjob_status(namespace, "alice-g1", jobDeploymentStatus="Complete", jobStatus="SUCCEEDED")
    kube.wait_phase(namespace, "alice", "Succeeded")


def test_spec_change_after_completion_starts_a_new_run(kube, namespace, storage, kuberay_operator):
    kuberay_operator()
    kube.create_request(namespace, request("alice", storage.test_bucket))
    wait_for(lambda: kube.get_rayjob(namespace, "alice-g1"), 30, what="the RayJob")
    model_uri = storage.uri("bots", "alice")
    storage.write_json(f"{model_uri}/data/stats.json", STATS)
    finish_job(storage, model_uri)
    kube.set_rayjob_status(namespace, "alice-g1", jobDeploymentStatus="Complete", jobStatus="SUCCEEDED")
    done = kube.wait_phase(namespace, "alice", "Succeeded")
    before = kube.get_request(namespace, "alice")

    kube.patch_request(namespace, "alice", {"spec": {"training": {"epochs": 2}}})
    rayjob = wait_for(lambda: kube.get_rayjob(namespace, "alice-g2"), 30, what="the second generation's RayJob")
    assert rayjob["metadata"]["labels"]["botfleet.dev/generation"] == "2"
    status = kube.wait_phase(namespace, "alice", "Pending", reason="JobStarting")
    assert (
        status["observedGeneration"] == 2
        and "completionTime" not in status
        and status["startTime"] >= done["startTime"]
    )
    # The previous run's result is not mistaken for this one's.
    assert not storage.exists(f"{model_uri}/result.json")
    after = kube.get_request(namespace, "alice")
    assert after["spec"] == {
        **before["spec"],
        "training": {**before["spec"]["training"], "epochs": 2},
    }  # spec never written
    kube.set_rayjob_status(namespace, "alice-g2", jobDeploymentStatus="Running", jobStatus="RUNNING")
    kube.wait_phase(namespace, "alice", "Training")  # stats.json is reused


@pytest.mark.parametrize("policy", ["Retain", "Delete"])
def test_delete_removes_children_and_honours_delete_policy(kube, namespace, storage, kuberay_operator, policy):
    kuberay_operator()
    kube.create_request(
        namespace, request("alice", storage.test_bucket, output={"uri": storage.uri("bots"), "deletePolicy": policy})
    )
    wait_for(lambda: kube.get_rayjob(namespace, "alice-g1"), 30, what="the RayJob")
    model_uri = storage.uri("bots", "alice")
    storage.write_json(f"{model_uri}/data/stats.json", STATS)
    kube.set_rayjob_status(namespace, "alice-g1", jobDeploymentStatus="Running", jobStatus="RUNNING")
    kube.wait_phase(namespace, "alice", "Training")
    finalizers = kube.get_request(namespace, "alice")["metadata"].get("finalizers") or []
    assert finalizers == (["botfleet.dev/delete-artifacts"] if policy == "Delete" else [])
    if policy == "Retain":  # nothing but the status was written: no kopf annotations either
        assert not kube.get_request(namespace, "alice")["metadata"].get("annotations")

    kube.delete_request(namespace, "alice")
    wait_for(lambda: kube.get_rayjob(namespace, "alice-g1") is None, 90, 0.5, what="the RayJob to be garbage-collected")
    wait_for(
        lambda: (
            not any(
                r["metadata"]["name"] == "alice"
                for r in kube.custom.list_namespaced_custom_object(
                    "botfleet.dev", "v1alpha1", namespace, "botrequests"
                )["items"]
            )
        ),
        30,
        what="the BotRequest to go",
    )
    assert storage.exists(f"{model_uri}/data/stats.json") is (policy == "Retain")


def test_two_requests_never_share_an_output_folder(kube, namespace, storage, kuberay_operator):
    kuberay_operator("--max-concurrent", "1")
    kube.create_request(namespace, request("alice", storage.test_bucket))
    wait_for(lambda: kube.get_rayjob(namespace, "alice-g1"), 30, what="the RayJob")
    model_uri = storage.uri("bots", "alice")
    owner_uri = f"{model_uri}/owner.json"
    first_uid = kube.get_request(namespace, "alice")["metadata"]["uid"]
    assert storage.read_json(owner_uri) == {"namespace": namespace, "name": "alice", "uid": first_uid}
    storage.write_json(f"{model_uri}/data/stats.json", STATS)
    finish_job(storage, model_uri)
    kube.set_rayjob_status(namespace, "alice-g1", jobDeploymentStatus="Complete", jobStatus="SUCCEEDED")
    kube.wait_phase(namespace, "alice", "Succeeded")

    # Same handles, same output: the same folder. The second waits, saying why.
    kube.create_request(
        namespace,
        request("alice-again", storage.test_bucket, output={"uri": storage.uri("bots"), "deletePolicy": "Delete"}),
    )
    status = kube.wait_phase(namespace, "alice-again", "Pending", reason="OutputInUse")
    assert status["message"] == (
        f"{model_uri}/ is the output of BotRequest {namespace}/alice:"
        " give this one another spec.output.uri, or delete that one"
    )
    warned = wait_for(
        lambda: [e for e in kube.events(namespace, "alice-again") if e.reason == "OutputInUse"],
        20,
        what="the OutputInUse event",
    )
    assert warned[0].type == "Warning"
    assert kube.get_rayjob(namespace, "alice-again-g1") is None and "job" not in status
    # It holds no training slot: another bot starts (the limit is 1).
    kube.create_request(
        namespace, request("bob", storage.test_bucket, handles=[{"handle": "bob", "source": {"bluesky": {}}}])
    )
    wait_for(lambda: kube.get_rayjob(namespace, "bob-g1"), 30, what="bob's RayJob")

    # Deleting the blocked one (deletePolicy: Delete) leaves the owner's model alone.
    kube.delete_request(namespace, "alice-again")
    wait_for(
        lambda: (
            not any(
                r["metadata"]["name"] == "alice-again"
                for r in kube.custom.list_namespaced_custom_object(
                    "botfleet.dev", "v1alpha1", namespace, "botrequests"
                )["items"]
            )
        ),
        30,
        what="alice-again to go",
    )
    assert storage.exists(f"{model_uri}/model/config.json") and storage.read_json(owner_uri)["uid"] == first_uid

    # Once the owner is gone (its files retained), the folder is free: the next one claims it
    # and waits for a slot like any other.
    kube.create_request(namespace, request("alice-third", storage.test_bucket))
    kube.wait_phase(namespace, "alice-third", "Pending", reason="OutputInUse")
    kube.delete_request(namespace, "alice")
    kube.wait_phase(namespace, "alice-third", "Pending", reason="Queued")
    assert storage.read_json(owner_uri)["uid"] == kube.get_request(namespace, "alice-third")["metadata"]["uid"]


def test_an_api_server_restart_under_the_operator(kube, namespace, storage, kuberay_operator, control_plane):
    """The API server goes away for a while and comes back: the operator's watches recover,
    it starts no second job, and the status catches up with what happened meanwhile."""
    op = kuberay_operator()
    kube.create_request(namespace, request("alice", storage.test_bucket))
    wait_for(lambda: kube.get_rayjob(namespace, "alice-g1"), 30, what="the RayJob")
    kube.set_rayjob_status(namespace, "alice-g1", jobDeploymentStatus="Running", jobStatus="RUNNING", jobId="a")
    kube.wait_phase(namespace, "alice", "PreparingData")

    # While the API server is down the job finishes; it comes back after a few seconds.
    finish_job(storage, storage.uri("bots", "alice"))
    storage.write_json(storage.uri("bots", "alice", "data", "stats.json"), STATS)
    control_plane.restart_apiserver(down_seconds=5)
    assert op.proc.poll() is None, "the operator exited when the API server went away"

    kube.set_rayjob_status(namespace, "alice-g1", jobDeploymentStatus="Complete", jobStatus="SUCCEEDED")
    kube.wait_phase(namespace, "alice", "Succeeded", timeout=120)
    # A request made after the restart is seen: the watch came back.
    kube.create_request(namespace, request("bob", storage.test_bucket, output={"uri": f"s3://{storage.test_bucket}/b"}))
    wait_for(lambda: kube.get_rayjob(namespace, "bob-g1"), 120, what="bob's RayJob after the restart")
    assert sorted(j["metadata"]["name"] for j in kube.list_rayjobs(namespace)) == ["alice-g1", "bob-g1"]
