"""botfleet.model_target: a request YAML, an s3:// or file:// folder, or a local folder, to
the saved model's files (on local folders: the store is the same code for s3://)."""

from __future__ import annotations

import pytest
import yaml

from botfleet.artifacts import Progress, Result
from botfleet.errors import UserError
from botfleet.layout import Layout
from botfleet.model_target import ModelTarget, resolve_target, target_place
from botfleet.storage import Storage, file_uri


@pytest.fixture
def bots(tmp_path):
    """A finished bot, a failed one and one in training under ``tmp_path/bots``."""
    storage = Storage()
    out = file_uri(tmp_path / "bots")
    done = Layout(f"{out}/done")
    storage.write_text(done.model_config, "{}")
    storage.write_json(done.result, Result("succeeded", model=done.model).to_dict())
    storage.write_json(Layout(f"{out}/failed").result, Result.failed("training", "out of memory", "x").to_dict())
    storage.write_json(Layout(f"{out}/busy").progress, Progress(status="training").to_dict())
    return storage, out


def test_folders_in_every_form(bots, tmp_path):
    storage, out = bots
    expected = ModelTarget("done", f"{out}/done/model")
    assert resolve_target(f"{out}/done", storage) == expected
    assert resolve_target(f"{out}/done/", storage) == expected
    assert resolve_target(f"{out}/done/model", storage) == expected
    assert resolve_target(str(tmp_path / "bots" / "done"), storage) == expected
    assert resolve_target(str(tmp_path / "bots" / "done" / "model"), storage) == expected


def test_a_request_names_its_bot(bots, tmp_path):
    storage, out = bots
    request = {
        "apiVersion": "botfleet.dev/v1alpha1",
        "kind": "BotRequest",
        "metadata": {"name": "done"},
        "spec": {
            "handles": [{"handle": "Done", "source": {"dataset": {"uri": "s3://inputs/d.jsonl"}}}],
            "output": {"uri": out},
        },
    }
    path = tmp_path / "request.yaml"
    path.write_text(yaml.safe_dump(request))
    assert target_place(str(path)).model_id == "done"
    assert resolve_target(str(path), storage) == ModelTarget("done", f"{out}/done/model")


def test_no_model_says_why(bots, tmp_path):
    storage, out = bots
    with pytest.raises(UserError, match="the bot failed has no model yet \\(out of memory\\)"):
        resolve_target(f"{out}/failed", storage)
    with pytest.raises(UserError, match="no model yet \\(it is training\\)"):
        resolve_target(f"{out}/busy", storage)
    with pytest.raises(UserError, match="no saved model"):
        resolve_target(out, storage)
    with pytest.raises(UserError, match="not a BotRequest file"):
        resolve_target(str(tmp_path / "missing"), storage)
