"""GitOps, offline: examples/fleet is a kustomization of valid BotRequests with an Argo CD
Application, and the operator's code never writes a BotRequest's spec (it owns status only).
The fleet on the real control plane: tests/integration/test_fleet_cluster.py.
"""

from __future__ import annotations

import yaml

from botfleet import api
from tests.fixtures.code import operator_code
from tests.fixtures.manifests import FLEET, ROOT, bot_requests, kustomize

APPLICATION = FLEET / "argocd" / "application.yaml"


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
    code = operator_code()
    import re

    for match in re.finditer(r"\.(create|replace|patch|delete)_namespaced_custom_object(_status)?\(([^)]*)", code):
        verb, status, args = match.groups()
        assert status or "RAY" in args, f"a non-status write that is not to a RayJob: {match.group(0)}"
    assert "replace_namespaced_custom_object" not in code
