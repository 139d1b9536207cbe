"""Unit tests of the operator's pure logic: names, RayJob rendering, status mapping, queueing."""

from __future__ import annotations

import dataclasses
import json

import pytest

from botfleet import api
from botfleet.artifacts import History
from botfleet.secrets import secret_env_name
from botfleet.storage import S3Config
from botfleet_operator import observation, patch
from botfleet_operator import queue as q
from botfleet_operator import rayjob as render
from botfleet_operator import status as st
from botfleet_operator.reconciler import operator_card
from botfleet_operator.settings import Settings
from tests.fixtures.bot_requests import LAYOUT, NOW, STATS, body, compute, job_files, rayjob_for, running

# --------------------------------------------------------------------------- settings


def test_settings_from_env_and_flags():
    env = {
        "BOTFLEET_OPERATOR_EXECUTOR": "ray",
        "BOTFLEET_OPERATOR_MAX_CONCURRENT": "7",
        "BOTFLEET_OPERATOR_NAMESPACES": "a, b",
    }
    settings = Settings.from_env(env)
    assert (settings.executor, settings.max_concurrent, settings.namespaces) == ("ray", 7, ("a", "b"))
    flagged = Settings.from_argv(["--max-concurrent", "2", "--reconcile-interval", "0.5"], env=env)
    assert (flagged.executor, flagged.max_concurrent, flagged.reconcile_interval) == ("ray", 2, 0.5)


def test_worker_defaults_settings():
    env = {
        "BOTFLEET_OPERATOR_DEFAULT_WORKERS": "3",
        "BOTFLEET_OPERATOR_DEFAULT_GPUS_PER_WORKER": "0",
        "BOTFLEET_OPERATOR_DEFAULT_MEMORY_PER_WORKER": "24Gi",
    }
    settings = Settings.from_argv(["--default-cpus-per-worker", "6"], env=env)
    assert settings.worker_defaults == api.WorkerDefaults(
        workers=3, gpus_per_worker=0, cpus_per_worker=6, memory_per_worker="24Gi"
    )
    assert Settings().worker_defaults == api.WorkerDefaults()


@pytest.mark.parametrize(
    "env, message",
    [
        ({"BOTFLEET_OPERATOR_DEFAULT_WORKERS": "0"}, r"spec.training.workers \(default\): must be at least 1"),
        ({"BOTFLEET_OPERATOR_DEFAULT_MEMORY_PER_WORKER": "16 GB"}, r"spec.resources.memoryPerWorker \(default\)"),
        ({"BOTFLEET_OPERATOR_EXECUTOR": "k8s"}, "executor: must be one of kuberay, ray"),
        ({"BOTFLEET_OPERATOR_ORPHAN_SWEEP_INTERVAL": "0"}, "orphan_sweep_interval: must be positive"),
        ({"BOTFLEET_OPERATOR_MAX_CONCURRENT": "many"}, "max_concurrent: must be a number"),
        ({"BOTFLEET_OPERATOR_MAX_CONCURRENT": "-1"}, "max_concurrent: must be at least 0"),
        ({"BOTFLEET_OPERATOR_JOB_POD": '{"containers": []}'}, r"job_pod: cannot set containers \(allowed: affinity,"),
        ({"BOTFLEET_OPERATOR_JOB_WORKER_POD": '{"nodeSelector": '}, "job_worker_pod: must be JSON"),
        (
            {"BOTFLEET_OPERATOR_JOB_CONTAINER_SECURITY_CONTEXT": '["privileged"]'},
            "job_container_security_context: must be a JSON object",
        ),
        (
            {"BOTFLEET_OPERATOR_JOB_MODEL_CACHE_VOLUME": '{"name": "x", "emptyDir": {}}'},
            r"job_model_cache_volume: must name one volume source .* got \['emptyDir', 'name'\]",
        ),
    ],
)
def test_settings_errors_name_the_setting(env, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)


# --------------------------------------------------------------------------- names


def test_job_names_are_deterministic_and_fit_kuberay():
    assert render.job_name("alice", 3) == "alice-g3"
    long = "a" * 63
    name = render.job_name(long, 12, "ns")
    assert len(name) <= render.MAX_RAYJOB_NAME and name.endswith("-g12")
    assert name == render.job_name(long, 12, "ns")
    assert render.job_name(long, 12, "other") != name  # hashed with the namespace
    assert render.job_name("1st-bot", 1) == "bot-1st-bot-g1"  # DNS-1035: starts with a letter


