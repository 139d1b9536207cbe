"""Executor ``ray`` on a Ray head with token authentication on, as Ray 2.60 starts one by
default (a token exists: Ray turns it on by itself). Control plane + embedded S3 + the operator.

With the cluster's token the operator trains a request to Succeeded. Without it the request
says why at once (RayUnauthorized, naming the address and the fix), its events and the log
stay bounded, readiness and the metric say the executor is down; once the token is there the
request moves on by itself. test_operator_e2e.py runs the same operator against a head with
token authentication off.
"""

from __future__ import annotations

import secrets
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.fixtures.bot_requests import manifest
from tests.fixtures.posts import upload_posts
from tests.fixtures.ray_head import ray_head

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture(scope="module")
def token_head(tmp_path_factory):
    """(address, token file) of a local Ray head that requires that token."""
    temp = tmp_path_factory.mktemp("ray-auth")
    token_file = temp / "auth_token"
    token_file.write_text(secrets.token_hex(32))
    with ray_head(temp, token_file) as address:
        yield address, token_file


def start_ray_operator(start_operator, namespace, embedded_s3, address, token_file, *flags):
    return start_operator(
        "--executor",
        "ray",
        "--ray-address",
        address,
        "--ray-auth-token-file",
        str(token_file),
        "--namespaces",
        namespace,
        "--reconcile-interval",
        "0.5",
        "--job-entrypoint",
        f"{sys.executable} -m botfleet_jobs.job",
        *flags,
        env=embedded_s3.config.to_env(),
    )


def readiness(op) -> tuple[int, str]:
    url = f"http://127.0.0.1:{op.ready_port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_a_locked_head_trains_with_the_token(
    kube,
    namespace,
    storage,
    start_operator,
    embedded_s3,
    token_head,
    tiny_model_uri,
):
    address, token_file = token_head
    with pytest.raises(urllib.error.HTTPError) as locked:  # the head really is locked
        urllib.request.urlopen(address + "/api/jobs/", timeout=5)
    assert locked.value.code == 401

    op = start_ray_operator(start_operator, namespace, embedded_s3, address, token_file)
    uri = upload_posts(storage, "in/pyjokes.jsonl", 180)
    text = manifest("jokes", uri, storage.uri("bots"), base_model=tiny_model_uri)
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=text)

    status = kube.wait_phase(namespace, "jokes", "Succeeded", timeout=300)
    assert status["job"]["jobStatus"] == "SUCCEEDED" and status["metrics"]["perplexityAfter"] > 0
    assert readiness(op)[0] == 200 and 'botfleet_executor_up{executor="ray"} 1.0' in op.metrics()
    assert token_file.read_text() not in op.log()


def test_without_the_token_the_request_says_why_once_and_recovers_by_itself(
    kube, namespace, storage, start_operator, embedded_s3, token_head, tmp_path
):
    address, token_file = token_head
    operator_token = tmp_path / "ray-token"  # not there yet: as an optional Secret not yet made
    op = start_ray_operator(
        start_operator, namespace, embedded_s3, address, operator_token, "--retry-max-interval", "4"
    )
    # A source that does not exist: once the job runs on the cluster it fails at once, cheaply.
    text = manifest("ghost", storage.uri("in/nobody.jsonl"), storage.uri("bots"), handle="nobody")
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=text)

    status = kube.wait_phase(namespace, "ghost", "Pending", timeout=30, reason="RayUnauthorized")
    assert address in status["message"] and "executor.ray.authTokenSecret" in status["message"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "RayUnauthorized")
    code, why = readiness(op)
    assert code == 503 and "RayUnauthorized" in why
    assert 'botfleet_executor_up{executor="ray"} 0.0' in op.metrics()

    time.sleep(60)  # a minute of failing reconciles (every 0.5 s, were they not backed off)
    # One event per change of reason: one, or a few should the loaded head drop a connection
    # (RayUnreachable) in that minute.
    reasons = [e.reason for e in kube.events(namespace, "ghost")]
    assert reasons.count("RayUnauthorized") >= 1 and len(reasons) <= 4, reasons
    assert set(reasons) <= {"RayUnauthorized", "RayUnreachable"}, reasons
    failures = float(
        next(
            line.split()[-1]
            for line in op.metrics().splitlines()
            if line.startswith('botfleet_reconcile_errors_total{error="RayUnauthorized"}')
        )
    )
    assert 2 <= failures <= 30  # backed off to every 4 s, not 120 tries
    log = op.log()
    assert log.count("RayUnauthorized") == reasons.count("RayUnauthorized") and "Traceback" not in log

    operator_token.write_text(token_file.read_text())
    status = kube.wait_phase(namespace, "ghost", "Failed", timeout=120)
    assert status["reason"] == "SourceFailed" and "nobody.jsonl" in status["message"]
    assert readiness(op)[0] == 200 and 'botfleet_executor_up{executor="ray"} 1.0' in op.metrics()
    assert "answers again" in op.log() and token_file.read_text() not in op.log()
