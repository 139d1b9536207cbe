"""GitOps: examples/fleet is a kustomization of BotRequests that the API server accepts,
that applies idempotently, and whose spec the operator never writes (it owns status only).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from botfleet import api
from tests.unit.test_chart import Cluster
from tests.unit.test_chart import k8s  # noqa: F401  the shared control plane fixture

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "examples" / "fleet"
APPLICATION = FLEET / "argocd" / "application.yaml"
FIELD_MANAGER = "gitops"


def kustomize() -> list[dict]:
    from tests.cluster.controlplane import find_kubectl

    proc = subprocess.run([find_kubectl(), "kustomize", str(FLEET)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def bot_requests(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["kind"] == api.KIND]


# --------------------------------------------------------------------------- offline


def test_fleet_renders_and_every_request_is_valid():
    docs = kustomize()
    requests = bot_requests(docs)
    assert len(requests) >= 4
    namespaces = {d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"}
    for namespace in (d for d in docs if d["kind"] == "Namespace"):
        # it holds Secrets made outside Git: Argo CD must neither prune nor delete it
        options = namespace["metadata"]["annotations"]["argocd.argoproj.io/sync-options"].split(",")
        assert {"Prune=false", "Delete=false"} <= {o.strip() for o in options}
    for document in requests:
        request = api.parse_request(document)  # the schema the CRD is generated from
        assert document["metadata"]["namespace"] in namespaces
        assert document["metadata"]["labels"]["app.kubernetes.io/part-of"] == "botfleet-fleet"
        assert "status" not in document, "status is the operator's, never Git's"
        assert request.spec.handles
    # what the fleet covers: one and several handles; archive, Mastodon and dataset sources
    handle_counts = {len(d["spec"]["handles"]) for d in requests}
    assert 1 in handle_counts and max(handle_counts) > 1
    sources = {next(iter(h["source"])) for d in requests for h in d["spec"]["handles"]}
    assert {"archive", "mastodon", "dataset"} <= sources
    assert len({d["metadata"]["name"] for d in requests}) == len(requests)


def test_argocd_application():
    app = yaml.safe_load(APPLICATION.read_text())
    assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
    source = app["spec"]["source"]
    assert source["path"] == str(FLEET.relative_to(ROOT))
    assert (ROOT / source["path"] / "kustomization.yaml").exists()
    sync = app["spec"]["syncPolicy"]
    assert sync["automated"] == {"prune": True, "selfHeal": True}
    assert "ServerSideApply=true" in sync["syncOptions"]
    # the Application itself is not part of the fleet it syncs
    kustomization = yaml.safe_load((FLEET / "kustomization.yaml").read_text())
    assert not any("argocd" in r for r in kustomization["resources"])


def test_operator_never_writes_a_spec():
    """Every write the operator makes to a BotRequest is a status patch (kopf adds only
    metadata: its finalizer and annotations); custom-object writes otherwise go to RayJobs."""
    code = "\n".join(p.read_text() for p in sorted((ROOT / "operator/botfleet_operator").glob("*.py")))
    if not code:
        pytest.skip("the operator is not there yet")
    import re

    for match in re.finditer(r"\.(create|replace|patch|delete)_namespaced_custom_object(_status)?\(([^)]*)", code):
        verb, status, args = match.groups()
        assert status or "RAY" in args, f"a non-status write that is not to a RayJob: {match.group(0)}"
    assert "replace_namespaced_custom_object" not in code


# --------------------------------------------------------------------------- the control plane


def expected_spec(document: dict) -> dict:
    return api.with_defaults(document["spec"], api.SPEC_SCHEMA)


def objects(k8s: Cluster, namespace: str) -> dict[str, dict]:
    listed = json.loads(k8s.kubectl("get", "botrequests", "-n", namespace, "-o", "json", "--show-managed-fields").stdout)["items"]
    return {o["metadata"]["name"]: o for o in listed}


@pytest.mark.cluster
def test_fleet_applies_idempotently_and_git_owns_the_spec(k8s, tmp_path):
    docs = kustomize()
    requests = bot_requests(docs)
    (namespace,) = {d["metadata"]["namespace"] for d in requests}
    apply = ["apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-k", str(FLEET)]

    # 1. server-side dry run: the API server validates everything, nothing is stored
    #    (the namespace comes from the fleet too, so the dry run creates it first, for real,
    #    as Argo CD does when it applies the fleet's Namespace before the rest)
    k8s.ensure_namespace(namespace)
    dry = k8s.kubectl(*apply, "--dry-run=server")
    assert dry.stdout.count("(server dry run)") == len(docs)
    assert objects(k8s, namespace) == {}

    # 2. for real: every BotRequest is accepted and stored with the spec Git gave (plus the
    #    schema's defaults, which the API server fills in)
    k8s.kubectl(*apply)
    stored = objects(k8s, namespace)
    assert set(stored) == {d["metadata"]["name"] for d in requests}
    for document in requests:
        got = stored[document["metadata"]["name"]]
        assert got["spec"] == expected_spec(document)
        assert got["metadata"]["generation"] == 1
    versions = {name: o["metadata"]["resourceVersion"] for name, o in stored.items()}

    # 3. applying again changes nothing: same resourceVersions, and `kubectl diff` is empty
    k8s.kubectl(*apply)
    assert {n: o["metadata"]["resourceVersion"] for n, o in objects(k8s, namespace).items()} == versions
    diff = k8s.kubectl("diff", "--server-side", f"--field-manager={FIELD_MANAGER}", "-k", str(FLEET), check=False)
    assert diff.returncode == 0, diff.stdout + diff.stderr

    # 4. the operator's writes (as its ServiceAccount, with the chart's RBAC): a status
    #    patch and kopf's bookkeeping annotation. Neither moves the generation, and the next
    #    apply from Git neither conflicts with them nor undoes them.
    from tests.unit.test_chart import apply_rbac

    user = apply_rbac(k8s, tmp_path, {}, "fleet-op", "fleet-op")
    as_operator = [f"--as={user}", "-n", namespace]
    for name in stored:
        k8s.kubectl("patch", "botrequest", name, *as_operator, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": {"phase": "Pending", "reason": "Queued", "observedGeneration": 1}}))
        k8s.kubectl("patch", "botrequest", name, *as_operator, "--type=merge",
                    "-p", json.dumps({"metadata": {"annotations": {"botfleet.dev/last-handled-configuration": "{}"}}}))
    k8s.kubectl(*apply)
    after = objects(k8s, namespace)
    for document in requests:
        got = after[document["metadata"]["name"]]
        assert got["metadata"]["generation"] == 1
        assert got["spec"] == expected_spec(document)
        assert got["status"]["reason"] == "Queued"
        # Git's field manager owns the spec; the operator's manager owns no spec field
        managers = {m["manager"]: m for m in got["metadata"]["managedFields"]}
        assert "f:spec" in json.dumps(managers[FIELD_MANAGER]["fieldsV1"])
        for manager, entry in managers.items():
            if manager != FIELD_MANAGER:
                assert "f:spec" not in json.dumps(entry.get("fieldsV1", {})), manager

    # 5. a change in Git is a new generation; the operator's status stays until it reconciles
    changed = next(d for d in requests if d["metadata"]["name"] == "dril")
    changed = json.loads(json.dumps(changed))
    changed["spec"]["data"] = {"maxPosts": 1000}
    k8s.kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", "-", input=yaml.safe_dump(changed))
    dril = objects(k8s, namespace)["dril"]
    assert dril["metadata"]["generation"] == 2 and dril["spec"]["data"]["maxPosts"] == 1000
    k8s.kubectl(*apply)  # back to what Git says
    assert objects(k8s, namespace)["dril"]["spec"]["data"]["maxPosts"] == 3200

    # 6. a request the schema refuses is refused by the API server, and names the field
    bad = json.loads(json.dumps(changed))
    bad["metadata"]["name"] = "too-many"
    bad["spec"]["handles"] = [{"handle": f"h{i}", "source": {"mastodon": {"instance": "https://mastodon.social"}}} for i in range(4)]
    refused = k8s.kubectl("apply", "--server-side", "--dry-run=server", f"--field-manager={FIELD_MANAGER}", "-f", "-",
                          input=yaml.safe_dump(bad), check=False)
    assert refused.returncode != 0 and "spec.handles" in refused.stderr
