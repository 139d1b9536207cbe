"""`botfleet run` end to end: posts in, a model that loads with transformers.pipeline out,
with a model card in the seeds' format. Real S3 server, real local Ray, real DeepSpeed."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from bench.synthetic import write_archive
from botfleet import api
from tests.fakes.hub_stand_in import HubStandIn

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_base_model(embedded_s3, tmp_path_factory):
    from botfleet.storage import Storage
    from botfleet_jobs.job import publish_random_base_model

    storage = Storage(embedded_s3.config)
    storage.ensure_bucket("models")
    return publish_random_base_model(storage, "tiny", "s3://models/tiny-gpt2")


def test_run_makes_a_bot_with_a_card(storage, embedded_s3, tiny_base_model, tmp_path):
    hub = HubStandIn({"hf-run-token": {"org"}}).start()  # the Hub's stand-in: the bot is published there
    archive = write_archive(tmp_path / "alice.zip", 300, seed=3)
    request = {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": "alice"},
        "spec": {
            "handles": [
                {"handle": "Alice", "displayName": "Alice A.", "source": {"archive": {"uri": f"file://{archive}"}}}
            ],
            "training": {
                "baseModel": tiny_base_model,
                "epochs": 2,
                "blockSize": 64,
                "batchSizePerWorker": 4,
                "precision": "fp32",
                "learningRate": 0.002,
            },
            "tracking": {"wandb": {"mode": "offline"}},
            "output": {"uri": storage.root},
            "publish": {
                "huggingFace": {"repo": "org/alice", "tokenSecretRef": {"name": "hf", "key": "t"}, "endpoint": hub.url}
            },
        },
    }
    path = tmp_path / "alice.yaml"
    path.write_text(yaml.safe_dump(request))
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "botfleet.cli", "run", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **embedded_s3.config.to_env(), "HF_TOKEN": "hf-run-token", "HF_HUB_OFFLINE": "0"},
    )
    hub.stop()
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"model: {storage.root}/alice/model/" in done.stdout and "'My dream is' ->" in done.stdout
    # The terminal shows botfleet's progress (counts, one bar with loss and ETA), not Ray's
    # worker lines: those are in the full log, which outlives the run.
    terminal = done.stdout + done.stderr
    assert "Tweets kept" in terminal and "dataset: " in terminal
    assert "training: 100%|" in terminal and "steps, loss " in terminal and ", ETA " in terminal
    assert "pid=" not in terminal and "RayTrainWorker" not in terminal, terminal[-3000:]
    full_log = storage.read_text(result_log := storage.read_json(f"{storage.root}/alice/result.json")["log"])
    assert result_log.startswith(f"{storage.root}/alice/logs/job-") and f"full log at {result_log}" in terminal
    assert "(RayTrainWorker pid=" in full_log

    result = storage.read_json(f"{storage.root}/alice/result.json")
    assert result["status"] == "succeeded"
    # The offline W&B runs are kept with the outputs, and the CLI says where.
    assert result["tracking_files"] == f"{storage.root}/alice/tracking/" and result["tracking_run_url"] is None
    assert f"W&B offline runs: {result['tracking_files']}" in done.stdout
    run_logs = [
        uri for uri in storage.list(result["tracking_files"]) if "/wandb/offline-run-" in uri and uri.endswith(".wandb")
    ]
    assert len(run_logs) == 2  # the preprocess run and the train run
    # The copy is complete: the train run's log ends with the model artifact and the samples
    # (W&B writes it after finish() returns; an early copy held just the file's header).
    assert any(
        b"finetuned-model" in storage.read_bytes(uri) and b"predictions" in storage.read_bytes(uri) for uri in run_logs
    )
    assert result["metrics"]["valid_loss_after"] < result["metrics"]["valid_loss_before"]
    # The request gave no worker shape: one worker, with a GPU only if this machine has one.
    import torch

    used = storage.read_json(f"{storage.root}/alice/model/training.json")["hyperparameters"]
    assert (used["workers"], used["gpus_per_worker"]) == (1, 1 if torch.cuda.is_available() else 0)

    from huggingface_hub import ModelCard

    card_text = storage.read_text(f"{storage.root}/alice/model/README.md")
    card = ModelCard(card_text)
    assert card.data.language == "en" and "huggingtweets" in card.data.tags
    assert card.data.widget[0]["text"] == "My dream is"
    assert "AI BOT" in card_text and "| Tweets kept |" in card_text and "wandb.ai" not in card_text
    assert storage.exists(f"{storage.root}/alice/model/predictions.png")
    # The parrot check ran (training.json, the card); the bot went to the Hub in one commit.
    parrot = storage.read_json(f"{storage.root}/alice/model/training.json")["parrot"]
    assert parrot["samples"] == 32 and "- Parrot check: " in card_text
    commit = hub.repos["org/alice"].commits[0]
    assert f"hub: {hub.url}/org/alice (commit {commit.oid})" in done.stdout
    assert commit.files["model.safetensors"] == storage.read_bytes(f"{storage.root}/alice/model/model.safetensors")
    assert "hf-run-token" not in done.stdout + done.stderr

    # Exactly as the card's snippet says: the folder, copied as ./alice, loads by that name.
    snippet = card_text.split("```python\n", 1)[1].split("```", 1)[0]
    assert "model='alice'" in snippet
    code = snippet.replace(
        'generator("My dream is", num_return_sequences=5)',
        'out = generator("My dream is", num_return_sequences=5)\nprint(json.dumps(out))',
    )
    shown = subprocess.run(
        [sys.executable, "-c", "import json\n" + code],
        cwd=out,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    generations = json.loads(shown.stdout.strip().splitlines()[-1])
    assert len(generations) == 5 and all(g["generated_text"].startswith("My dream is") for g in generations)


def test_run_fails_cleanly_on_an_unknown_base_model(storage, embedded_s3, tmp_path):
    archive = write_archive(tmp_path / "bob.zip", 300, seed=4)
    request = {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": "bob"},
        "spec": {
            "handles": [{"handle": "bob", "source": {"archive": {"uri": f"file://{archive}"}}}],
            "training": {"baseModel": "s3://models/does-not-exist", "gpusPerWorker": 0},
            "tracking": {"wandb": {"mode": "disabled"}},
            "output": {"uri": storage.root},
        },
    }
    path = tmp_path / "bob.yaml"
    path.write_text(yaml.safe_dump(request))
    done = subprocess.run(
        [sys.executable, "-m", "botfleet.cli", "run", str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **embedded_s3.config.to_env()},
    )
    assert done.returncode == 2  # the request's base model: the user's to fix
    assert "does-not-exist" in done.stderr.splitlines()[-1]
    result = storage.read_json(f"{storage.root}/bob/result.json")
    assert result["status"] == "failed"
    # The error line says where the full log is, and the log is there, with the traceback.
    assert done.stderr.splitlines()[-1].endswith(f"(full log: {result['log']})")
    assert "Traceback" in storage.read_text(result["log"]) and "Traceback" not in done.stderr
    assert storage.exists(f"{storage.root}/bob/data/stats.json")  # the finished data stage is kept
