"""`botfleet run` then `botfleet refresh` end to end: nothing new trains nothing; new posts
make version 2, trained from version 1 (refresh.from: previous), which is kept under
versions/. Real S3 server, real local Ray, real DeepSpeed."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from botfleet import api
from botfleet.artifacts import History
from botfleet.layout import Layout, folder
from tests.fixtures.posts import posts_jsonl
from tests.fixtures.training import upload_tiny_model

pytestmark = pytest.mark.slow


def botfleet(command: str, path, embedded_s3, tmp_path) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "botfleet.cli", command, str(path), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **embedded_s3.config.to_env()},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_refresh_trains_a_new_version_only_on_new_posts(storage, embedded_s3, tiny_model_dir, tmp_path):
    source = storage.uri("inputs", "alice.jsonl")
    storage.write_bytes(source, posts_jsonl("old"))
    request = {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": "alice"},
        "spec": {
            "handles": [{"handle": "alice", "source": {"dataset": {"uri": source}}}],
            "training": {
                "baseModel": upload_tiny_model(storage, tiny_model_dir),
                "epochs": 1,
                "blockSize": 64,
                "batchSizePerWorker": 4,
                "precision": "fp32",
                "gpusPerWorker": 0,
            },
            "tracking": {"wandb": {"mode": "disabled"}},
            "output": {"uri": storage.uri("bots")},
            "refresh": {"from": "previous"},
        },
    }
    path = tmp_path / "alice.yaml"
    path.write_text(yaml.safe_dump(request))
    layout = Layout(api.parse_request(request).spec.model_uri)
    botfleet("run", path, embedded_s3, tmp_path)
    first = storage.read_json(layout.training)

    done = botfleet("refresh", path, embedded_s3, tmp_path)
    assert "nothing new since version 1: nothing trained" in done.stdout
    assert storage.read_json(layout.training) == first
    assert storage.read_json(layout.result)["new_posts"] == 0

    storage.write_bytes(source, posts_jsonl("new", 40) + posts_jsonl("old"))
    done = botfleet("refresh", path, embedded_s3, tmp_path)
    assert "+40 new posts: version 2" in done.stdout
    second = storage.read_json(layout.training)
    assert second["base_model"] == layout.version(1)  # continued from version 1
    assert storage.read_json(f"{layout.version(1)}/training.json") == first
    history = History.from_dict(storage.read_json(layout.history))
    assert [(v.version, v.new_posts, v.archived) for v in history.versions] == [
        (1, None, folder(layout.version(1))),
        (2, 40, None),
    ]
    assert history.latest.perplexity == second["perplexity_after"]
    result = storage.read_json(layout.result)
    assert (result["version"], result["new_posts"]) == (2, 40)
    assert json.loads((tmp_path / "out" / "alice" / "training.json").read_text())["base_model"] == layout.version(1)
