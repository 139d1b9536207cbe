"""Calls to a Ray cluster with token authentication (operator/botfleet_operator/ray_access.py),
the executor's health (health.py) and the KubeRay clusters' lock (rayjob.cluster_auth), without
a Ray cluster: the real Ray client against a closed port, Ray's own error texts. A Ray head
with token authentication: tests/integration/test_operator_ray_auth.py."""

from __future__ import annotations

import os
import urllib.error
import urllib.request

import pytest

from botfleet.reasons import Reason
from botfleet_operator import rayjob as render
from botfleet_operator.health import ExecutorHealth, serve_readiness
from botfleet_operator.ray_access import RayAccess, RayToken, RayUnauthorized, RayUnreachable, auth_headers
from botfleet_operator.settings import Settings
from tests.fixtures.bot_requests import body
from tests.fixtures.cluster import free_port

TOKEN = "f" * 64


def test_the_token_file_is_read_again_when_it_changes(tmp_path):
    path = tmp_path / "token"
    token = RayToken(str(path))
    assert token.value() is None and token.describe() == f"no token ({path} is missing or empty)"
    path.write_text(TOKEN + "\n")
    assert token.value() == TOKEN and token.describe() == f"the token in {path}"
    # A mounted Secret is updated by swapping the file under it.
    replacement = tmp_path / "token.new"
    replacement.write_text("e" * 64)
    os.replace(replacement, path)
    assert token.value() == "e" * 64
    path.write_text("  \n")
    assert token.value() is None
    assert RayToken().value() is None and RayToken().describe() == "no token"


def test_headers_carry_the_token_as_ray_expects():
    from ray._private.authentication import authentication_constants as ray_auth

    assert auth_headers(None) == {} and auth_headers("") == {}
    ((name, value),) = auth_headers(TOKEN).items()
    assert name.lower() == ray_auth.AUTHORIZATION_HEADER_NAME and value == ray_auth.AUTHORIZATION_BEARER_PREFIX + TOKEN


@pytest.mark.parametrize(("status", "wrong_token"), [(401, False), (403, True)])
def test_ray_refusals_become_ray_unauthorized_naming_the_address_and_the_fix(tmp_path, status, wrong_token):
    from ray._private.authentication.http_token_authentication import format_authentication_http_error
    from ray.exceptions import AuthenticationError

    path = tmp_path / "token"
    if wrong_token:
        path.write_text(TOKEN)
    access = RayAccess("http://head.ray:8265", RayToken(str(path)))
    with pytest.raises(RayUnauthorized) as caught, access.errors():
        raise AuthenticationError(format_authentication_http_error(status, "Unauthorized"))
    message = str(caught.value)
    assert caught.value.reason == Reason.RAY_UNAUTHORIZED and "http://head.ray:8265" in message
    assert "executor.ray.authTokenSecret" in message and "--ray-auth-token-file" in message
    assert ("not this cluster's token" in message) == wrong_token
    assert TOKEN not in message


def test_a_closed_port_is_ray_unreachable_for_rays_client_and_for_plain_calls():
    from ray.job_submission import JobSubmissionClient

    access = RayAccess(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(RayUnreachable) as caught, access.errors():
        JobSubmissionClient(access.address)
    assert access.address in str(caught.value) and "Connection refused" in str(caught.value)
    assert "--ray-address" in str(caught.value)
    with pytest.raises(RayUnreachable):
        access.request("GET", "/api/serve/applications/", timeout=5)
    with pytest.raises(KeyError), access.errors():  # anything else passes through
        raise KeyError("x")


def test_the_executor_reports_an_unreachable_cluster_to_readiness_and_the_metric():
    from prometheus_client import REGISTRY

    from botfleet_operator.executors import RayExecutor

    address = f"http://127.0.0.1:{free_port()}"
    health = ExecutorHealth("ray")
    executor = RayExecutor(Settings(executor="ray", ray_address=address), lambda *a: None, {}, health)
    server = serve_readiness(free_port(), "127.0.0.1", health)
    url = f"http://127.0.0.1:{server.server_address[1]}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            assert r.status == 200
        with pytest.raises(RayUnreachable):
            executor.observe(body(), "botfleet-ns-alice-g1")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=5)
        assert refused.value.code == 503 and "RayUnreachable" in refused.value.read().decode()
        assert REGISTRY.get_sample_value("botfleet_executor_up", {"executor": "ray"}) == 0
        health.answered()
        with urllib.request.urlopen(url, timeout=5) as r:
            assert r.status == 200
        assert REGISTRY.get_sample_value("botfleet_executor_up", {"executor": "ray"}) == 1
        assert health.up_since is not None
    finally:
        server.shutdown()


def rayjob_for(settings: Settings) -> dict:
    doc = body()
    return render.render_rayjob(doc, render.resolve_spec(doc, settings), settings)


def test_rayjob_clusters_are_locked_unless_the_platform_opts_out():
    cluster = rayjob_for(Settings())["spec"]["rayClusterSpec"]
    assert cluster["authOptions"] == {"mode": "token"}  # KubeRay makes a random token per cluster
    named = rayjob_for(Settings(job_ray_auth_secret="ray-token"))["spec"]["rayClusterSpec"]
    assert named["authOptions"] == {"mode": "token", "secretName": "ray-token"}
    assert "authOptions" not in rayjob_for(Settings(job_ray_auth="disabled"))["spec"]["rayClusterSpec"]
    with pytest.raises(ValueError, match="job_ray_auth"):
        Settings(job_ray_auth="open")


def test_the_token_file_and_the_retry_cap_are_settings(tmp_path):
    settings = Settings.from_argv(["--ray-auth-token-file", str(tmp_path / "token")])
    assert settings.ray_auth_token_file == str(tmp_path / "token")
    with pytest.raises(ValueError, match="retry_max_interval"):
        Settings(retry_max_interval=0)
