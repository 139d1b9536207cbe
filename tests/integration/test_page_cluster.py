"""The fleet page on the real control plane: its source reads BotRequests (phase,
conditions) and their Events through botfleet_web.cluster, and the bots' files from the
real S3 server; the chart's RBAC for the page, applied for real, lets its ServiceAccount
read and nothing else.
"""

from __future__ import annotations

import datetime

import pytest
import yaml
from fastapi.testclient import TestClient

from botfleet.artifacts import Progress
from botfleet.layout import Layout
from botfleet_web.app import fleet_app
from botfleet_web.cluster import KubeReader
from botfleet_web.source import ClusterSource
from tests.fixtures.manifests import render

pytestmark = pytest.mark.cluster
HOSTILE = "<script>window.pwned=1</script>"


def post_event(kube, namespace: str, name: str, message: str) -> None:
    from kubernetes import client

    now = datetime.datetime.now(datetime.UTC)
    kube.core.create_namespaced_event(
        namespace,
        client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{name}.", namespace=namespace),
            involved_object=client.V1ObjectReference(kind="BotRequest", name=name, namespace=namespace),
            reason="Training",
            message=message,
            type="Normal",
            first_timestamp=now,
            last_timestamp=now,
        ),
    )


def test_requests_their_status_events_and_files(kube, namespace, storage):
    spec = {"handles": [{"handle": "alice", "displayName": HOSTILE, "source": {"bluesky": {}}}]}
    kube.create_request(namespace, {"metadata": {"name": "alice"}, "spec": {**spec, "output": {"uri": storage.root}}})
    condition = {"type": "Ready", "status": "False", "reason": "Training", "message": HOSTILE}
    kube.custom.patch_namespaced_custom_object_status(
        "botfleet.dev",
        "v1alpha1",
        namespace,
        "botrequests",
        "alice",
        {"status": {"phase": "Training", "reason": "Training", "conditions": [condition]}},
        _content_type="application/merge-patch+json",
    )
    post_event(kube, namespace, "alice", f"training started {HOSTILE}")
    post_event(kube, namespace, "someone-else", "not alice's")
    storage.write_json(Layout(storage.uri("alice")).progress, Progress("training", 5, 20, eta_seconds=30).to_dict())

    reader = KubeReader((namespace,))
    source = ClusterSource(storage, reader.list_requests, reader.list_events)
    (bot,) = source.bots()
    assert (bot.model_id, bot.phase, bot.request.name) == ("alice", "training", "alice")
    assert bot.files.progress.step == 5 and bot.request.display_names == (HOSTILE,)
    page = source.bot("alice")
    assert [e["message"] for e in page.request.events] == [f"training started {HOSTILE}"]

    client = TestClient(fleet_app(source))
    html = client.get("/bots/alice").text
    assert "training started &lt;script&gt;" in html and "<script>window" not in html
    assert "Conditions" in html and '<progress max="20" value="5">' in html
    assert 'data-model-id="alice"' in client.get("/?phase=training").text


def test_the_page_account_only_reads(k8s, tmp_path):
    values = {"page": {"enabled": True}, "watchNamespaces": ["page-team"]}
    docs = [
        d
        for d in render(tmp_path, values)
        if d["kind"] in ("ServiceAccount", "Role", "RoleBinding")
        and d["metadata"]["labels"]["app.kubernetes.io/component"] == "page"
    ]
    k8s.ensure_namespace("botfleet", "page-team")
    k8s.kubectl("apply", "--server-side", "--field-manager=helm", "-f", "-", input=yaml.safe_dump_all(docs))
    account = "system:serviceaccount:botfleet:botfleet-page"
    assert k8s.can_i(account, "list", "botrequests.botfleet.dev", "page-team")
    assert k8s.can_i(account, "list", "events", "page-team")
    for verb, resource in [
        ("patch", "botrequests.botfleet.dev/status"),
        ("create", "botrequests.botfleet.dev"),
        ("delete", "botrequests.botfleet.dev"),
        ("get", "secrets"),
        ("create", "rayjobs.ray.io"),
        ("create", "events"),
    ]:
        assert not k8s.can_i(account, verb, resource, "page-team"), (verb, resource)
    assert not k8s.can_i(account, "list", "botrequests.botfleet.dev", "default")  # only its namespaces
