"""Serving on a cluster, on real parts: the chart's RayService against KubeRay's real CRD on
the control plane; the operator (kuberay) writing the catalog and the serving status of
succeeded requests, and unlisting a deleted one; with the ray executor, one serving pass of
the operator on a real local Ray head: the real application deployed through Serve's REST
API beside another team's, and a bot answering the official OpenAI client.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from botfleet.storage import NotFound, Storage
from botfleet_operator.serve_api import serve_request
from botfleet_operator.serving import APP_NAME, ServingSync
from botfleet_operator.settings import Settings
from tests.fixtures.bots import publish_bot
from tests.fixtures.cluster import free_port, wait_for
from tests.fixtures.kuberay_jobs import finish_job, request
from tests.fixtures.manifests import VALUE_SETS, find, render

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
    wait_for(lambda: catalog() == {"bots": {model: storage.uri("bots", "alice") + "/"}}, 30, what="the catalog")
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
def test_the_ray_executor_serves_the_fleet_beside_the_clusters_other_applications(
    ray_head_address,
    bot_model_dir,
    tmp_path,
):
    """One serving pass of the operator on a real Ray head: the catalog, the status, and the
    real application deployed through Serve's REST API; a bot answers an OpenAI client."""
    import openai

    output = f"file://{tmp_path}/bots"
    publish_bot(Storage(), output, "alice", bot_model_dir)
    succeeded = {
        "metadata": {"name": "alice", "namespace": "team-a", "generation": 1, "uid": "u1"},
        "spec": {"handles": [{"handle": "alice", "source": {"bluesky": {}}}], "output": {"uri": output}},
        "status": {"phase": "Succeeded", "observedGeneration": 1},
    }
    port = free_port()
    # The dashboard's Serve module connects to Ray on its first call: slow on a busy machine.
    wait_for(lambda: serve_request(ray_head_address, "GET"), 300, 1.0, "Serve's REST API")
    # Another team's application, there first.
    theirs = {"name": "theirs", "route_prefix": "/theirs", "import_path": "tests.fakes.serving_stand_in:build_app"}
    serve_request(
        ray_head_address, "PUT", {"http_options": {"host": "127.0.0.1", "port": port}, "applications": [theirs]}
    )

    settings = Settings(
        executor="ray",
        ray_address=ray_head_address,
        serving_catalog=f"file://{tmp_path}/serving-catalog.json",
        serving_endpoint=f"http://127.0.0.1:{port}/v1",
        serving_replica_cpus=0.5,
        serving_max_replicas=1,
    )
    patches = []
    sync = ServingSync(settings, Storage(), lambda namespaces: [succeeded], lambda *patch: patches.append(patch), {})
    sync.sync()
    assert Storage().read_json(settings.serving_catalog) == {"bots": {"team-a/alice": f"{output}/alice/"}}
    assert patches[0][2]["serving"] == {"model": "team-a/alice", "endpoint": settings.serving_endpoint}

    def running():
        apps = serve_request(ray_head_address, "GET")["applications"]
        if any(app["status"] == "DEPLOY_FAILED" for app in apps.values()):
            raise AssertionError(json.dumps(apps)[:3000])
        return apps if {n: a["status"] for n, a in apps.items()} == {"theirs": "RUNNING", APP_NAME: "RUNNING"} else None

    wait_for(running, 300, 1.0, "both applications RUNNING")
    client = openai.OpenAI(base_url=settings.serving_endpoint, api_key="unused", max_retries=0, timeout=240)
    assert [m.id for m in client.models.list().data] == ["team-a/alice"]
    completion = client.completions.create(model="team-a/alice", prompt="Hello", max_tokens=4, seed=7)
    assert completion.model == "team-a/alice" and isinstance(completion.choices[0].text, str)
    # Deployed as configured: a later pass deploys nothing; the other application still answers.
    assert sync.deploy() is False
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/theirs/", timeout=30) as response:
        assert json.loads(response.read())["app"] == "stand-in"
