"""The Helm chart on the real Kubernetes 1.20 control plane (tests/cluster/controlplane.py):
`helm install --dry-run=server`, every rendered manifest accepted by the API server, and the
chart's RBAC, created for real, asked with `kubectl auth can-i` and used for the operator's
writes. The offline checks of the chart are tests/unit/test_chart.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
import yaml

from botfleet import api
from tests.fixtures.manifests import CHART, RELEASE_NS, ROOT, VALUE_SETS, apply_rbac, helm, render_text, write_values


@pytest.mark.cluster
def test_helm_install_dry_run_and_notes(k8s, tmp_path):
    """`helm install --dry-run=server` against the control plane (CRDs, hooks, lookup) and NOTES.txt."""
    k8s.ensure_namespace(RELEASE_NS, "team-a")
    for value_set, namespace in (("defaults", RELEASE_NS), ("minio", RELEASE_NS), ("namespaced", "team-a")):
        proc = helm(
            "install",
            "botfleet",
            str(CHART),
            "-n",
            RELEASE_NS,
            "--dry-run=server",
            "-f",
            str(write_values(tmp_path, VALUE_SETS[value_set])),
            kubeconfig=k8s.kubeconfig,
        )
        notes = proc.stdout.split("NOTES:", 1)[1]
        assert f"kubectl get botrequests -n {namespace} -w" in notes
        assert "kuberay" in notes
        assert ("port-forward svc/botfleet-minio" in notes) == (value_set == "minio")
        assert ("create it there first" in notes) == (namespace != RELEASE_NS)
        # The create command works pasted into a shell, in a namespace the operator watches.
        (command,) = re.findall(r"^kubectl apply .*?^YAML$", notes, flags=re.M | re.S)
        command = command.replace("kubectl apply", f"{k8s.kubectl_path} apply --dry-run=server -o name", 1)
        done = subprocess.run(
            ["bash", "-euc", command],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "KUBECONFIG": str(k8s.kubeconfig)},
        )
        assert done.returncode == 0 and done.stdout.strip() == "botrequest.botfleet.dev/dril", done.stderr


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
    ("list", "botrequests.botfleet.dev"),
    ("watch", "botrequests.botfleet.dev"),
    ("get", "botrequests.botfleet.dev"),
    ("patch", "botrequests.botfleet.dev"),
    ("patch", "botrequests.botfleet.dev/status"),
    ("get", "botrequests.botfleet.dev/status"),
    ("create", "events"),
]
NEEDED_KUBERAY = [
    ("create", "rayjobs.ray.io"),
    ("get", "rayjobs.ray.io"),
    ("delete", "rayjobs.ray.io"),
    ("update", "botrequests.botfleet.dev/finalizers"),
    ("get", "secrets"),  # the Hub token of spec.publish, to retry a failed publish
]
NEEDED_RAY = [("get", "secrets")]
BROADER = [
    ("create", "botrequests.botfleet.dev"),
    ("update", "botrequests.botfleet.dev"),
    ("delete", "botrequests.botfleet.dev"),
    ("deletecollection", "botrequests.botfleet.dev"),
    ("update", "botrequests.botfleet.dev/status"),
    ("list", "secrets"),
    ("watch", "secrets"),
    ("create", "secrets"),
    ("update", "secrets"),
    ("create", "pods"),
    ("get", "pods/exec"),
    ("create", "pods/exec"),
    ("create", "deployments.apps"),
    ("create", "jobs.batch"),
    ("update", "rayjobs.ray.io"),
    ("create", "rayclusters.ray.io"),
    ("create", "serviceaccounts/token"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("create", "clusterroles.rbac.authorization.k8s.io"),
    ("delete", "events"),
    ("list", "namespaces"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ("update", "customresourcedefinitions.apiextensions.k8s.io"),
    ("get", "configmaps"),
    ("escalate", "roles.rbac.authorization.k8s.io"),
]


def assert_access(k8s, user, namespace, needed, broader):
    from concurrent.futures import ThreadPoolExecutor

    checks = [(v, r, True) for v, r in needed] + [(v, r, False) for v, r in broader]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda c: k8s.can_i(user, c[0], c[1], namespace), checks))
    denied = [(v, r) for (v, r, want), got in zip(checks, answers, strict=True) if want and not got]
    assert not denied, f"{user} cannot {denied} in {namespace or 'all namespaces'}"
    allowed = [(v, r) for (v, r, want), got in zip(checks, answers, strict=True) if not want and got]
    assert not allowed, f"{user} may {allowed} in {namespace or 'all namespaces'}"


@pytest.mark.cluster
def test_rbac_cluster_wide_kuberay(k8s, tmp_path):
    user = apply_rbac(k8s, tmp_path, {}, "rbac-cw", "rbac-cw")
    k8s.ensure_namespace("bots-1")
    for namespace in ("bots-1", None):
        assert_access(k8s, user, namespace, NEEDED + NEEDED_KUBERAY, BROADER)
    assert k8s.can_i(user, "watch", "customresourcedefinitions.apiextensions.k8s.io", None)


@pytest.mark.cluster
def test_rbac_cluster_wide_ray(k8s, tmp_path):
    user = apply_rbac(k8s, tmp_path, VALUE_SETS["ray"], "rbac-ray", "rbac-ray")
    k8s.ensure_namespace("bots-1")
    assert_access(
        k8s, user, "bots-1", NEEDED + NEEDED_RAY, BROADER + [(v, "rayjobs.ray.io") for v in ("create", "get", "delete")]
    )


@pytest.mark.cluster
def test_rbac_namespaced(k8s, tmp_path):
    values = VALUE_SETS["namespaced"]
    user = apply_rbac(k8s, tmp_path, values, "rbac-ns", "rbac-ns")
    k8s.ensure_namespace("elsewhere")
    for namespace in values["watchNamespaces"]:
        assert_access(k8s, user, namespace, NEEDED + NEEDED_KUBERAY, BROADER)
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
    rayjob_module = pytest.importorskip("botfleet_operator.rayjob")
    settings_module = pytest.importorskip("botfleet_operator.settings")
    user = apply_rbac(k8s, tmp_path, {}, "rbac-w", "rbac-w")
    k8s.ensure_namespace("bots-w")
    request = yaml.safe_load((ROOT / "examples" / "dril.yaml").read_text())
    request["metadata"]["namespace"] = "bots-w"
    k8s.kubectl("apply", "--server-side", "--field-manager=gitops", "-f", "-", input=yaml.safe_dump(request))
    body = json.loads(k8s.kubectl("get", "botrequest", "dril", "-n", "bots-w", "-o", "json").stdout)
    # The optional volumes too (the store's CA, the model cache): KubeRay's schema checks them.
    claim = {"persistentVolumeClaim": {"claimName": "botfleet-models"}}
    settings = settings_module.Settings(s3_ca_secret="s3-ca", job_model_cache_volume=claim)
    rayjob = rayjob_module.render_rayjob(body, rayjob_module.resolve_spec(body, settings), settings)
    as_sa = [f"--as={user}", "-n", "bots-w"]
    k8s.kubectl("create", "--dry-run=server", *as_sa, "-f", "-", input=json.dumps(rayjob))
    k8s.kubectl(
        "patch",
        "botrequest",
        "dril",
        *as_sa,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Pending", "reason": "Queued"}}),
    )
    k8s.kubectl(
        "patch",
        "botrequest",
        "dril",
        *as_sa,
        "--type=merge",
        "-p",
        json.dumps({"metadata": {"annotations": {"botfleet.dev/last-handled-configuration": "{}"}}}),
    )
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": "dril.", "namespace": "bots-w"},
        "involvedObject": {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "name": "dril",
            "namespace": "bots-w",
            "uid": body["metadata"]["uid"],
        },
        "reason": "Test",
        "message": "from the operator's account",
        "type": "Normal",
        "source": {"component": "kopf"},
    }
    k8s.kubectl("create", *as_sa, "-f", "-", input=json.dumps(event))
    body["spec"]["data"] = {"maxPosts": 1}
    refused = k8s.kubectl("replace", *as_sa, "-f", "-", input=json.dumps(body), check=False)
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower()
    k8s.kubectl("delete", "botrequest", "dril", "-n", "bots-w", "--wait=false")