def test_submission_ids_carry_uid_and_generation():
    a = render.submission_id("ns", "alice", "0123456789abcdef", 2)
    assert a == "botfleet-ns-alice-01234567-g2"
    assert render.submission_id("ns", "alice", "fedcba9876543210", 2) != a
    assert len(render.submission_id("n" * 63, "x" * 63, "u" * 36, 99999)) <= render.MAX_SUBMISSION_ID


# --------------------------------------------------------------------------- RayJob


def test_rayjob_rendering():
    settings = Settings(
        job_image="img:1",
        s3_endpoint="http://s3:9000",
        s3_secret="s3-creds",
        ttl_seconds_after_finished=60,
        backoff_limit=2,
        active_deadline_seconds=3600,
    )
    spec = {
        "handles": [
            {"handle": "bob", "source": {"twitter": {"bearerTokenSecretRef": {"name": "tw", "key": "token"}}}},
            {"handle": "carol", "source": {"mastodon": {"instance": "https://m.example"}}},
        ],
        "training": {"workers": 2, "gpusPerWorker": 1},
        "resources": {"cpusPerWorker": 8, "memoryPerWorker": "32Gi"},
        "tracking": {"wandb": {"apiKeySecretRef": {"name": "wandb", "key": "key"}}},
        "output": {"uri": "s3://bots/x"},
    }
    doc = body("bob", generation=4, spec=spec, labels={api.QUEUE_LABEL: "gpu-queue", "other": "x"})
    job = rayjob_for(doc, settings)
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    meta = job["metadata"]
    assert meta["name"] == "bob-g4" and meta["namespace"] == "ns"
    assert meta["labels"][api.QUEUE_LABEL] == "gpu-queue" and "other" not in meta["labels"]
    assert meta["ownerReferences"] == [
        {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "name": "bob",
            "uid": "0123456789abcdef",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    js = job["spec"]
    assert (
        js["shutdownAfterJobFinishes"],
        js["ttlSecondsAfterFinished"],
        js["backoffLimit"],
        js["activeDeadlineSeconds"],
    ) == (True, 60, 2, 3600)
    assert js["entrypoint"] == "python -m botfleet_jobs.job"
    workers = js["rayClusterSpec"]["workerGroupSpecs"]
    assert len(workers) == 1 and workers[0]["replicas"] == 2 == workers[0]["minReplicas"] == workers[0]["maxReplicas"]
    worker = workers[0]["template"]["spec"]["containers"][0]
    assert worker["image"] == "img:1"
    assert worker["resources"]["limits"] == {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"}
    head = js["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in head["resources"]["limits"]
    # Credentials only as Secret references, never inline.
    env = {e["name"]: e for e in worker["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "s3-creds", "key": "AWS_ACCESS_KEY_ID"}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "s3-creds",
        "key": "AWS_SECRET_ACCESS_KEY",
    }
    token = secret_env_name(api.SecretRef("tw", "token"))
    assert env[token]["valueFrom"]["secretKeyRef"] == {"name": "tw", "key": "token"}
    assert env["WANDB_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "wandb", "key": "key"}
    assert env["BOTFLEET_S3_ENDPOINT"]["value"] == "http://s3:9000"
    request = json.loads(env["BOTFLEET_REQUEST"]["value"])
    assert request["metadata"]["name"] == "bob" and request["spec"]["handles"][0]["handle"] == "bob"
    assert all(
        "value" not in e
        or e["name"]
        in (
            "BOTFLEET_REQUEST",
            "BOTFLEET_S3_ENDPOINT",
            "AWS_ENDPOINT_URL",
            "RAY_USAGE_STATS_ENABLED",
            "AWS_EC2_METADATA_DISABLED",
        )
        for e in worker["env"]
    )


def test_rayjob_pods_reach_a_regional_store_with_a_private_ca():
    doc = body()
    plain = rayjob_for(doc, Settings())
    plain_pods = [
        plain["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"],
        plain["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"],
    ]
    for pod in plain_pods:
        env = {e["name"] for e in pod["containers"][0]["env"]}
        assert "volumes" not in pod and not env & {"AWS_REGION", "BOTFLEET_S3_CA_FILE"}

    job = rayjob_for(doc, Settings(s3_region="eu-central-1", s3_ca_secret="s3-ca"))
    cluster = job["spec"]["rayClusterSpec"]
    for pod in (cluster["headGroupSpec"]["template"]["spec"], cluster["workerGroupSpecs"][0]["template"]["spec"]):
        (container,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-central-1"
        (mount,) = container["volumeMounts"]
        (volume,) = pod["volumes"]
        assert volume == {"name": mount["name"], "secret": {"secretName": "s3-ca"}} and mount["readOnly"]
        assert env["BOTFLEET_S3_CA_FILE"] == f"{mount['mountPath']}/ca.crt"
        # the job's S3 clients find the CA there
        config = S3Config.from_env(
            {
                **env,
                "BOTFLEET_S3_ENDPOINT": "https://s3.example",
                "AWS_ACCESS_KEY_ID": "a",
                "AWS_SECRET_ACCESS_KEY": "b",
            }
        )
        assert (config.region, config.ca_file) == ("eu-central-1", f"{mount['mountPath']}/ca.crt")


def test_rayjob_workers_share_the_platforms_model_cache_volume():
    claim = {"persistentVolumeClaim": {"claimName": "botfleet-models"}}
    settings = Settings.from_env({"BOTFLEET_OPERATOR_JOB_MODEL_CACHE_VOLUME": json.dumps(claim)}, s3_ca_secret="s3-ca")
    cluster = rayjob_for(body(), settings)["spec"]["rayClusterSpec"]
    head = cluster["headGroupSpec"]["template"]["spec"]
    worker = cluster["workerGroupSpecs"][0]["template"]["spec"]
    (container,) = worker["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in worker["volumes"]}
    assert set(mounts) == set(volumes) == {"s3-ca", "model-cache"}
    assert volumes["model-cache"] == {"name": "model-cache", **claim} and not mounts["model-cache"].get("readOnly")
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["BOTFLEET_MODEL_CACHE"] == mounts["model-cache"]["mountPath"]
    # the head loads no model: it gets the CA only
    assert [v["name"] for v in head["volumes"]] == ["s3-ca"]
    assert "BOTFLEET_MODEL_CACHE" not in {e["name"] for e in head["containers"][0]["env"]}
    # without the setting, each worker keeps its own cache in its temporary folder
    plain = rayjob_for(body(), Settings())["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]
    assert "volumes" not in plain and "BOTFLEET_MODEL_CACHE" not in {e["name"] for e in plain["containers"][0]["env"]}


def test_rayjob_pods_get_the_platforms_scheduling_and_security():
    gpu_nodes = {
        "nodeSelector": {"node.kubernetes.io/instance-type": "p4d"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }
    restricted = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    settings = Settings(
        job_pod={
            "imagePullSecrets": [{"name": "registry"}],
            "securityContext": {"runAsNonRoot": True},
            "nodeSelector": {"pool": "cpu"},
        },
        job_worker_pod=gpu_nodes,
        job_container_security_context=restricted,
    )
    job = rayjob_for(body(), settings)["spec"]
    cluster = job["rayClusterSpec"]
    head = cluster["headGroupSpec"]["template"]["spec"]
    worker = cluster["workerGroupSpecs"][0]["template"]["spec"]
    submitter = job["submitterPodTemplate"]["spec"]  # KubeRay's `ray job submit` pod
    assert submitter["restartPolicy"] == "Never" and submitter["containers"][0]["image"] == settings.job_image
    assert "command" not in submitter["containers"][0]  # KubeRay fills it in
    assert submitter["nodeSelector"] == {"pool": "cpu"} and "tolerations" not in submitter
    for pod in (head, worker, submitter):
        assert pod["imagePullSecrets"] == [{"name": "registry"}] and pod["securityContext"] == {"runAsNonRoot": True}
        assert pod["containers"][0]["securityContext"] == restricted
    # the head stays off the GPU nodes; the workers' own additions win over the shared ones
    assert head["nodeSelector"] == {"pool": "cpu"} and "tolerations" not in head
    assert worker["nodeSelector"] == gpu_nodes["nodeSelector"] and worker["tolerations"] == gpu_nodes["tolerations"]


def test_rayjob_cpu_workers_and_default_wandb_secret():
    settings = Settings(wandb_secret="team-wandb")
    doc = body(
        spec={
            "handles": [{"handle": "a", "source": {"bluesky": {}}}],
            "training": {"gpusPerWorker": 0},
            "output": {"uri": "s3://bots"},
        }
    )
    job = rayjob_for(doc, settings)
    group = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert group["groupName"] == "cpu-workers" and "num-gpus" not in group["rayStartParams"]
    env = {e["name"]: e for e in group["template"]["spec"]["containers"][0]["env"]}
    assert env["WANDB_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "team-wandb",
        "key": "WANDB_API_KEY",
        "optional": True,
    }
    assert "nvidia.com/gpu" not in group["template"]["spec"]["containers"][0]["resources"]["limits"]


def test_rayjob_worker_shape_comes_from_the_settings_where_the_request_is_silent():
    settings = Settings(
        default_workers=3, default_gpus_per_worker=2, default_cpus_per_worker=6, default_memory_per_worker="24Gi"
    )
    silent = rayjob_for(body(), settings)
    group = silent["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert group["replicas"] == 3 == group["minReplicas"] == group["maxReplicas"]
    assert group["groupName"] == "gpu-workers" and group["rayStartParams"] == {"num-cpus": "6", "num-gpus": "2"}
    worker = group["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"] == {"cpu": "6", "memory": "24Gi", "nvidia.com/gpu": "2"}
    # The job trains with the spec as filled in, so its card and training.json say what ran.
    sent = json.loads({e["name"]: e for e in worker["env"]}["BOTFLEET_REQUEST"]["value"])["spec"]
    assert (sent["training"]["workers"], sent["training"]["gpusPerWorker"]) == (3, 2)
    assert sent["resources"] == {"cpusPerWorker": 6, "memoryPerWorker": "24Gi"}

    spec = body()["spec"] | {"training": {"workers": 1, "gpusPerWorker": 0}, "resources": {"memoryPerWorker": "4Gi"}}
    group = rayjob_for(body(spec=spec), settings)["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    assert group["replicas"] == 1 and group["groupName"] == "cpu-workers"
    assert group["template"]["spec"]["containers"][0]["resources"]["limits"] == {"cpu": "6", "memory": "4Gi"}


def test_worker_shape_for_events():
    spec = api.WorkerDefaults(workers=2, gpus_per_worker=1).resolve(api.parse_spec(body()["spec"]))
    assert render.worker_shape(spec, with_memory=True) == "2 workers, each 1 GPU, 4 CPUs, 16Gi"
    single = api.WorkerDefaults(gpus_per_worker=0, cpus_per_worker=1).resolve(api.parse_spec(body()["spec"]))
    assert render.worker_shape(single, with_memory=False) == "1 worker: no GPU, 1 CPU"


def test_ray_executor_job_gets_the_filled_in_spec():
    settings = Settings(executor="ray", default_workers=2, default_gpus_per_worker=0)
    env = render.ray_job_env(body(), render.resolve_spec(body(), settings), {"AWS_ACCESS_KEY_ID": "k"}, {})
    sent = json.loads(env["BOTFLEET_REQUEST"])
    assert (sent["spec"]["training"]["workers"], sent["spec"]["training"]["gpusPerWorker"]) == (2, 0)
    assert api.parse_spec(sent["spec"]).training.resolved_precision() == "fp32"
    assert env["AWS_ACCESS_KEY_ID"] == "k"


def test_orphaned_ray_jobs_are_botfleets_unwanted_ones_in_watched_namespaces():
    from botfleet_operator.executors import META_REQUEST, orphaned_jobs

    active = {
        "botfleet-ns-alice-01234567-g2": {META_REQUEST: "ns/alice"},  # alice's current job
        "botfleet-ns-alice-01234567-g1": {META_REQUEST: "ns/alice"},  # superseded generation
        "botfleet-ns-gone-89abcdef-g1": {META_REQUEST: "ns/gone"},  # request deleted
        "botfleet-other-bob-aaaaaaaa-g1": {META_REQUEST: "other/bob"},  # another namespace
        "raysubmit_123": {},  # not botfleet's
    }
    wanted = {"botfleet-ns-alice-01234567-g2"}
    assert orphaned_jobs(active, wanted, ("ns",)) == ["botfleet-ns-alice-01234567-g1", "botfleet-ns-gone-89abcdef-g1"]
    assert orphaned_jobs(active, wanted, ()) == [
        "botfleet-ns-alice-01234567-g1",
        "botfleet-ns-gone-89abcdef-g1",
        "botfleet-other-bob-aaaaaaaa-g1",
    ]
    assert orphaned_jobs({}, wanted, ()) == []


# --------------------------------------------------------------------------- observations


@pytest.mark.parametrize(
    "deployment, job_status, state",
    [
        (None, None, observation.JOB_STARTING),
        ("Initializing", None, observation.JOB_STARTING),
        ("Running", "PENDING", observation.JOB_STARTING),
        ("Running", "RUNNING", observation.JOB_RUNNING),
        ("Running", "SUCCEEDED", observation.JOB_SUCCEEDED),
        ("Complete", "SUCCEEDED", observation.JOB_SUCCEEDED),
        ("Complete", "FAILED", observation.JOB_FAILED),
        ("Failed", "FAILED", observation.JOB_FAILED),
        ("Retrying", "FAILED", observation.JOB_RETRYING),
        ("Suspended", None, observation.JOB_SUSPENDED),
    ],
)
def test_rayjob_status_mapping(deployment, job_status, state):
    rayjob = {"status": {k: v for k, v in (("jobDeploymentStatus", deployment), ("jobStatus", job_status)) if v}}
    obs = observation.observe_rayjob("x-g1", rayjob)
    assert obs.state == state and obs.exists
    assert observation.observe_rayjob("x-g1", None).state == observation.JOB_ABSENT


def test_ray_job_status_mapping():
    assert observation.observe_ray_job("id", None).exists is False
    assert observation.observe_ray_job("id", "PENDING").state == observation.JOB_STARTING
    assert observation.observe_ray_job("id", "RUNNING").state == observation.JOB_RUNNING
    assert (
        observation.observe_ray_job("id", "SUCCEEDED", start_ms=1_700_000_000_000).start_time == "2023-11-14T22:13:20Z"
    )
    stopped = observation.observe_ray_job("id", "STOPPED")
    assert stopped.state == observation.JOB_FAILED and stopped.reason == "JobStopped"


# --------------------------------------------------------------------------- status


def test_status_walks_the_phases():
    doc = body()
    queued = compute(
        doc,
        observation.JobObservation("kuberay", "alice-g1"),
        queue=q.QueueDecision(False, position=2, queued=3, running=4, limit=4),
    )
    assert (queued.status["phase"], queued.status["reason"]) == ("Pending", "Queued")
    assert "position 2 of 3" in queued.status["message"] and "startTime" not in queued.status

    starting = compute(doc, running(observation.JOB_STARTING, job_status=None, deployment_status="Initializing"))
    assert (starting.status["phase"], starting.status["reason"]) == ("Pending", "JobStarting")
    assert starting.status["job"] == {"executor": "kuberay", "name": "alice-g1", "jobDeploymentStatus": "Initializing"}

    preparing = compute(doc, running())
    assert preparing.status["phase"] == "PreparingData" and "counts" not in preparing.status

    data = compute(doc, running(), job_files(stats=STATS))
    assert data.status["phase"] == "Training" and data.status["reason"] == "TrainingStarting"
    assert data.status["counts"] == {"alice": {"downloaded": 100, "retweets": 10, "short": 5, "kept": 85}}
    assert data.status["keptPosts"] == 85 and data.status["artifacts"]["dataset"] == "s3://bots/alice/data/"
    conditions = {c["type"]: c for c in data.status["conditions"]}
    assert conditions["DataReady"]["status"] == "True" and conditions["Ready"]["status"] == "False"

    progress = {
        "step": 30,
        "total_steps": 120,
        "epoch": 1.0,
        "loss": 3.2,
        "tokens_per_second": 250.5,
        "eta_seconds": 90,
    }
    training = compute(doc, running(), job_files(stats=STATS, progress=progress))
    assert training.status["progress"] == {
        "percent": "25%",
        "step": 30,
        "totalSteps": 120,
        "epoch": 1.0,
        "loss": 3.2,
        "tokensPerSecond": 250.5,
        "etaSeconds": 90.0,
    }

    files = job_files(
        stats=STATS,
        progress=progress,
        result={"status": "succeeded", "tracking_run_url": "https://wandb.ai/r"},
        training={
            "valid_loss_before": 5.0,
            "valid_loss_after": 3.0,
            "perplexity_before": 148.4,
            "perplexity_after": 20.1,
            "train_loss": 2.9,
        },
        model_present=True,
    )
    no_card = compute(
        doc, running(observation.JOB_SUCCEEDED, job_status="SUCCEEDED", deployment_status="Complete"), files
    )
    assert no_card.status["phase"] == "Publishing" and no_card.need_card

    done = compute(
        doc,
        running(observation.JOB_SUCCEEDED, job_status="SUCCEEDED", deployment_status="Complete"),
        dataclasses.replace(files, card_present=True),
    )
    s = done.status
    assert (s["phase"], s["reason"], s["completionTime"]) == ("Succeeded", "Succeeded", NOW)
    assert s["progress"]["percent"] == "100%" and s["progress"]["step"] == 120
    assert s["metrics"] == {
        "validLossBefore": 5.0,
        "validLossAfter": 3.0,
        "perplexityBefore": 148.4,
        "perplexityAfter": 20.1,
        "trainLoss": 2.9,
    }
    assert s["artifacts"] == {
        "dataset": "s3://bots/alice/data/",
        "checkpoints": "s3://bots/alice/checkpoints/",
        "model": "s3://bots/alice/model/",
        "card": "s3://bots/alice/model/README.md",
        "trackingRun": "https://wandb.ai/r",
    }
    assert all(c["status"] == "True" for c in s["conditions"])
    assert done.events == [("Normal", "Succeeded", "Succeeded: model published at s3://bots/alice/model/")]


def test_status_keeps_the_worker_shape_a_job_started_with():
    started = compute(body(), running(), workers="2 workers, each 1 GPU, 4 CPUs, 16Gi").status
    assert started["job"]["workers"] == "2 workers, each 1 GPU, 4 CPUs, 16Gi"
    # The operator restarted with other defaults: the running job's shape has not changed.
    later = compute(body(status=started), running(), workers="4 workers, each 1 GPU, 4 CPUs, 16Gi").status
    assert later["job"]["workers"] == "2 workers, each 1 GPU, 4 CPUs, 16Gi"
    # A new generation's job is started with the defaults of its time.
    next_job = observation.JobObservation("kuberay", "alice-g2", state=observation.JOB_RUNNING)
    changed = compute(
        body(generation=2, status=started), next_job, workers="4 workers, each 1 GPU, 4 CPUs, 16Gi"
    ).status
    assert changed["job"]["workers"] == "4 workers, each 1 GPU, 4 CPUs, 16Gi"


def test_a_request_whose_output_folder_is_taken_waits_with_a_warning():
    taken = st.compute_status(
        body(),
        model_id="alice",
        handles=["alice"],
        layout=LAYOUT,
        job=observation.JobObservation("kuberay", "alice-g1"),
        files=st.JobFiles(),
        now=NOW,
        output_in_use="s3://bots/alice/ is the output of BotRequest ns/other: ...",
    )
    assert (taken.status["phase"], taken.status["reason"]) == ("Pending", "OutputInUse")
    assert "job" not in taken.status and "startTime" not in taken.status  # nothing started
    assert [(kind, reason) for kind, reason, _ in taken.events] == [("Warning", "OutputInUse")]


def test_every_status_field_is_declared_in_the_crd():
    files = job_files(
        stats=STATS,
        progress={"step": 1, "total_steps": 2},
        result={"status": "succeeded", "tracking_run_url": "u", "log": "s3://bots/alice/logs/job-1.log"},
        training={"train_loss": 1.0},
        model_present=True,
        card_present=True,
    )
    s = compute(
        body(),
        running(observation.JOB_SUCCEEDED, job_status="SUCCEEDED"),
        files,
        workers="1 worker: 1 GPU, 4 CPUs, 16Gi",
    ).status
    assert s["job"]["workers"] and api.validate(s, api.STATUS_SCHEMA, "status") == []

    def undeclared(value, schema, path):
        if isinstance(value, dict):
            props = schema.get("properties")
            for k, v in value.items():
                sub = props.get(k) if props is not None else schema.get("additionalProperties")
                assert sub is not None, f"{path}.{k} is not in STATUS_SCHEMA (the API server would prune it)"
                undeclared(v, sub, f"{path}.{k}")
        elif isinstance(value, list):
            for item in value:
                undeclared(item, schema["items"], path + "[]")

    undeclared(s, api.STATUS_SCHEMA, "status")


def test_failure_reasons_are_readable():
    doc = body()
    failed_job = running(
        observation.JOB_FAILED,
        job_status="FAILED",
        deployment_status="Failed",
        reason="AppFailed",
        message="job exited 1",
    )
    data_error = compute(
        doc,
        failed_job,
        job_files(
            result={
                "status": "failed",
                "stage": "data",
                "error": "@alice: not enough posts (3 kept, need 10)",
                "reason": "NotEnoughPosts",
            }
        ),
    )
    assert (data_error.status["phase"], data_error.status["reason"]) == ("Failed", "NotEnoughPosts")
    assert data_error.status["message"] == "@alice: not enough posts (3 kept, need 10)"
    assert data_error.events[0][0] == "Warning"
    ready = {c["type"]: c for c in data_error.status["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "NotEnoughPosts"

    own_reason = compute(
        doc, failed_job, job_files(result={"status": "failed", "error": "boom", "reason": "SourceFailed"})
    )
    assert own_reason.status["reason"] == "SourceFailed"
    training_error = compute(
        doc, failed_job, job_files(stats=STATS, result={"status": "failed", "error": "CUDA out of memory"})
    )
    assert training_error.status["reason"] == "TrainingFailed"

    deadline = compute(
        doc,
        running(
            observation.JOB_FAILED,
            job_status="RUNNING",
            deployment_status="Failed",
            reason="DeadlineExceeded",
            message="activeDeadlineSeconds passed",
        ),
    )
    assert (deadline.status["reason"], deadline.status["message"]) == (
        "DeadlineExceeded",
        "activeDeadlineSeconds passed",
    )

    missing = compute(doc, running(observation.JOB_SUCCEEDED, job_status="SUCCEEDED"), job_files(stats=STATS))
    assert (missing.status["phase"], missing.status["reason"]) == ("Failed", "ModelMissing")

    invalid = compute(
        doc, observation.JobObservation("kuberay", "alice-g1"), invalid="spec.handles: handles must be distinct"
    )
    assert (invalid.status["phase"], invalid.status["reason"]) == (
        "Failed",
        "InvalidSpec",
    ) and "job" not in invalid.status


def test_retrying_and_suspended_are_pending():
    doc = body()
    retry = compute(
        doc,
        running(
            observation.JOB_RETRYING,
            deployment_status="Retrying",
            job_status="FAILED",
            failed_attempts=1,
            message="worker died",
        ),
    )
    assert (retry.status["phase"], retry.status["reason"]) == ("Pending", "Retrying") and "attempt 2" in retry.status[
        "message"
    ]
    suspended = compute(doc, running(observation.JOB_SUSPENDED, deployment_status="Suspended", job_status=None))
    assert (suspended.status["phase"], suspended.status["reason"]) == ("Pending", "Suspended")


def test_transition_times_and_events_only_on_change():
    doc = body()
    first = compute(doc, running(), now="2025-01-01T00:00:00Z").status
    again = compute(body(status=first), running(), now="2025-01-01T00:05:00Z")
    assert again.events == [] and patch.merge_patch(first, again.status) is None
    assert again.status["startTime"] == "2025-01-01T00:00:00Z"
    later = compute(body(status=first), running(), job_files(stats=STATS), now="2025-01-01T00:10:00Z")
    conds = {c["type"]: c for c in later.status["conditions"]}
    assert conds["DataReady"]["lastTransitionTime"] == "2025-01-01T00:10:00Z"
    assert conds["Ready"]["lastTransitionTime"] == "2025-01-01T00:00:00Z"
    assert [e[1] for e in later.events] == ["TrainingStarting"]
    # A new generation starts over: new start time, no completion time.
    done = {**first, "phase": "Succeeded", "completionTime": "2025-01-01T01:00:00Z"}
    regen = compute(
        body(generation=2, status=done),
        observation.JobObservation("kuberay", "alice-g2", state=observation.JOB_STARTING),
        now="2025-01-02T00:00:00Z",
    ).status
    assert (
        regen["observedGeneration"] == 2
        and regen["startTime"] == "2025-01-02T00:00:00Z"
        and "completionTime" not in regen
    )
    assert patch.merge_patch(done, regen)["completionTime"] is None


def test_merge_patch():
    old = {"a": 1, "b": {"x": 1, "y": 2}, "c": [1], "d": 4}
    new = {"a": 1, "b": {"x": 1, "z": 3}, "c": [1, 2]}
    assert patch.merge_patch(old, new) == {"b": {"y": None, "z": 3}, "c": [1, 2], "d": None}
    assert patch.merge_patch(new, new) is None


# --------------------------------------------------------------------------- queueing


def entry(key, created, active=False, waiting=True):
    return q.QueueEntry(key, created, active, waiting and not active)


def test_admission_is_first_come_first_served():
    entries = [entry("ns/a", "t1", active=True), entry("ns/b", "t2"), entry("ns/c", "t3"), entry("ns/d", "t4")]
    assert q.decide_admission("ns/b", entries, 2).admit
    c = q.decide_admission("ns/c", entries, 2)
    assert not c.admit and (c.position, c.queued, c.running, c.limit) == (1, 2, 1, 2)
    assert "position 1 of 2" in c.message and "1 of 2" in c.message
    assert q.decide_admission("ns/d", entries, 0).admit  # 0 = no limit
    assert q.decide_admission("ns/a", entries, 1).admit  # already holds a slot
    # Slots this process just filled count even before the watch shows them.
    assert not q.decide_admission("ns/b", entries, 2, extra_active={"ns/x"}).admit
    # Not indexed yet: last in line.
    assert q.decide_admission("ns/new", entries, 5).admit
    assert not q.decide_admission("ns/new", entries, 4).admit


def test_queue_entry_from_body():
    assert q.queue_entry(body()) == q.QueueEntry("ns/alice", NOW, False, True)
    running_status = {"phase": "Training", "observedGeneration": 1, "job": {"name": "alice-g1"}}
    assert q.queue_entry(body(status=running_status)).active
    done = {"phase": "Succeeded", "observedGeneration": 1, "job": {"name": "alice-g1"}}
    assert q.queue_entry(body(status=done)) == q.QueueEntry("ns/alice", NOW, False, False)
    assert q.queue_entry(body(generation=2, status=done)).waiting  # spec changed: wants a new run
    # waiting for another request's output folder, not for a slot (until its spec changes)
    blocked = {"phase": "Pending", "reason": "OutputInUse", "observedGeneration": 1}
    assert q.queue_entry(body(status=blocked)) == q.QueueEntry("ns/alice", NOW, False, False)
    assert q.queue_entry(body(generation=2, status=blocked)).waiting


def test_fallback_card_names_the_handles():
    # The operator's card is the job's card (one renderer), with the links the operator knows.
    spec = api.parse_spec(body()["spec"])
    card = operator_card(spec, job_files(stats=STATS, training={"valid_loss_after": 3.0}), LAYOUT)
    assert "@alice" in card and "| Tweets kept | 85 |" in card and "Validation loss: n/a -> 3\n" in card
    assert "thumbnail:" not in card and "s3://bots/alice/data/" in card


def test_failure_reason_from_the_jobs_stage():
    failed = running(observation.JOB_FAILED, job_status="FAILED")
    stage = compute(
        body(),
        failed,
        job_files(stats=STATS, result={"status": "failed", "stage": "publishing", "error": "card: template missing"}),
    )
    assert stage.status["reason"] == "PublishingFailed"
    source = compute(
        body(),
        failed,
        job_files(
            result={
                "status": "failed",
                "stage": "data",
                "error": "s3://inputs/nobody.jsonl: not found",
                "reason": "SourceFailed",
            }
        ),
    )
    assert source.status["reason"] == "SourceFailed"
    # "not found" in a training error is no source problem.
    model = compute(
        body(),
        failed,
        job_files(
            stats=STATS, result={"status": "failed", "stage": "training", "error": "base model s3://m/x: not found"}
        ),
    )
    assert model.status["reason"] == "TrainingFailed"


def test_failure_reason_of_a_job_older_than_reasons():
    # result.json without "reason": the stage says which, else how far the data got.
    failed = running(observation.JOB_FAILED, job_status="FAILED")
    old = {"status": "failed", "stage": "data", "error": "@alice: not enough posts"}
    data = compute(body(), failed, job_files(result=old))
    assert (data.status["reason"], data.status["message"]) == ("DataFailed", "@alice: not enough posts")
    no_stage = compute(body(), failed, job_files(result={"status": "failed", "error": "boom"}))
    assert no_stage.status["reason"] == "DataFailed"
    no_stage = compute(body(), failed, job_files(stats=STATS, result={"status": "failed", "error": "boom"}))
    assert no_stage.status["reason"] == "TrainingFailed"


def test_metrics_and_card_from_result_json():
    files = job_files(
        stats=STATS,
        result={"status": "succeeded", "card": "s3://bots/alice/card.md", "metrics": {"valid_loss_after": 2.5}},
        model_present=True,
        card_present=True,
        card_uri="s3://bots/alice/card.md",
    )
    s = compute(body(), running(observation.JOB_SUCCEEDED, job_status="SUCCEEDED"), files).status
    assert s["metrics"] == {"validLossAfter": 2.5} and s["artifacts"]["card"] == "s3://bots/alice/card.md"


def test_status_shows_the_history_of_versions():
    history = History.from_dict(
        {
            "versions": [
                {"version": n, "finished_at": f"2026-01-{n:02d}T00:00:00Z", "posts": 100 + n, "perplexity": 30.0 - n}
                for n in range(1, 13)
            ]
            + [{"version": 13, "posts": 120, "new_posts": 7, "perplexity": float("nan")}]
        }
    )
    history = History(
        (
            *history.versions[:-2],
            dataclasses.replace(history.versions[-2], archived="s3://x/v12/"),
            history.versions[-1],
        )
    )
    files = dataclasses.replace(job_files(stats=STATS, model_present=True, card_present=True), history=history)
    s = compute(body(), running(observation.JOB_SUCCEEDED, job_status="SUCCEEDED"), files).status
    shown = s["history"]
    assert [v["version"] for v in shown] == list(range(4, 14))  # the newest ten, oldest first
    assert shown[-1] == {"version": 13, "posts": 120, "newPosts": 7, "model": "s3://bots/alice/model/"}
    assert shown[-2]["model"] == "s3://x/v12/" and "model" not in shown[0]  # pruned: no copy left
    assert shown[0]["perplexity"] == 26.0 and shown[0]["finishedAt"] == "2026-01-04T00:00:00Z"
    assert api.validate(s, api.STATUS_SCHEMA, "status") == []
    assert "history" not in compute(body(), running(), job_files(stats=STATS)).status
