"""Publishing to the Hub with the real ``huggingface_hub`` client, against the Hub's local
stand-in (tests/fakes/hub_stand_in.py) and a real S3 server: the job's publish, the
operator's status and its retry after a failed publish (no training again), and the
token's handling. The reconciler harness is test_reconciler.py's.
"""

from __future__ import annotations

import json
import logging

import pytest

from botfleet import api
from botfleet.layout import Layout
from botfleet.secrets import secret_env_name
from botfleet.storage import join
from botfleet_jobs.publish import publish_if_asked
from botfleet_operator import publish_status
from botfleet_operator.queue import queue_entry
from botfleet_operator.status import is_terminal_for
from tests.fakes.hub_stand_in import HubStandIn
from tests.fixtures.reconciler_world import NAMESPACE, World, write_stats

TOKEN = "hf_writes_org_0123456789"
OTHER_ORG_TOKEN = "hf_writes_elsewhere_9876543210"
REF = {"name": "hub", "key": "token"}
# A model folder as the job leaves it (contents stand in for the real ones; bytes are bytes).
MODEL_FILES = {
    "config.json": b'{"model_type": "gpt2", "n_layer": 2}',
    "model.safetensors": bytes(range(256)) * 40,
    "tokenizer.json": b'{"version": "1.0"}',
    "generation_config.json": b'{"do_sample": true}',
    "samples.json": b'{"samples": []}',
    "predictions.png": b"\x89PNG\r\n\x1a\n" + bytes(100),
}
TRAINING = {
    "model_id": "alice",
    "base_model": "s3://models/tiny-gpt2",
    "run_name": "alice-1234",
    "perplexity_before": 900.0,
    "perplexity_after": 40.0,
    "parrot": {"samples": 32, "copying": 1, "run_tokens": 8, "longest_run": 9, "threshold": 0.25},
}


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # tests run offline otherwise
    with HubStandIn({TOKEN: {"org"}, OTHER_ORG_TOKEN: {"elsewhere"}}) as stand_in:
        yield stand_in


@pytest.fixture
def world(storage, hub) -> World:
    world = World(storage)
    world.secrets = {}
    world.reconciler.read_secret = lambda namespace, name, key: world.secrets.get((namespace, name, key))
    return world


def publishing_request(world: World, hub: HubStandIn, name: str = "alice") -> dict:
    body = world.create(name)
    body["spec"]["publish"] = {"huggingFace": {"repo": "org/alice", "tokenSecretRef": REF, "endpoint": hub.url}}
    return body


def train_as_the_job(world: World, name: str) -> api.BotSpec:
    """What a job's training leaves in the store: dataset counts, the model folder and its
    card, result.json succeeded, and (as the job writes first) request.json."""
    spec = api.parse_spec(world.requests[name]["spec"])
    layout = world.layout(name)
    write_stats(world, name)
    world.storage.write_json(layout.request, api.spec_document(spec))
    for file, data in MODEL_FILES.items():
        world.storage.write_bytes(join(layout.model, file), data)
    world.storage.write_json(layout.training, TRAINING)
    world.storage.write_text(layout.card, "the store's card, thumbnail: predictions.png\n")
    world.storage.write_json(layout.result, {"status": "succeeded", "model": layout.model + "/"})
    return spec


def job_publishes(world: World, name: str, token: str | None, monkeypatch):
    spec = api.parse_spec(world.requests[name]["spec"])
    env = secret_env_name(api.SecretRef(**REF))
    if token:
        monkeypatch.setenv(env, token)
    else:
        monkeypatch.delenv(env, raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return publish_if_asked(spec, world.storage, None)


def finish_job(world: World, name: str) -> None:
    world.executor.states[world.executor.started[-1]] = "SUCCEEDED"


def outputs(world: World, name: str, events: list) -> str:
    """Everything a person or a tool can read of the request: status, events, the job's files."""
    layout = world.layout(name)
    files = [world.storage.read_text(uri) for uri in (layout.publication, layout.result)]
    return json.dumps([world.requests[name].get("status"), events, files])


def test_the_job_publishes_every_file_in_one_commit_with_a_card_that_points_at_the_hub(world, hub, monkeypatch):
    publishing_request(world, hub)
    world.reconcile("alice")
    train_as_the_job(world, "alice")

    publication = job_publishes(world, "alice", TOKEN, monkeypatch)

    assert publication.published, publication
    repo = hub.repos["org/alice"]
    assert len(repo.commits) == 1 and repo.commits[0].oid == publication.commit
    files = repo.commits[0].files
    for file, data in MODEL_FILES.items():
        assert files[file] == data, file  # byte-identical
    assert json.loads(files["training.json"]) == TRAINING
    assert set(files) == {*MODEL_FILES, "training.json", "README.md"}
    card = files["README.md"].decode()
    page = f"{hub.url}/org/alice"
    assert f"thumbnail: {page}/resolve/main/predictions.png" in card
    assert "model='org/alice'" in card
    assert f"[the final model]({page}/tree/main)" in card and f"({page}/blob/main/training.json)" in card
    assert "](s3://" not in card and "](file://" not in card  # no link a Hub reader cannot open
    assert "- Parrot check: 1 of 32 samples (3%)" in card
    # The store's own card stays as it was.
    assert world.storage.read_text(world.layout("alice").card).startswith("the store's card")
    # Every call carried the token as a Bearer header.
    assert hub.log and all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in hub.log)

    finish_job(world, "alice")
    status = world.reconcile("alice")
    assert status["phase"] == "Succeeded", status
    assert status["publish"] == {"repo": "org/alice", "url": page, "commit": publication.commit}
    published = next(c for c in status["conditions"] if c["type"] == "Published")
    assert published["status"] == "True" and published["reason"] == "Published"


