"""Refresh end to end, executor ``ray``: control plane + embedded S3 + a local Ray head + the
operator + the real job. `kubectl annotate` a trained request: the operator submits the
refresh's job (BOTFLEET_REFRESH=1), which finds nothing new and trains nothing, and the
status says so. (New posts and a second version: tests/integration/test_refresh_run.py.)"""

from __future__ import annotations

import pytest

from botfleet import api
from tests.fixtures.bot_requests import manifest
from tests.fixtures.cluster import wait_for
from tests.fixtures.posts import upload_posts

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_an_annotated_request_refreshes_and_finds_nothing_new(kube, namespace, storage, ray_operator, tiny_model_uri):
    uri = upload_posts(storage, "in/pyjokes.jsonl", 180)
    text = manifest("jokes", uri, storage.uri("bots"), base_model=tiny_model_uri)
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=text)
    first = kube.wait_phase(namespace, "jokes", "Succeeded", timeout=600)
    assert first["history"][0]["version"] == 1
    training = storage.read_json(storage.uri("bots", "pyjokes", "model", "training.json"))

    kube.kubectl("annotate", "botrequest", "jokes", "-n", namespace, f"{api.REFRESH_ANNOTATION}=now")
    status = wait_for(
        lambda: (
            (s := kube.status(namespace, "jokes")).get("phase") == "Succeeded"
            and s["job"]["name"].endswith("-g1-r1")
            and s
        ),
        300,
        what="the refresh to succeed",
    )
    assert status["message"].endswith("(nothing new: version 1 stays)")
    assert status["refresh"]["lastResult"] == "nothing new: version 1 stays"
    assert storage.read_json(storage.uri("bots", "pyjokes", "model", "training.json")) == training  # not retrained
    assert [v["version"] for v in status["history"]] == [1]
