"""The fleet's Ray Serve application on a real local Ray (CPU), bots in the real S3 server:
the OpenAI client as one client, switching bots and LRU eviction per replica, every error
case, streaming, concurrent requests, a bot appearing while serving, and a catalog.

One Ray and one Serve for the module: two applications on it (the fleet under an output
URI at /, a catalog's bots at /catalog).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import requests

from botfleet.artifacts import Progress
from botfleet.layout import Layout
from botfleet.storage import Storage
from tests.fixtures.bots import publish_bot
from tests.fixtures.cluster import free_port
from tests.fixtures.training import REPO, ray_env_paths

pytestmark = pytest.mark.slow

READY_BOTS = ("alice", "bob", "carol")
LIMITS = {"max_tokens": 32, "max_n": 3, "max_prompt_chars": 2000}


class Fleet:
    """The served fleet: its store, output URI, base URL and the Serve handle of its generator."""

    def __init__(self, storage: Storage, output: str, url: str, model_folder: str) -> None:
        self.storage, self.output, self.url, self.model_folder = storage, output, url, model_folder

    def post(self, body, path: str = "/v1/completions", **kwargs) -> requests.Response:
        return requests.post(self.url + path, json=body, timeout=300, **kwargs)

    def loaded(self, app: str = "botfleet") -> list[str]:
        from ray import serve

        return serve.get_deployment_handle("Generator", app_name=app).loaded_models.remote().result()


def _write_fleet(storage: Storage, output: str, model_folder: str) -> None:
    """Three finished bots; one whose config is corrupt, one whose files are gone, one in training."""
    for model_id in READY_BOTS:
        publish_bot(storage, output, model_id, model_folder)
    publish_bot(storage, output, "broken", model_folder)
    storage.write_text(Layout(f"{output}/broken").model_config, "{not json")
    publish_bot(storage, output, "gone", model_folder)
    storage.delete_prefix(Layout(f"{output}/gone").model)
    storage.write_json(Layout(f"{output}/busy").progress, Progress(status="training", step=1).to_dict())


@pytest.fixture(scope="module")
def fleet(embedded_s3, bot_model_dir):
    import ray
    from ray import serve

    from botfleet_serving.app import build_app

    storage = Storage(embedded_s3.config)
    bucket = f"serving-{os.getpid()}"
    storage.ensure_bucket(bucket)
    output = f"s3://{bucket}/bots"
    _write_fleet(storage, output, bot_model_dir)
    storage.write_json(f"s3://{bucket}/catalog.json", {"bots": {"team/alice": f"{output}/alice"}})

    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="bfserve-", dir="/tmp")  # short: Ray's socket paths
    paths = os.pathsep.join([ray_env_paths(), os.path.join(REPO, "serving"), os.path.join(REPO, "web")])  # + the page
    env = {**embedded_s3.config.to_env(), "PYTHONPATH": paths}
    ray.init(
        num_cpus=2, include_dashboard=False, _temp_dir=temp_dir, runtime_env={"env_vars": env}, configure_logging=False
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        common = {**LIMITS, "max_replicas": 1, "replica_cpus": 0.5, "refresh_s": 1}
        serve.run(build_app({"output": output, "models_per_replica": 2, **common}), name="botfleet", blocking=False)
        catalog = {"catalog": f"s3://{bucket}/catalog.json", "max_generation_s": 0.001, **common}
        catalog |= {"max_ongoing_requests": 1, "max_queued_requests": 1}  # one at a time, one waiting
        serve.run(build_app(catalog), name="catalog", route_prefix="/catalog", blocking=False)
        yield Fleet(storage, output, f"http://127.0.0.1:{port}", bot_model_dir)
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def client(fleet):
    return openai.OpenAI(base_url=fleet.url + "/v1", api_key="unused", max_retries=0)


def test_models_with_their_state(fleet, client):
    states = {m["id"]: m["state"] for m in requests.get(fleet.url + "/v1/models", timeout=60).json()["data"]}
    assert states == {"alice": "ready", "bob": "ready", "carol": "ready", "broken": "ready", "gone": "ready"} | {
        "busy": "training"
    }
    assert sorted(m.id for m in client.models.list()) == sorted(states)
    assert client.models.retrieve("alice").state == "ready"
    assert _error(requests.get(fleet.url + "/v1/models/nobody", timeout=60), 404)["param"] == "model"


def test_the_openai_client_talks_to_a_bot(client):
    first = client.completions.create(model="alice", prompt="My dream is", max_tokens=6, n=2, seed=7)
    assert first.object == "text_completion" and first.model == "alice" and len(first.choices) == 2
    assert all(choice.text and not choice.text.startswith("My dream is") for choice in first.choices)
    assert first.usage.completion_tokens > 0 and first.usage.prompt_tokens == 3
    again = client.completions.create(model="alice", prompt="My dream is", max_tokens=6, n=2, seed=7)
    assert [c.text for c in again.choices] == [c.text for c in first.choices]  # the seed makes it again
    greedy = client.completions.create(model="alice", prompt="My dream is", max_tokens=4, temperature=0)
    assert greedy.choices[0].finish_reason in ("length", "stop")


def test_switching_bots_keeps_the_most_recent_per_replica(fleet):
    for model_id in READY_BOTS:
        response = fleet.post({"model": model_id, "prompt": "hello", "max_tokens": 2})
        assert response.status_code == 200 and response.json()["model"] == model_id
    assert fleet.loaded() == ["bob", "carol"]  # two per replica: alice, the least recent, went
    assert fleet.post({"model": "alice", "prompt": "hello", "max_tokens": 2}).status_code == 200
    assert fleet.loaded() == ["carol", "alice"]


def _error(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_errors_in_openais_shape(fleet, client):
    unknown = _error(fleet.post({"model": "nobody", "prompt": "hi"}), 404)
    assert "alice" in unknown["message"] and unknown["param"] == "model"
    with pytest.raises(openai.NotFoundError, match="nobody"):
        client.completions.create(model="nobody", prompt="hi")
    assert _error(fleet.post({"model": "alice"}), 400)["param"] == "prompt"
    assert _error(fleet.post({"model": "alice", "prompt": "hi", "max_tokens": 33}), 400)["param"] == "max_tokens"
    assert _error(fleet.post({"model": "alice", "prompt": "hi", "n": 4}), 400)["param"] == "n"
    assert _error(fleet.post({"model": "alice", "prompt": "x" * 2001}), 400)["param"] == "prompt"
    context = _error(fleet.post({"model": "alice", "prompt": "word " * 300}), 400)  # over 256 tokens
    assert context["param"] == "prompt" and context["code"] == "context_length_exceeded"
    assert _error(fleet.post(None, data=b"{not json", headers={"Content-Type": "application/json"}), 400)
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.completions.create(model="alice", prompt="hi", max_tokens=1000)


def test_a_broken_bot_is_503_while_the_others_serve(fleet):
    broken = fleet.post({"model": "broken", "prompt": "hi", "max_tokens": 2})
    assert "could not be loaded" in _error(broken, 503)["message"] and broken.headers["Retry-After"]
    assert "model files are missing" in _error(fleet.post({"model": "gone", "prompt": "hi"}), 503)["message"]
    assert "not finished yet (training)" in _error(fleet.post({"model": "busy", "prompt": "hi"}), 503)["message"]
    assert fleet.post({"model": "bob", "prompt": "hi", "max_tokens": 2}).status_code == 200
    states = {m["id"]: m for m in requests.get(fleet.url + "/v1/models", timeout=60).json()["data"]}
    assert states["broken"]["state"] == "unavailable" and "could not be loaded" in states["broken"]["reason"]
    assert states["bob"]["state"] == "ready"


def test_streaming(client, fleet):
    chunks = list(client.completions.create(model="bob", prompt="My dream is", max_tokens=5, stream=True, seed=3))
    text = "".join(chunk.choices[0].text for chunk in chunks)
    assert text and chunks[-1].choices[0].finish_reason in ("length", "stop")
    assert {chunk.choices[0].index for chunk in chunks} == {0}
    two = list(client.completions.create(model="bob", prompt="My dream is", max_tokens=3, n=2, stream=True))
    assert {chunk.choices[0].index for chunk in two} == {0, 1}
    refused = fleet.post({"model": "broken", "prompt": "hi", "stream": True})
    assert refused.status_code == 503  # a refusal is an error, not an empty stream


def test_concurrent_requests(fleet):
    bodies = [{"model": READY_BOTS[i % 2], "prompt": f"request {i}", "max_tokens": 3, "n": 2} for i in range(12)]
    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(fleet.post, bodies))
    assert [r.status_code for r in responses] == [200] * 12
    assert all(len(r.json()["choices"]) == 2 for r in responses)
    assert [r.json()["model"] for r in responses] == [b["model"] for b in bodies]


def test_a_bot_that_finishes_is_served_without_a_restart(fleet):
    publish_bot(fleet.storage, fleet.output, "dave", fleet.model_folder)
    deadline = time.monotonic() + 60
    while (response := fleet.post({"model": "dave", "prompt": "hi", "max_tokens": 2})).status_code == 404:
        assert time.monotonic() < deadline, response.text
        time.sleep(0.5)
    assert response.status_code == 200, response.text


def test_a_catalog_serves_exactly_its_bots_with_bounded_generation(fleet):
    models = requests.get(fleet.url + "/catalog/v1/models", timeout=60).json()["data"]
    assert [(m["id"], m["state"]) for m in models] == [("team/alice", "ready")]
    body = {"model": "team/alice", "prompt": "My dream is", "max_tokens": 32}
    response = requests.post(fleet.url + "/catalog/v1/completions", json=body, timeout=300)
    assert response.status_code == 200, response.text
    # max_generation_s is 1 ms: generation stops long before 32 tokens.
    assert response.json()["usage"]["completion_tokens"] < 32
    assert response.json()["choices"][0]["finish_reason"] == "length"
    assert _error(requests.post(fleet.url + "/catalog/v1/completions", json={**body, "model": "bob"}, timeout=60), 404)


def test_load_beyond_the_queue_is_refused_not_crashed(fleet):
    """The catalog's app takes one request at a time with one waiting: the rest of a burst
    are 503 "busy" with Retry-After, and the server answers again after."""
    url, body = fleet.url + "/catalog/v1/completions", {"model": "team/alice", "prompt": "hi", "max_tokens": 8}
    start = threading.Barrier(12)

    def burst(_) -> requests.Response:
        start.wait()
        return requests.post(url, json=body, timeout=300)

    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(burst, range(12)))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) == {200, 503}, statuses
    busy = [r for r in responses if r.status_code == 503]
    assert all(_error(r, 503)["code"] == "overloaded" and r.headers["Retry-After"] for r in busy)
    assert requests.post(url, json=body, timeout=300).status_code == 200
