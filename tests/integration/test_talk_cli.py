"""`botfleet generate` on every kind of TARGET (a local folder, file://, s3:// on the real S3
server, a BotRequest file) and `botfleet serve` as a user runs it: started, asked, stopped
with Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import requests
import yaml

from botfleet import cli
from botfleet.artifacts import Progress
from botfleet.layout import Layout
from botfleet.storage import Storage, file_uri
from tests.fixtures.bots import publish_bot
from tests.fixtures.cluster import free_port
from tests.fixtures.training import REPO

PROMPT = "My dream is"


def _generate(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["generate", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def local_bots(tmp_path, bot_model_dir):
    output = file_uri(tmp_path / "bots")
    publish_bot(Storage(), output, "alice", bot_model_dir)
    Storage().write_json(Layout(f"{output}/busy").progress, Progress(status="training").to_dict())
    return tmp_path / "bots", output


def test_generate_on_local_folders(capsys, local_bots):
    folder, output = local_bots
    code, out, _ = _generate(
        capsys, str(folder / "alice"), PROMPT, "-n", "2", "--max-new-tokens", "5", "--seed", "1", "--json"
    )
    assert code == 0
    result = json.loads(out)
    assert result["model"] == "alice" and result["prompt"] == PROMPT and len(result["generations"]) == 2
    assert all(text.startswith(PROMPT) and len(text) > len(PROMPT) for text in result["generations"])
    code, again, _ = _generate(
        capsys, f"{output}/alice/model", PROMPT, "-n", "2", "--max-new-tokens", "5", "--seed", "1", "--json"
    )
    assert code == 0 and json.loads(again)["generations"] == result["generations"]
    code, plain, _ = _generate(capsys, f"{output}/alice", PROMPT, "--max-new-tokens", "3")
    assert code == 0 and plain.startswith(PROMPT)


def test_generate_errors_are_one_line(capsys, local_bots):
    folder, output = local_bots
    code, _, err = _generate(capsys, f"{output}/busy", PROMPT)
    assert code == 2 and "the bot busy has no model yet (it is training)" in err
    code, _, err = _generate(capsys, str(folder / "alice"), PROMPT, "--temperature", "9")
    assert code == 2 and "--temperature" in err and "between 0 and 2" in err
    code, _, err = _generate(capsys, str(folder / "alice"), "word " * 300)
    assert code == 2 and "context is 256" in err
    assert len(err.strip().splitlines()) == 1


def test_generate_from_the_store_and_from_a_request(capsys, monkeypatch, storage, embedded_s3, bot_model_dir, tmp_path):
    for name, value in embedded_s3.config.to_env().items():
        monkeypatch.setenv(name, value)
    publish_bot(storage, storage.uri("bots"), "dril", bot_model_dir)
    code, out, _ = _generate(capsys, storage.uri("bots", "dril"), PROMPT, "--max-new-tokens", "4", "--json")
    assert code == 0 and json.loads(out)["model"] == "dril"
    request = {
        "apiVersion": "botfleet.dev/v1alpha1",
        "kind": "BotRequest",
        "metadata": {"name": "dril"},
        "spec": {
            "handles": [{"handle": "dril", "source": {"dataset": {"uri": storage.uri("in", "dril.jsonl")}}}],
            "output": {"uri": storage.uri("bots")},
        },
    }
    path = tmp_path / "dril.yaml"
    path.write_text(yaml.safe_dump(request))
    code, out, _ = _generate(capsys, str(path), PROMPT, "--max-new-tokens", "4", "--json")
    assert code == 0 and json.loads(out)["generations"][0].startswith(PROMPT)


@pytest.mark.slow
def test_serve_until_ctrl_c(local_bots):
    _, output = local_bots
    port = free_port()
    paths = os.pathsep.join(os.path.join(REPO, part) for part in ("core", "jobs", "serving", ""))
    env = {**os.environ, "PYTHONPATH": paths, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "botfleet.cli", "serve", "--port", str(port), "--output", output]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        lines = []
        while not any(line.startswith("try:") for line in lines):
            line = proc.stdout.readline()
            assert line, f"botfleet serve ended: {lines}"
            lines.append(line)
        assert f"http://127.0.0.1:{port}/v1" in lines[0]
        assert "  alice: ready\n" in lines and "  busy: training\n" in lines
        url = f"http://127.0.0.1:{port}"
        assert [m["id"] for m in requests.get(url + "/v1/models", timeout=120).json()["data"]] == ["alice", "busy"]
        body = {"model": "alice", "prompt": PROMPT, "max_tokens": 3}
        assert requests.post(url + "/v1/completions", json=body, timeout=300).status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 0
        with pytest.raises(requests.ConnectionError):
            requests.get(url + "/v1/models", timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_refuses_a_bad_output_before_starting(capsys):
    assert cli.main(["serve", "--output", "bots/"]) == 2
    assert "missing URI scheme" in capsys.readouterr().err
