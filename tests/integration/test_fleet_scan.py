"""botfleet.fleet: the bots under an output URI and their state from their files, on the real
S3 server and on a local folder alike."""

from __future__ import annotations

import pytest

from botfleet import fleet
from botfleet.artifacts import Progress, Result, Stats
from botfleet.layout import Layout
from botfleet.storage import Storage, file_uri


def _write_fleet(storage: Storage, output: str) -> None:
    """Four bots in four states, a folder that is no bot, and a stray object beside them."""
    done, failed, training, prepared = (Layout(f"{output}/{name}") for name in ("done", "failed", "training", "ready"))
    storage.write_json(done.result, Result("succeeded", model=done.model).to_dict())
    storage.write_text(done.model_config, "{}")
    storage.write_json(failed.result, Result.failed("training", "boom", "TrainingFailed").to_dict())
    storage.write_json(training.progress, Progress(status="training", step=3, total_steps=9).to_dict())
    storage.write_json(prepared.stats, {"model_id": "ready", "handles": {}})
    storage.write_text(f"{output}/not-a-bot/notes.txt", "hello")
    storage.write_text(f"{output}/stray.txt", "not a folder")


def _check(found: list[fleet.BotFolder]) -> None:
    states = {bot.model_id: bot.state for bot in found}
    assert states == {"done": "succeeded", "failed": "failed", "training": "training", "ready": "preparing"}
    assert [bot.model_id for bot in found] == sorted(states)
    done = next(bot for bot in found if bot.model_id == "done")
    assert done.finished and done.result.model == done.layout.model
    assert next(bot for bot in found if bot.model_id == "training").progress.step == 3


def test_scan_on_s3(storage):
    _write_fleet(storage, storage.uri("bots"))
    _check(fleet.scan_fleet(storage, storage.uri("bots")))
    assert storage.folders(storage.uri("bots", "done")) == [storage.uri("bots", "done", "model")]
    assert fleet.scan_fleet(storage, storage.uri("nothing-here")) == []


def test_scan_on_a_local_folder(tmp_path):
    storage = Storage()
    output = file_uri(tmp_path / "bots")
    _write_fleet(storage, output)
    _check(fleet.scan_fleet(storage, output))
    assert fleet.scan_fleet(storage, file_uri(tmp_path / "missing")) == []


def test_a_half_written_file_is_no_file(tmp_path):
    storage = Storage()
    layout = Layout(file_uri(tmp_path / "bots" / "cut"))
    storage.write_text(layout.result, '{"status": "succ')
    storage.write_json(layout.progress, {"status": "saving", "step": 9})
    (bot,) = fleet.scan_fleet(storage, file_uri(tmp_path / "bots"))
    assert bot.state == "training" and bot.result is None


@pytest.mark.parametrize(
    "result, progress, stats, state",
    [
        (None, None, None, "pending"),
        (None, None, {}, "preparing"),
        (None, {"status": "loading"}, {}, "training"),
        (None, {"status": "failed"}, {}, "failed"),
        ({"status": "succeeded"}, {"status": "training"}, {}, "succeeded"),
        ({"status": "failed"}, None, None, "failed"),
        ({"status": None}, {"status": "training"}, None, "training"),
    ],
)
def test_bot_state(result, progress, stats, state):
    parsed = (
        None if result is None else Result.from_dict(result),
        None if progress is None else Progress.from_dict(progress),
        None if stats is None else Stats.from_dict(stats),
    )
    assert fleet.bot_state(*parsed) == state
