"""The Helm chart (charts/botfleet), offline: lint, render, values, least-privilege RBAC read
from the rendered roles and from the operator's code. Rendering: tests/fixtures/manifests.py;
the chart on the real control plane: tests/integration/test_chart_cluster.py.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from botfleet import api
from tests.fixtures.code import operator_code
from tests.fixtures.manifests import (
    CHART,
    RELEASE_NS,
    VALUE_SETS,
    chart_settings,
    env_of,
    find,
    helm,
    operator_deployment,
    render,
    write_values,
)

CRD_FILE = CHART / "crds" / "botrequests.botfleet.dev.yaml"


# --------------------------------------------------------------------------- lint and render


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_helm_lint_strict(value_set, tmp_path):
    proc = helm(
        "lint", "--strict", str(CHART), "-n", RELEASE_NS, "-f", str(write_values(tmp_path, VALUE_SETS[value_set]))
    )
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout


def test_chart_crd_is_the_generated_one():
    """crds/ holds exactly what `botfleet crd` generates (the file the operator's tests install)."""
    assert CRD_FILE.read_text() == api.crd_yaml()
    # and helm installs it from crds/ (not templated): `helm template --include-crds` shows it
    out = helm("template", "botfleet", str(CHART), "--include-crds").stdout
    assert any(
        d and d.get("kind") == "CustomResourceDefinition" and d["metadata"]["name"] == "botrequests.botfleet.dev"
        for d in yaml.safe_load_all(out)
    )


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_operator_deployment(value_set, tmp_path):
    docs = render(tmp_path, VALUE_SETS[value_set])
    deployment = operator_deployment(docs)
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "botfleet"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    (container,) = pod["containers"]
    assert container["args"] == ["operator"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081, "ready": 8082}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ready"}
    # the read-only root filesystem: HOME and TMPDIR on an emptyDir
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    env = env_of(container)
    assert env["HOME"] == "/tmp" and env["TMPDIR"] == "/tmp"
    # the metrics Service selects exactly this pod template
    (service,) = [s for s in find(docs, "Service") if s["metadata"]["name"] == "botfleet-metrics"]
    assert service["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_operator_settings_come_from_values(value_set, tmp_path):
    """Every BOTFLEET_OPERATOR_* variable names a real operator setting and parses."""
    settings_module = pytest.importorskip("botfleet_operator.settings")
    values = VALUE_SETS[value_set]
    (container,) = operator_deployment(render(tmp_path, values))["spec"]["template"]["spec"]["containers"]
    env = env_of(container)
    fields = {f.name for f in __import__("dataclasses").fields(settings_module.Settings)}
    ours = {k: v for k, v in env.items() if k.startswith(settings_module.ENV_PREFIX)}
    unknown = {k for k in ours if k[len(settings_module.ENV_PREFIX) :].lower() not in fields}
    assert not unknown, f"not operator settings: {unknown}"
    settings = settings_module.Settings.from_env({k: v for k, v in ours.items() if isinstance(v, str)})
    assert settings.executor == values.get("executor", {}).get("type", "kuberay")
    assert settings.metrics_port == 8080 and settings.health_port == 8081
    assert settings.namespaces == tuple(values.get("watchNamespaces", ()))
    assert settings.job_image == "botfleet/job:0.1.0"
    assert settings.max_concurrent == values.get("maxConcurrent", 2)
    shape = {"workers": 1, "gpusPerWorker": 1, "cpusPerWorker": 4, "memoryPerWorker": "16Gi"} | values.get(
        "job", {}
    ).get("workerDefaults", {})
    assert settings.worker_defaults == worker_defaults(shape)
    if settings.executor == "ray":
        assert settings.ray_address == values["executor"]["ray"]["address"]
        assert settings.wandb_secret == "wandb"
    # object store: endpoint and the credentials Secret (the same one the jobs read)
    secret = (
        "botfleet-minio"
        if values.get("minio", {}).get("enabled")
        else values.get("objectStore", {}).get("credentialsSecret", "botfleet-s3")
    )
    assert settings.s3_secret == secret
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[key] == {"secretKeyRef": {"name": secret, "key": key}}
    if values.get("minio", {}).get("enabled"):
        assert env["BOTFLEET_S3_ENDPOINT"] == "http://botfleet-minio.botfleet.svc:9000"
    else:
        assert env["BOTFLEET_S3_ENDPOINT"] == values.get("objectStore", {}).get("endpoint", "https://s3.amazonaws.com")
    assert settings.job_pod["securityContext"]["runAsNonRoot"] is True and settings.job_worker_pod == {}
    # a private CA: the operator's file is the mounted Secret, and the jobs mount the same name
    ca_secret = values.get("objectStore", {}).get("caSecret", "")
    assert settings.s3_ca_secret == ca_secret
    if ca_secret:
        pod = operator_deployment(render(tmp_path, values))["spec"]["template"]["spec"]
        (volume,) = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == ca_secret]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        assert env["BOTFLEET_S3_CA_FILE"] == f"{mount['mountPath']}/ca.crt"
    else:
        assert "BOTFLEET_S3_CA_FILE" not in env


def test_job_pods_pass_the_restricted_pod_security_profile_by_default(tmp_path):
    """With the chart's defaults every Ray pod of a RayJob meets PodSecurity "restricted"."""
    from botfleet_operator.rayjob import render_rayjob, resolve_spec

    body = {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": "dril", "namespace": "bots", "uid": "u", "generation": 1},
        "spec": {
            "handles": [{"handle": "dril", "source": {"archive": {"uri": "s3://uploads/dril.zip"}}}],
            "output": {"uri": "s3://bots/"},
        },
    }
    settings = chart_settings(tmp_path, {})
    job = render_rayjob(body, resolve_spec(body, settings), settings)["spec"]
    cluster = job["rayClusterSpec"]
    # the Ray pods, and the pod of KubeRay's submitter Job
    for template in [
        cluster["headGroupSpec"]["template"],
        *(g["template"] for g in cluster["workerGroupSpecs"]),
        job["submitterPodTemplate"],
    ]:
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
            assert not container["securityContext"].get("privileged")


def test_job_pod_values_take_what_the_operator_accepts(tmp_path):
    from botfleet_operator.settings import JOB_POD_FIELDS

    # null is how Helm users drop a default map: the operator then gets none, not "null"
    dropped = chart_settings(tmp_path, {"job": {"pod": None, "containerSecurityContext": None}})
    assert dropped.job_pod == {} and dropped.job_container_security_context == {}
    assert dropped.job_model_cache_volume == {}  # the default: no volume, each pod's own cache
    claim = {"persistentVolumeClaim": {"claimName": "botfleet-models"}}
    assert chart_settings(tmp_path, {"job": {"modelCacheVolume": claim}}).job_model_cache_volume == claim

    job = json.loads((CHART / "values.schema.json").read_text())["properties"]["job"]["properties"]
    for name in ("pod", "workerPod"):
        assert sorted(job[name]["properties"]) == sorted(JOB_POD_FIELDS) and job[name]["additionalProperties"] is False


def test_values_schema_rejects_bad_values(tmp_path):
    for bad, message in [
        ({"executor": {"type": "slurm"}}, "executor.type"),
        ({"maxConcurrent": -1}, "maxConcurrent"),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "watchNamespaces"),
        ({"objectStore": {"endpoint": "s3.example.com"}}, "objectStore.endpoint"),
        ({"job": {"head": {"memory": "lots"}}}, "job.head.memory"),
        ({"job": {"workerDefaults": {"gpusPerWorker": -1}}}, "job.workerDefaults.gpusPerWorker"),
        ({"job": {"workerDefaults": {"workers": 65}}}, "job.workerDefaults.workers"),
        ({"job": {"workerDefaults": {"memoryPerWorker": "16 GB"}}}, "job.workerDefaults.memoryPerWorker"),
        ({"executr": {"type": "ray"}}, "executr"),
        ({"executor": {"type": "ray"}}, "executor.ray.address is required"),
        ({"objectStore": {"credentialsSecret": ""}}, "objectStore.credentialsSecret is required"),
        ({"minio": {"enabled": True, "image": {"tag": ""}}}, "minio.image.tag"),  # not botfleet's appVersion
        ({"job": {"pod": {"containers": []}}}, "job.pod"),  # the containers are the operator's
        ({"job": {"modelCacheVolume": {"name": "cache", "emptyDir": {}}}}, "job.modelCacheVolume"),  # we name it
    ]:
        proc = helm("template", "botfleet", str(CHART), "-f", str(write_values(tmp_path, bad)), check=False)
        assert proc.returncode != 0, f"accepted {bad}"
        assert message in proc.stderr, (bad, proc.stderr)


