"""GitOps on the real control plane: examples/fleet applies server-side, idempotently, and
Git's field manager owns the spec while the operator's writes (as its ServiceAccount, with the
chart's RBAC) touch status and metadata only. The offline checks: tests/unit/test_fleet.py.
"""

from __future__ import annotations

import json

import pytest
import yaml

from botfleet import api
from tests.fixtures.manifests import FLEET, Cluster, apply_rbac, bot_requests, kustomize

FIELD_MANAGER = "gitops"


def expected_spec(document: dict) -> dict:
    return api.with_defaults(document["spec"], api.SPEC_SCHEMA)


def objects(k8s: Cluster, namespace: str) -> dict[str, dict]:
    listed = json.loads(
        k8s.kubectl("get", "botrequests", "-n", namespace, "-o", "json", "--show-managed-fields").stdout
    )["items"]
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
    user = apply_rbac(k8s, tmp_path, {}, "fleet-op", "fleet-op")
    as_operator = [f"--as={user}", "-n", namespace]
    for name in stored:
        k8s.kubectl(
            "patch",
            "botrequest",
            name,
            *as_operator,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps({"status": {"phase": "Pending", "reason": "Queued", "observedGeneration": 1}}),
        )
        k8s.kubectl(
            "patch",
            "botrequest",
            name,
            *as_operator,
            "--type=merge",
            "-p",
            json.dumps({"metadata": {"annotations": {"botfleet.dev/last-handled-configuration": "{}"}}}),
        )
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
    bad["spec"]["handles"] = [
        {"handle": f"h{i}", "source": {"mastodon": {"instance": "https://mastodon.social"}}} for i in range(4)
    ]
    refused = k8s.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        f"--field-manager={FIELD_MANAGER}",
        "-f",
        "-",
        input=yaml.safe_dump(bad),
        check=False,
    )
    assert refused.returncode != 0 and "spec.handles" in refused.stderr