@pytest.mark.parametrize(
    "job_token, reason, words",
    [
        ("hf_not_a_token_555", "HubUnauthorized", "refused the token for org/alice"),
        (OTHER_ORG_TOKEN, "HubForbidden", "may not create or write org/alice"),
        (None, "PublishFailed", "no Hub token"),
    ],
)
def test_a_failed_publish_is_a_clear_reason_and_is_retried_without_training(
    world, hub, monkeypatch, caplog, job_token, reason, words
):
    caplog.set_level(logging.DEBUG)
    publishing_request(world, hub)
    world.reconcile("alice")
    train_as_the_job(world, "alice")
    failed = job_publishes(world, "alice", job_token, monkeypatch)
    assert failed.reason == reason and words in failed.error, failed
    finish_job(world, "alice")

    # The operator has no usable token either: the request is Failed with the reason, holds
    # no training slot, and is not finished (the level loop keeps reconciling it).
    world.secrets[(NAMESPACE, REF["name"], REF["key"])] = job_token
    events = world.reconciler.reconcile(world.requests["alice"], []).events
    status = world.requests["alice"]["status"]
    assert (status["phase"], status["reason"]) == ("Failed", reason), status
    assert words in status["message"] or "no Hub token" in status["message"]
    assert "the model is safe at" in status["message"]
    assert not is_terminal_for(world.requests["alice"])
    entry = queue_entry(world.requests["alice"])
    assert not entry.active and not entry.waiting
    assert "url" not in status["publish"]
    assert any(kind == "Warning" and why == reason for kind, why, _ in events)

    # The token is fixed in the Secret: the next reconcile (once the retry is due) publishes.
    world.secrets[(NAMESPACE, REF["name"], REF["key"])] = TOKEN
    world.reconcile("alice")  # too soon after the last attempt: nothing is tried
    assert "org/alice" not in hub.repos or not hub.repos["org/alice"].commits
    monkeypatch.setattr(publish_status, "RETRY_AFTER_SECONDS", 0.0)
    events += world.reconciler.reconcile(world.requests["alice"], []).events
    status = world.requests["alice"]["status"]
    assert status["phase"] == "Succeeded", status
    assert len(hub.repos["org/alice"].commits) == 1
    assert status["publish"]["commit"] == hub.repos["org/alice"].commits[0].oid
    assert world.executor.started == [world.executor.started[0]]  # trained once: no new job

    everything = outputs(world, "alice", events) + caplog.text + json.dumps(world.patches)
    for token in (TOKEN, OTHER_ORG_TOKEN, "hf_not_a_token_555"):
        assert token not in everything


def test_the_parrot_check_refuses_for_good_and_names_what_it_found(world, hub, monkeypatch):
    publishing_request(world, hub)
    world.reconcile("alice")
    train_as_the_job(world, "alice")
    layout = world.layout("alice")
    parrot = {"samples": 32, "copying": 20, "run_tokens": 8, "longest_run": 31, "threshold": 0.25}
    world.storage.write_json(layout.training, {**TRAINING, "parrot": parrot})

    refused = job_publishes(world, "alice", TOKEN, monkeypatch)
    finish_job(world, "alice")
    status = world.reconcile("alice")

    assert (status["phase"], status["reason"]) == ("Failed", "ParrotCheckFailed")
    assert "20 of 32 samples (62%) repeat a run of 8 or more tokens" in status["message"]
    assert "spec.publish.allowParrot: true" in status["message"]
    assert refused.error in status["message"]
    assert is_terminal_for(world.requests["alice"])  # a new spec, not a retry, changes this
    assert hub.log == []


def test_a_hub_that_does_not_answer_is_hub_unreachable(world, hub, monkeypatch):
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    publishing_request(world, hub)["spec"]["publish"]["huggingFace"]["endpoint"] = f"http://127.0.0.1:{port}"
    world.reconcile("alice")
    train_as_the_job(world, "alice")

    failed = job_publishes(world, "alice", TOKEN, monkeypatch)

    assert failed.reason == "HubUnreachable", failed
    assert failed.error.startswith(f"the Hub at http://127.0.0.1:{port} did not answer (")
    assert TOKEN not in failed.error


