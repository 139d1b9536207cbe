"""Versions on the real S3 server: the latest in model/, earlier ones copied to versions/vN/
before a training replaces model/, the newest K kept, history.json the record."""

from botfleet.artifacts import History, TrainingRecord
from botfleet.layout import Layout, folder
from botfleet_jobs.versions import archive_latest, read_history, record_version

STATS = {"handles": {"alice": {"kept": 120}}}


def train_stand_in(storage, layout, n: int) -> dict:
    """What a finished training leaves in model/ (weights stand-in, training.json last)."""
    storage.write_text(f"{layout.model}/model.safetensors", f"weights of training {n}")
    record = TrainingRecord(run_name=f"alice-run{n}", perplexity_after=50.0 - n, finished_at=f"2026-01-0{n}T00:00:00Z")
    storage.write_json(layout.training, record.to_dict())
    return record.to_dict()


def one_version(storage, layout, n: int, keep: int) -> int:
    history = archive_latest(storage, layout)
    training = train_stand_in(storage, layout, n)
    return record_version(storage, layout, history, training, STATS, keep).version


def test_versions_are_kept_and_pruned(storage):
    layout = Layout(storage.uri("bots", "alice"))
    assert [one_version(storage, layout, n, keep=2) for n in range(1, 6)] == [1, 2, 3, 4, 5]
    history = read_history(storage, layout)
    assert [v.version for v in history.versions] == [1, 2, 3, 4, 5]
    assert [v.archived for v in history.versions] == [
        None,
        None,
        folder(layout.version(3)),
        folder(layout.version(4)),
        None,
    ]
    assert storage.read_text(f"{layout.model}/model.safetensors") == "weights of training 5"
    assert storage.read_text(f"{layout.version(4)}/model.safetensors") == "weights of training 4"
    assert storage.read_json(f"{layout.version(3)}/training.json")["run_name"] == "alice-run3"
    assert not storage.list(layout.version(2)) and not storage.list(layout.version(1))
    latest = history.latest
    assert (latest.posts, latest.perplexity, latest.finished_at) == (120, 45.0, "2026-01-05T00:00:00Z")


def test_the_same_training_again_is_no_new_version(storage):
    layout = Layout(storage.uri("bots", "alice"))
    one_version(storage, layout, 1, keep=3)
    history = archive_latest(storage, layout)  # a rerun that finds its training done
    assert storage.list(layout.version(1))
    training = storage.read_json(layout.training)
    assert record_version(storage, layout, history, training, STATS, 3).version == 1
    assert History.from_dict(storage.read_json(layout.history)).latest.archived is None
    assert not storage.list(layout.version(1))  # model/ is that version


def test_a_model_from_before_versions_becomes_version_1(storage):
    layout = Layout(storage.uri("bots", "alice"))
    train_stand_in(storage, layout, 1)
    assert one_version(storage, layout, 2, keep=3) == 2
    assert read_history(storage, layout).versions[0].run_name == "alice-run1"
    assert storage.read_text(f"{layout.version(1)}/model.safetensors") == "weights of training 1"


def test_keep_zero_keeps_only_the_latest(storage):
    layout = Layout(storage.uri("bots", "alice"))
    for n in (1, 2):
        one_version(storage, layout, n, keep=0)
    assert storage.list(layout.versions) == []


def test_versions_in_a_local_folder(tmp_path):
    from botfleet.storage import Storage, file_uri

    storage, layout = Storage(), Layout(file_uri(tmp_path / "bots" / "alice"))
    for n in (1, 2, 3):
        one_version(storage, layout, n, keep=1)
    assert [v.version for v in read_history(storage, layout).versions] == [1, 2, 3]
    assert storage.read_text(f"{layout.version(2)}/model.safetensors") == "weights of training 2"
    assert not (tmp_path / "bots" / "alice" / "versions" / "v1").exists()
