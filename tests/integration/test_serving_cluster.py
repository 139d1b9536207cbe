"""Serving on a cluster, on real parts: the chart's RayService against KubeRay's real CRD on
the control plane; the operator (kuberay) writing the catalog and the serving status of
succeeded requests, and unlisting a deleted one; the operator's deploy of the application
to a real local Ray head through Serve's REST API (the ray executor), beside another one.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from botfleet.storage import NotFound, Storage
from botfleet_operator.serve_api import serve_request
from botfleet_operator.serving import APP_NAME, ServingSync
from botfleet_operator.settings import Settings
from tests.fixtures.cluster import free_port, wait_for
from tests.fixtures.manifests import VALUE_SETS, find, render
from tests.integration.test_operator_e2e import ray_head  # noqa: F401 - the module's Ray head fixture
from tests.integration.test_operator_kuberay import finish_job, request

ENDPOINT = "http://botfleet-serving-serve-svc.botfleet.svc:8000/v1"


def contains(kept, sent, path="") -> list[str]:
    """Where ``kept`` (the object as the API server stored it) lost or changed what ``sent`` had."""
    if isinstance(sent, dict):
        if not isinstance(kept, dict):
            return [f"{path}: not an object"]
        return [problem for key, value in sent.items() for problem in contains(kept.get(key), value, f"{path}.{key}")]
    if isinstance(sent, list):
        if not isinstance(kept, list) or len(kept) != len(sent):
            return [f"{path}: not the same list"]
        return [
            problem
            for i, (k, s) in enumerate(zip(kept, sent, strict=True))
            for problem in contains(k, s, f"{path}[{i}]")
        ]
    return [] if kept == sent else [f"{path}: {sent!r} became {kept!r}"]


@pytest.mark.cluster
def test_the_charts_rayservice_is_accepted_whole_by_kuberays_crd(kube, namespace, tmp_path):
    (service,) = find(render(tmp_path, VALUE_SETS["serving"], namespace=namespace), "RayService")
    created = kube.custom.create_namespaced_custom_object("ray.io", "v1", namespace, "rayservices", service)
    # Nothing pruned or changed: KubeRay's schema knows every field the chart writes.
    assert contains(created, service) == []


@pytest.mark.cluster
def test_succeeded_requests_are_listed_and_deleted_ones_unlisted(kube, namespace, storage, start_operator, embedded_s3):
    catalog_uri = storage.uri(".botfleet", "serving-catalog.json")
    start_operator(
        "--executor",
        "kuberay",
        "--namespaces",
        namespace,
        "--reconcile-interval",
        "0.3",
        "--s3-secret",
        "s3-creds",
        "--serving-catalog",
        catalog_uri,
        "--serving-endpoint",
        ENDPOINT,
        "--serving-sync-interval",
        "0.3",
        env=embedded_s3.config.to_env(),
    )
    kube.create_request(namespace, request("alice", storage.test_bucket))
    unserved = request("bob", storage.test_bucket)
    unserved["spec"]["handles"][0]["handle"] = "bob"
    unserved["spec"]["serving"] = {"enabled": False}
    kube.create_request(namespace, unserved)
    for name in ("alice", "bob"):
        wait_for(lambda name=name: kube.get_rayjob(namespace, f"{name}-g1"), 30, what=f"the RayJob of {name}")
        finish_job(storage, storage.uri("bots", name))
        kube.set_rayjob_status(namespace, f"{name}-g1", jobDeploymentStatus="Complete", jobStatus="SUCCEEDED")
        kube.wait_phase(namespace, name, "Succeeded")

    def catalog():
        try:
            return storage.read_json(catalog_uri)
        except NotFound:
            return None

    model = f"{namespace}/alice"
    wait_for(
        lambda: catalog() == {"bots": {model: storage.uri("bots", "alice", "model") + "/"}}, 30, what="the catalog"
    )
    status = wait_for(lambda: (lambda s: s if s.get("serving") else None)(kube.status(namespace, "alice")), 30)
    assert status["serving"] == {"model": model, "endpoint": ENDPOINT}
    conditions = {c["type"]: c for c in status["conditions"]}
    assert set(conditions) == {"Ready", "DataReady", "Trained", "Serving"}
    assert (conditions["Serving"]["status"], conditions["Serving"]["reason"]) == ("True", "Served")
    bob = wait_for(
        lambda: (lambda s: s if any(c["type"] == "Serving" for c in s["conditions"]) else None)(
            kube.status(namespace, "bob")
        ),
        30,
        what="bob's Serving condition",
    )
    assert "serving" not in bob
    assert [(c["status"], c["reason"]) for c in bob["conditions"] if c["type"] == "Serving"] == [
        ("False", "ServingDisabled")
    ]

    table = kube.kubectl("get", "botrequests", "-n", namespace, "-o", "wide").stdout.splitlines()
    column = table[0].index("SERVED-AS")  # kubectl aligns the columns (the WORKERS column has spaces)
    served_as = {row.split()[0]: row[column : column + len(model)].strip() for row in table[1:]}
    assert served_as == {"alice": model, "bob": ""}

    kube.delete_request(namespace, "alice")
    wait_for(lambda: catalog() == {"bots": {}}, 30, what="alice unlisted")


@pytest.mark.slow
def test_the_ray_executor_deploys_the_application_beside_the_clusters_others(ray_head, tmp_path):  # noqa: F811
    catalog_uri = f"file://{tmp_path}/serving-catalog.json"
    Storage().write_json(catalog_uri, {"bots": {"team-a/alice": "s3://bots/team-a/alice/model/"}})
    port = free_port()
    stand_in = "tests.fakes.serving_stand_in:build_app"
    # The dashboard's Serve module connects to Ray on its first call: slow on a busy machine.
    wait_for(lambda: serve_request(ray_head, "GET"), 300, 1.0, "Serve's REST API")
    # Another team's application, there first.
    theirs = {"name": "theirs", "route_prefix": "/theirs", "import_path": stand_in, "args": {"catalog": catalog_uri}}
    serve_request(ray_head, "PUT", {"http_options": {"host": "127.0.0.1", "port": port}, "applications": [theirs]})

    settings = Settings(
        executor="ray", ray_address=ray_head, serving_catalog=catalog_uri, serving_import_path=stand_in, serving_port=1
    )
    sync = ServingSync(settings, Storage(), lambda namespaces: [], lambda *a: None, {"SERVING_STAND_IN_MARK": "s3"})
    assert sync.deploy() is True

    def running():
        apps = serve_request(ray_head, "GET")["applications"]
        if any(app["status"] == "DEPLOY_FAILED" for app in apps.values()):
            raise AssertionError(json.dumps(apps)[:3000])
        return apps if {n: a["status"] for n, a in apps.items()} == {"theirs": "RUNNING", APP_NAME: "RUNNING"} else None

    wait_for(running, 180, 1.0, "both applications RUNNING")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=30) as response:
        listed = json.loads(response.read())
    assert [m["id"] for m in listed["data"]] == ["team-a/alice"] and listed["path"] == "/v1/models"
    assert listed["args"]["catalog"] == catalog_uri and listed["args"]["models_per_replica"] == 8
    assert listed["mark"] == "s3"  # the object store's variables reach the replicas
    # Deployed as configured: a later pass changes nothing; the other application still answers.
    assert sync.deploy() is False
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/theirs/v1/models", timeout=30) as response:
        assert json.loads(response.read())["data"][0]["id"] == "team-a/alice"