def test_the_model_of_a_failed_run_is_never_published(world, hub):
    publishing_request(world, hub)
    world.reconcile("alice")
    train_as_the_job(world, "alice")  # a model from the run, but the job then failed
    failed = {
        "status": "failed",
        "stage": "publishing",
        "error": "tracking upload failed",
        "reason": "PublishingFailed",
    }
    world.storage.write_json(world.layout("alice").result, failed)
    world.secrets[(NAMESPACE, REF["name"], REF["key"])] = TOKEN
    world.executor.states[world.executor.started[-1]] = "FAILED"

    status = world.reconcile("alice")

    assert (status["phase"], status["reason"]) == ("Failed", "PublishingFailed")
    assert hub.log == []


# --------------------------------------------------------------------------- botfleet publish


def bot_on_disk(tmp_path, parrot: dict | None = None):
    """A bot trained with output.uri file://...: its request file and its folder as the job left it."""
    from botfleet.storage import Storage, file_uri

    document = {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": "alice"},
        "spec": {
            "handles": [{"handle": "alice", "source": {"bluesky": {}}}],
            "output": {"uri": file_uri(tmp_path / "bots")},
        },
    }
    request_file = tmp_path / "alice.yaml"
    request_file.write_text(json.dumps(document))
    spec = api.parse_request(document).spec
    layout, storage = Layout(spec.model_uri), Storage()
    storage.write_json(layout.request, api.spec_document(spec))
    for file, data in MODEL_FILES.items():
        storage.write_bytes(join(layout.model, file), data)
    storage.write_json(layout.training, {**TRAINING, **({"parrot": parrot} if parrot else {})})
    return request_file, layout


def publish_cli(capsys, *args) -> tuple[int, str, str]:
    from botfleet.cli import main

    code = main(["publish", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_botfleet_publish_takes_a_request_or_a_model_folder(hub, tmp_path, monkeypatch, capsys):
    request_file, layout = bot_on_disk(tmp_path)
    monkeypatch.setenv("HF_TOKEN", TOKEN)

    code, out, err = publish_cli(capsys, str(request_file), "--repo", "org/alice", "--endpoint", hub.url)
    assert code == 0, err
    assert out.startswith(f"published {layout.model}/ to {hub.url}/org/alice (commit ")
    code, out, err = publish_cli(capsys, layout.model, "--repo", "org/alice", "--endpoint", hub.url)  # file://
    assert code == 0, err
    local_folder = layout.model.removeprefix("file://")
    code, out, err = publish_cli(capsys, local_folder, "--repo", "org/alice", "--endpoint", hub.url)
    assert code == 0, err
    # A refresh of the same repository: a new commit each time, every file each time.
    commits = hub.repos["org/alice"].commits
    assert len(commits) == 3 and all(set(MODEL_FILES) <= set(c.files) for c in commits)
    assert "model='org/alice'" in commits[-1].files["README.md"].decode()
    assert hub.repos["org/alice"].private is False
    code, _, err = publish_cli(capsys, str(request_file), "--repo", "org/hidden", "--endpoint", hub.url, "--private")
    assert code == 0 and hub.repos["org/hidden"].private is True, err


def test_botfleet_publish_errors_are_one_line_without_the_token(hub, tmp_path, monkeypatch, capsys):
    request_file, layout = bot_on_disk(tmp_path, parrot={"samples": 32, "copying": 16, "longest_run": 20})
    monkeypatch.setenv("HF_TOKEN", "hf_wrong_token_42")

    code, _, err = publish_cli(capsys, str(request_file), "--repo", "org/alice", "--endpoint", hub.url)
    assert code == 2 and "16 of 32 samples (50%)" in err and "pass --allow-parrot" in err
    code, _, err = publish_cli(
        capsys, str(request_file), "--repo", "org/alice", "--endpoint", hub.url, "--allow-parrot"
    )
    assert code == 2 and err.startswith("botfleet: error: the Hub refused the token for org/alice")
    assert err.count("\n") == 1 and "hf_wrong_token_42" not in err

    monkeypatch.delenv("HF_TOKEN")
    code, _, err = publish_cli(capsys, str(request_file), "--repo", "org/alice")
    assert code == 2 and "set HF_TOKEN" in err
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    code, _, err = publish_cli(capsys, str(request_file), "--repo", "alice")
    assert code == 2 and "--repo: 'alice' does not match" in err
    lonely = tmp_path / "copied-model"
    lonely.mkdir()
    code, _, err = publish_cli(capsys, str(lonely), "--repo", "org/alice", "--endpoint", hub.url)
    assert code == 2 and "no saved model at" in err
    (lonely / "config.json").write_text("{}")  # a saved model, copied away from its bot folder
    code, _, err = publish_cli(capsys, str(lonely), "--repo", "org/alice", "--endpoint", hub.url)
    assert code == 2 and "no request.json beside the model folder" in err
    assert hub.repos.get("org/alice") is None or not hub.repos["org/alice"].commits
