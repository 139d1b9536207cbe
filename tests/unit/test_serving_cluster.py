"""Serving on a cluster, the pure parts (operator/botfleet_operator/serving.py): the catalog,
the serving status, the Serve config the ray executor deploys; and the catalog written only
when it changes (on a file:// store)."""

from __future__ import annotations

import json

import pytest

from botfleet import api
from botfleet.storage import Storage
from botfleet_operator.serving import (
    APP_NAME,
    ServingSync,
    catalog,
    deploy_config,
    serve_application,
    served_folder,
    status_patch,
)
from botfleet_operator.settings import Settings

ENDPOINT = "http://botfleet-serving-serve-svc.botfleet.svc:8000/v1"


def body(name="alice", namespace="team-a", phase="Succeeded", generation=1, observed=1, handle=None, **spec_extra):
    spec = {
        "handles": [{"handle": handle or name, "source": {"bluesky": {}}}],
        "output": {"uri": f"s3://bots/{namespace}"},
        **spec_extra,
    }
    status = {"phase": phase, "observedGeneration": observed} if phase else {}
    return {
        "metadata": {"name": name, "namespace": namespace, "generation": generation, "uid": f"uid-{name}"},
        "spec": spec,
        "status": status,
    }


def applied(document: dict, patch: dict | None) -> dict:
    """``document`` with a status merge patch applied, as the API server does."""
    status = dict(document["status"])
    for key, value in (patch or {}).items():
        if value is None:
            status.pop(key, None)
        else:
            status[key] = value
    return {**document, "status": status}


# --------------------------------------------------------------------------- the catalog


def test_catalog_lists_the_succeeded_requests_of_every_namespace_by_unique_name():
    bodies = [
        body("bob", "team-b"),
        body("alice", "team-a"),
        body("alice", "team-b"),  # same request name and model id, another namespace
        body("carol", "team-a", handle="alice"),  # same model id as team-a/alice, another request
    ]
    assert catalog(bodies) == {
        "bots": {
            "team-a/alice": "s3://bots/team-a/alice/",
            "team-a/carol": "s3://bots/team-a/alice/",
            "team-b/alice": "s3://bots/team-b/alice/",
            "team-b/bob": "s3://bots/team-b/bob/",
        }
    }
    assert list(catalog(bodies)["bots"]) == sorted(catalog(bodies)["bots"])


@pytest.mark.parametrize(
    "unserved",
    [
        body(phase="Training"),
        body(phase="Failed"),
        body(phase=None),
        body(generation=2, observed=1),  # a new spec: the old model is not what it asks for
        body(serving={"enabled": False}),
        body(output={"uri": "not a uri"}),
    ],
    ids=["training", "failed", "new", "new-spec", "disabled", "invalid"],
)
def test_catalog_leaves_out_what_is_not_served(unserved):
    assert served_folder(unserved) is None
    assert catalog([unserved, body("zoe")]) == {"bots": {"team-a/zoe": "s3://bots/team-a/zoe/"}}


def test_serving_enabled_true_or_absent_is_served():
    assert served_folder(body(serving={"enabled": True})) == served_folder(body()) == "s3://bots/team-a/alice/"


def test_the_spec_field_is_a_boolean():
    spec = body(serving={"enabled": "yes"})["spec"]
    with pytest.raises(api.ValidationError, match=r"spec.serving.enabled: must be a boolean"):
        api.parse_spec(spec)
    assert api.parse_spec(body(serving={"enabled": False})["spec"]).serving == api.ServingSpec(enabled=False)
    assert api.parse_spec(body()["spec"]).serving == api.ServingSpec()


# --------------------------------------------------------------------------- the status


