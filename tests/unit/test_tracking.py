"""W&B tracking (offline for real, disabled as a no-op) and the predictions thumbnail."""

import json
import os
import sys
from pathlib import Path

import pytest
from PIL import Image

from botfleet.api import WandbSpec
from botfleet_jobs.thumbnail import WIDTH, render_predictions_png
from botfleet_jobs.tracking import Tracker, TrackingError, resolve_mode

SAMPLES = [
    {"prompt": "My dream is", "prediction": "My dream is to own a horse that tweets for me"},
    {"prompt": "I think that", "prediction": "I think that " + "this sentence goes on and on " * 12},
]
STATS = {
    "model_id": "dril",
    "handles": {"dril": {"downloaded": 10, "retweets": 2, "short": 3, "kept": 5, "display_name": "wint"}},
    "epochs": 4,
    "seed": 42,
}


@pytest.fixture(autouse=True)
def isolated_wandb_env(monkeypatch, tmp_path):
    # The tracker sets these process-wide; monkeypatch puts the old values back.
    for name in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))


def tiny_inputs(root: Path):
    root.mkdir()
    (root / "dril.jsonl").write_text('{"text": "hello there general kenobi"}\n')
    (root / "train.txt").write_text("<|endoftext|>hello there general kenobi<|endoftext|>")
    (root / "valid.txt").write_text("<|endoftext|>valid text<|endoftext|>")
    model = root / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "gpt2"}')
    return root / "dril.jsonl", root / "train.txt", root / "valid.txt", model


def test_mode_resolution():
    assert resolve_mode(WandbSpec(), "key") == "online"
    assert resolve_mode(WandbSpec(), None) == "offline"
    assert resolve_mode(WandbSpec(mode="offline"), "key") == "offline"
    assert resolve_mode(WandbSpec(mode="disabled"), "key") == "disabled"
    with pytest.raises(TrackingError, match="no W&B API key"):
        resolve_mode(WandbSpec(mode="online"), None)


def test_from_env_reads_the_injected_key(tmp_path):
    assert Tracker.from_env(WandbSpec(), tmp_path / "a", "dril", env={"WANDB_API_KEY": "k"}).mode == "online"
    assert Tracker.from_env(WandbSpec(), tmp_path / "b", "dril", env={}).mode == "offline"


def test_offline_tracker_end_to_end(tmp_path):
    raw, train, valid, model = tiny_inputs(tmp_path / "in")
    out = tmp_path / "out"
    tracker = Tracker(WandbSpec(), out, "dril")  # no key: offline
    assert tracker.mode == "offline"

    data_info = tracker.log_preprocess({"dril": raw}, train, valid, STATS)
    tracker.start_training({"base_model": "gpt2", "learning_rate": 1.372e-4, "epochs": 4})
    tracker.log_metrics(5, {"train/loss": 4.2})
    tracker.log_metrics(10, {"train/loss": 3.1, "eval/loss": 3.5})
    info = tracker.finish_training(model, SAMPLES)

    assert info["mode"] == "offline" and info["run_url"] is None and info["project"] == "huggingtweets"
    run_dir = Path(info["run_dir"])
    assert run_dir.parent == out / "wandb" and run_dir.name.startswith("offline-run-")
    assert run_dir.name.endswith(info["run_id"])
    assert Path(data_info["run_dir"]) != run_dir and data_info["run_id"] != info["run_id"]

    # Everything wandb wrote stays under the output folder.
    assert os.environ["WANDB_DIR"] == str(out.resolve())

    # Each run's records (history, config, artifacts) are in its .wandb file; protobuf
    # stores the strings as is, so the artifact records can be found by name and type.
    preprocess_log = (Path(data_info["run_dir"]) / f"run-{data_info['run_id']}.wandb").read_bytes()
    for text in (
        b"raw-dataset-dril",
        b"raw-dataset",
        b"train-dataset-dril",
        b"train-dataset",
        b"dril/dril.jsonl",
        b"valid.txt",
    ):
        assert text in preprocess_log
    train_log = (run_dir / f"run-{info['run_id']}.wandb").read_bytes()
    for text in (b"finetuned-model", b"config.json", b"train/loss", b"predictions", b"input_artifacts"):
        assert text in train_log

    # The predictions table, columns Input / Prediction, is a file of the run.
    tables = list((run_dir / "files" / "media" / "table").glob("predictions_*.table.json"))
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    assert table["columns"] == ["Input", "Prediction"]
    assert table["data"][0] == [SAMPLES[0]["prompt"], SAMPLES[0]["prediction"]]

    # Offline, artifact files are copied into the staging area under the output folder,
    # so the runs can be synced after the inputs are gone.
    staged = [p for p in (out / "wandb-data" / "artifacts" / "staging").iterdir()]
    assert len(staged) >= 4  # raw, train, valid, model config


def test_disabled_tracker_writes_nothing_and_never_imports_wandb(tmp_path, monkeypatch):
    raw, train, valid, model = tiny_inputs(tmp_path / "in")
    monkeypatch.setitem(sys.modules, "wandb", None)  # any `import wandb` now raises
    out = tmp_path / "out"
    tracker = Tracker(WandbSpec(mode="disabled"), out, "dril", api_key="key")
    assert tracker.log_preprocess({"dril": raw}, train, valid, STATS)["run_id"] is None
    tracker.start_training({"base_model": "gpt2"})
    tracker.log_metrics(1, {"loss": 1.0})
    info = tracker.finish_training(model, SAMPLES)
    tracker.fail()
    assert info == {"mode": "disabled", "run_url": None, "run_dir": None, "project": "huggingtweets", "run_id": None}
    assert not out.exists()
    assert "WANDB_DIR" not in os.environ


def test_predictions_png_is_a_readable_deterministic_image(tmp_path):
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    size = render_predictions_png(SAMPLES, "@dril bot: predictions", first)
    render_predictions_png(SAMPLES, "@dril bot: predictions", second)
    with Image.open(first) as image:
        assert image.format == "PNG"
        assert image.size == size
        assert image.width == WIDTH
        assert 300 < image.height < 2000
        # Something was drawn: not a blank white page.
        assert image.convert("L").getextrema()[0] < 100
    assert first.read_bytes() == second.read_bytes()
    # Long predictions wrap onto more lines, so the image grows downwards only.
    longer = render_predictions_png(SAMPLES + SAMPLES, "@dril bot: predictions", tmp_path / "c.png")
    assert longer[0] == WIDTH and longer[1] > size[1]