def worker_defaults(values: dict) -> api.WorkerDefaults:
    """job.workerDefaults (camelCase, as in a BotRequest) as the operator's WorkerDefaults."""
    return api.WorkerDefaults(**{api._snake(key): value for key, value in values.items()})


def test_worker_defaults_values_match_the_request_schema():
    """job.workerDefaults takes exactly what a BotRequest's worker fields take, and its
    defaults are the operator's own."""
    values_schema = json.loads((CHART / "values.schema.json").read_text())
    node = values_schema["properties"]["job"]["properties"]["workerDefaults"]
    assert set(node["properties"]) == {key for _, key in api.WORKER_FIELDS}
    rules = ("type", "minimum", "maximum", "pattern")
    for section, key in api.WORKER_FIELDS:
        ours = api.SPEC_SCHEMA["properties"][section]["properties"][key]
        assert {r: node["properties"][key].get(r) for r in rules} == {r: ours.get(r) for r in rules}, key
    values = yaml.safe_load((CHART / "values.yaml").read_text())["job"]["workerDefaults"]
    assert worker_defaults(values) == api.WorkerDefaults()


def test_minio_is_optional(tmp_path):
    off = render(tmp_path, {})
    assert not [d for d in off if d["metadata"]["name"].startswith("botfleet-minio")]
    on = render(tmp_path, VALUE_SETS["minio"])
    minio = [d for d in on if d["metadata"]["name"].startswith("botfleet-minio")]
    assert sorted(d["kind"] for d in minio) == ["Deployment", "Job", "PersistentVolumeClaim", "Secret", "Service"]
    (deployment,) = [d for d in minio if d["kind"] == "Deployment"]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert ":" in pod["containers"][0]["image"] and not pod["containers"][0]["image"].endswith(":latest")
    digest = "sha256:" + "0123456789abcdef" * 4
    pinned = render(tmp_path, {"minio": {"enabled": True, "image": {"digest": digest}}})
    (pinned_deployment,) = [
        d for d in pinned if d["kind"] == "Deployment" and d["metadata"]["name"] == "botfleet-minio"
    ]
    assert pinned_deployment["spec"]["template"]["spec"]["containers"][0]["image"] == f"minio/minio@{digest}"
    (secret,) = [d for d in minio if d["kind"] == "Secret"]
    assert set(secret["data"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    (job,) = [d for d in minio if d["kind"] == "Job"]
    buckets = env_of(job["spec"]["template"]["spec"]["containers"][0])["BUCKETS"].split()
    assert set(buckets) == {"bots", "uploads"}
    # the ServiceMonitor is optional too
    assert not find(off, "ServiceMonitor")
    (monitor,) = find(on, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


# --------------------------------------------------------------------------- RBAC, statically

BOTREQUEST_VERBS = {"get", "list", "watch", "patch"}


def rules_of(docs: list[dict]) -> list[tuple[str, str, dict]]:
    """(kind, namespace, rule) for every rule of every (Cluster)Role."""
    out = []
    for doc in docs:
        if doc["kind"] in ("Role", "ClusterRole"):
            for rule in doc["rules"]:
                out.append((doc["kind"], doc["metadata"].get("namespace", ""), rule))
    return out


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_rbac_is_least_privilege(value_set, tmp_path):
    values = VALUE_SETS[value_set]
    docs = render(tmp_path, values)
    rules = rules_of(docs)
    for _kind, _ns, rule in rules:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
        assert "resourceNames" not in rule or rule["resourceNames"]
        assert "escalate" not in rule["verbs"] and "bind" not in rule["verbs"] and "impersonate" not in rule["verbs"]
    granted: dict[str, set] = {}
    for _kind, _ns, rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault(f"{resource}.{group}".rstrip("."), set()).update(rule["verbs"])
    executor = values.get("executor", {}).get("type", "kuberay")
    expected = {
        "customresourcedefinitions.apiextensions.k8s.io": {"list", "watch"},
        "botrequests.botfleet.dev": BOTREQUEST_VERBS,
        "botrequests/status.botfleet.dev": {"get", "patch"},
        "events": {"create"},
        "secrets": {"get"},  # the Hub token to retry a publish; the ray executor's job secrets
    }
    if executor == "kuberay":
        expected["rayjobs.ray.io"] = {"get", "create", "delete", "patch"}
        expected["botrequests/finalizers.botfleet.dev"] = {"update"}
    assert granted == expected
    namespaces = values.get("watchNamespaces")
    cluster_wide = {r for kind, _ns, rule in rules if kind == "ClusterRole" for r in rule["resources"]}
    if namespaces:
        # only CRD discovery is cluster-wide; the rest is one Role per watched namespace
        assert cluster_wide == {"customresourcedefinitions"}
        assert sorted(d["metadata"]["namespace"] for d in find(docs, "Role")) == sorted(namespaces)
        assert sorted(d["metadata"]["namespace"] for d in find(docs, "RoleBinding")) == sorted(namespaces)
    else:
        assert not find(docs, "Role") and not find(docs, "RoleBinding")


def test_operator_uses_no_more_than_rbac_grants():
    """The operator's Kubernetes calls, read from its code, are the ones the chart grants."""
    sources = operator_code()
    calls = set(re.findall(r"\.((?:get|list|create|delete|patch|replace|read|watch)_[a-z_]+)\(", sources))
    allowed = {
        "get_namespaced_custom_object",  # rayjobs get; botrequests get (an output folder's owner)
        "create_namespaced_custom_object",  # rayjobs create
        "delete_namespaced_custom_object",  # rayjobs delete
        "patch_namespaced_custom_object",  # rayjobs patch (suspend, resume)
        "patch_namespaced_custom_object_status",  # botrequests/status patch
        "read_namespaced_secret",  # secrets get (the ray executor; a publish retry)
        "create_namespaced_event",  # events create
        "list_namespaced_custom_object",  # botrequests list (the ray executor's orphan sweep)
        "list_cluster_custom_object",  # botrequests list, all namespaces
    }
    kube_calls = {c for c in calls if "_namespaced_" in c or "_cluster_" in c or c.endswith("_namespace")}
    assert kube_calls <= allowed, f"calls the chart's RBAC does not cover: {kube_calls - allowed}"
    # every custom-object write other than status targets RayJobs, never a BotRequest
    for match in re.finditer(r"\.(create|delete|patch|replace)_namespaced_custom_object\(([^)]*)", sources):
        assert "RAY" in match.group(2), match.group(0)


def test_the_ray_token_is_an_optional_mounted_secret(tmp_path):
    values = {
        "executor": {"type": "ray", "ray": {"address": "http://head.ray:8265", "authTokenSecret": "ray-token"}},
        "job": {"rayAuth": {"mode": "disabled"}},
    }
    (container,) = operator_deployment(render(tmp_path, values))["spec"]["template"]["spec"]["containers"]
    pod = operator_deployment(render(tmp_path, values))["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "ray-token"]
    assert volume["secret"]["optional"] is True and volume["secret"]["items"] == [
        {"key": "auth_token", "path": "token"}
    ]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    settings = chart_settings(tmp_path, values)
    assert settings.ray_auth_token_file == f"{mount['mountPath']}/token"
    assert settings.job_ray_auth == "disabled" and settings.ready_port == 8082
    # Without a token Secret, nothing is mounted; RayJobs are locked by default.
    defaults = chart_settings(tmp_path, {})
    assert defaults.ray_auth_token_file == "" and defaults.job_ray_auth == "token"
    assert not any(
        v["name"] == "ray-auth"
        for v in operator_deployment(render(tmp_path, {}))["spec"]["template"]["spec"]["volumes"]
    )