def test_a_succeeded_request_gets_its_model_name_endpoint_and_condition_once():
    request = body()
    request["status"]["conditions"] = [{"type": "Ready", "status": "True", "reason": "Succeeded"}]
    patch = status_patch(request, ENDPOINT, now="2026-12-02T10:00:00Z")
    assert patch["serving"] == {"model": "team-a/alice", "endpoint": ENDPOINT}
    ready, serving = patch["conditions"]
    assert ready["type"] == "Ready"
    assert serving == {
        "type": "Serving",
        "status": "True",
        "reason": "Served",
        "message": f"served as team-a/alice at {ENDPOINT}",
        "observedGeneration": 1,
        "lastTransitionTime": "2026-12-02T10:00:00Z",
    }
    # Idempotent: once applied, nothing more to write, later too.
    assert status_patch(applied(request, patch), ENDPOINT, now="2026-12-02T11:00:00Z") is None


def test_turning_serving_off_unlists_and_says_why():
    served = applied(body(), status_patch(body(), ENDPOINT, now="t0"))
    off = {**served, "spec": {**served["spec"], "serving": {"enabled": False}}}
    patch = status_patch(off, ENDPOINT, now="t1")
    assert patch["serving"] is None
    (cond,) = patch["conditions"]
    assert (cond["status"], cond["reason"], cond["lastTransitionTime"]) == ("False", "ServingDisabled", "t1")


def test_a_failed_request_is_not_served():
    patch = status_patch(body(phase="Failed"), ENDPOINT, now="t0")
    assert "serving" not in patch and patch["conditions"][0]["reason"] == "NotTrained"


def test_an_unfinished_request_loses_its_serving_status_and_keeps_the_reconcilers_conditions():
    served = applied(body(), status_patch(body(), ENDPOINT, now="t0"))
    retraining = {**served, "metadata": {**served["metadata"], "generation": 2}}
    assert status_patch(retraining, ENDPOINT) == {"serving": None}
    assert status_patch(body(phase="Training"), ENDPOINT) is None


def test_without_an_endpoint_the_status_names_the_model_only():
    patch = status_patch(body(), "", now="t0")
    assert patch["serving"] == {"model": "team-a/alice"}
    assert patch["conditions"][0]["message"] == "served as team-a/alice"


# --------------------------------------------------------------------------- the ray executor's Serve config


def settings(**extra) -> Settings:
    return Settings(serving_catalog="s3://bots/.botfleet/serving-catalog.json", **extra)


def test_the_application_passes_the_catalog_and_the_replica_shape():
    from botfleet_serving.config import parse_args  # the application's own check of its arguments

    app = serve_application(settings(serving_models_per_replica=3, serving_replica_gpus=1), {"A": "1"})
    assert app["name"] == APP_NAME and app["route_prefix"] == "/"
    assert app["import_path"] == "botfleet_serving.app:build_app"
    assert app["args"]["catalog"] == "s3://bots/.botfleet/serving-catalog.json"
    assert app["args"]["models_per_replica"] == 3 and app["args"]["replica_gpus"] == 1
    assert app["runtime_env"] == {"env_vars": {"A": "1"}}
    assert "runtime_env" not in serve_application(settings(), {})
    config = parse_args(app["args"])
    assert (config.catalog, config.models_per_replica, config.replica_gpus) == (app["args"]["catalog"], 3, 1)


def test_deploy_config_starts_serve_with_the_port_when_it_is_not_running():
    app = serve_application(settings())
    empty = {"controller_info": {}, "proxies": {}, "applications": {}, "target_capacity": None}
    assert deploy_config(empty, app, 8123) == {"http_options": {"port": 8123}, "applications": [app]}


def test_deploy_config_keeps_the_clusters_other_applications_and_http_options():
    app = serve_application(settings())
    other = {"name": "theirs", "route_prefix": "/theirs", "import_path": "x:y"}
    details = {
        "controller_info": {"node_id": "n"},
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": 8000, "request_timeout_s": 30},
        "applications": {
            "theirs": {"status": "RUNNING", "deployed_app_config": other},
            "imperative": {"status": "RUNNING", "deployed_app_config": None},
        },
    }
    config = deploy_config(details, app, 9999)
    assert config == {
        "http_options": details["http_options"],
        "proxy_location": "EveryNode",
        "applications": [other, app],
    }
    # Deployed as configured: nothing to do; a changed setting: deployed again.
    details["applications"][APP_NAME] = {"status": "RUNNING", "deployed_app_config": json.loads(json.dumps(app))}
    assert deploy_config(details, app, 9999) is None
    changed = serve_application(settings(serving_models_per_replica=2))
    assert deploy_config(details, changed, 9999)["applications"] == [other, changed]


def test_serving_settings_are_checked():
    with pytest.raises(ValueError, match="serving_catalog"):
        Settings(serving_catalog="s3://bots/")
    with pytest.raises(ValueError, match="serving_min_replicas"):
        settings(serving_min_replicas=3, serving_max_replicas=2)
    assert Settings().serving_catalog == ""  # serving is off unless the installation turns it on


# --------------------------------------------------------------------------- written only when changed


def test_the_catalog_is_written_only_when_its_content_changes(tmp_path):
    uri = f"file://{tmp_path}/catalog.json"
    config = Settings(serving_catalog=uri)
    listed: list[dict] = [body("alice")]
    sync = ServingSync(config, Storage(), lambda namespaces: listed, lambda *a: None, None)
    assert sync.write_catalog(catalog(listed)) is True
    assert json.loads((tmp_path / "catalog.json").read_text()) == catalog(listed)
    assert sync.write_catalog(catalog(listed)) is False
    # A restarted operator finds the same content and does not write it again.
    again = ServingSync(config, Storage(), lambda namespaces: listed, lambda *a: None, None)
    assert again.write_catalog(catalog(listed)) is False
    listed.pop()  # the request was deleted: unlisted
    assert again.write_catalog(catalog(listed)) is True
    assert json.loads((tmp_path / "catalog.json").read_text()) == {"bots": {}}


def test_a_sync_writes_the_catalog_and_each_changed_status_once(tmp_path):
    patches = []
    listed = [body("alice"), body("bob", phase="Training")]
    sync = ServingSync(
        Settings(serving_catalog=f"file://{tmp_path}/c.json", serving_endpoint=ENDPOINT),
        Storage(),
        lambda namespaces: listed,
        lambda namespace, name, patch: patches.append((namespace, name, patch)),
        None,
    )
    sync.sync()
    assert [(ns, name) for ns, name, _ in patches] == [("team-a", "alice")]
    listed[0] = applied(listed[0], patches[0][2])
    sync.sync()
    assert len(patches) == 1
    assert json.loads((tmp_path / "c.json").read_text()) == {"bots": {"team-a/alice": "s3://bots/team-a/alice/"}}


# --------------------------------------------------------------------------- the REST client


def test_serve_request_sends_the_headers_and_reports_a_refusal_in_one_line():
    import http.server
    import threading

    from botfleet_operator.serve_api import ServeApiError, serve_request

    seen = []

    class DashboardStandIn(http.server.BaseHTTPRequestHandler):  # the real one: tests/integration
        def do_GET(self):  # noqa: N802 - http.server's name
            seen.append((self.path, self.headers.get("Authorization")))
            self._answer(200, b'{"applications": {}}')

        def do_PUT(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            self._answer(400, b"ValidationError(\n  applications: field required\n)")

        def _answer(self, status, body):
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), DashboardStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert serve_request(address, "GET", headers={"Authorization": "Bearer t"}) == {"applications": {}}
        assert seen == [("/api/serve/applications/", "Bearer t")]
        with pytest.raises(ServeApiError, match=r"PUT /api/serve/applications/ on .*: HTTP 400: ValidationError\( "):
            serve_request(address, "PUT", {"applications": []})
    finally:
        server.shutdown()
        server.server_close()
