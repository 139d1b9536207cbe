"""A dataset's identity includes its inputs: a new run after the posts changed trains on the
new posts; a resumed run (its training unfinished) keeps the posts its checkpoints saw.
Real S3 server; the social API is the local stand-in."""

from botfleet import api
from botfleet.artifacts import Progress, Stats
from botfleet.layout import Layout
from botfleet_jobs.data_stage import prepare
from tests.fakes import FakeAccount
from tests.fixtures.posts import dataset_spec, posts_jsonl


def train_text(storage, spec) -> str:
    return storage.read_text(Layout(spec.model_uri).train_txt)


def mark_training_unfinished(storage, spec) -> None:
    """What a training interrupted after its first checkpoint leaves (the workers' file)."""
    progress = Progress(status="training", step=10, total_steps=40, last_checkpoint_step=10)
    storage.write_json(Layout(spec.model_uri).progress, progress.to_dict())


def test_a_new_run_sees_a_changed_dataset_object(storage):
    source = storage.uri("inputs", "alice.jsonl")
    spec = dataset_spec(storage, source)
    storage.write_bytes(source, posts_jsonl("old"))
    prepare(spec, storage, show_progress=False)
    assert "old post" in train_text(storage, spec)

    storage.write_bytes(source, posts_jsonl("new"))
    stats = prepare(spec, storage, show_progress=False)
    assert "new post" in train_text(storage, spec) and "old post" not in train_text(storage, spec)
    assert storage.read_json(Layout(spec.model_uri).stats) == stats


def test_an_unchanged_object_is_not_read_again(storage):
    source = storage.uri("inputs", "alice.jsonl")
    spec = dataset_spec(storage, source)
    storage.write_bytes(source, posts_jsonl("old"))
    first = prepare(spec, storage, show_progress=False)
    layout = Layout(spec.model_uri)
    storage.delete(layout.train_txt)  # a reused dataset is not rebuilt
    assert prepare(spec, storage, show_progress=False) == first
    assert not storage.exists(layout.train_txt)
    assert Stats.from_dict(first).inputs["alice"].startswith("object ")


def test_a_resumed_run_keeps_the_posts_its_checkpoints_saw(storage):
    source = storage.uri("inputs", "alice.jsonl")
    spec = dataset_spec(storage, source)
    storage.write_bytes(source, posts_jsonl("old"))
    first = prepare(spec, storage, show_progress=False)
    mark_training_unfinished(storage, spec)
    storage.write_bytes(source, posts_jsonl("new"))

    assert prepare(spec, storage, show_progress=False, resume=True) == first
    assert "old post" in train_text(storage, spec)
    # `botfleet prepare` (no resume) or a run after the training finished: the new posts.
    prepare(spec, storage, show_progress=False)
    assert "new post" in train_text(storage, spec)


def test_a_local_file_that_changed_is_read_again(storage, tmp_path):
    source = tmp_path / "alice.jsonl"
    spec = dataset_spec(storage, f"file://{source}")
    source.write_bytes(posts_jsonl("old"))
    prepare(spec, storage, show_progress=False)
    source.write_bytes(posts_jsonl("new", 210))
    prepare(spec, storage, show_progress=False)
    assert "new post" in train_text(storage, spec)


def mastodon_spec(storage, apis) -> api.BotSpec:
    return api.parse_spec(
        {
            "handles": [{"handle": "dril", "source": {"mastodon": {"instance": apis.url}}}],
            "output": {"uri": storage.uri("out")},
        }
    )


def test_a_new_run_sees_new_posts_on_a_social_api(storage, apis):
    account = apis.add(FakeAccount("dril", posts=120, boost_every=0, note_every=0))
    everything = account.timeline
    account.timeline = everything[5:]  # the five newest are not posted yet
    spec = mastodon_spec(storage, apis)
    first = prepare(spec, storage, show_progress=False)
    assert "post 0 by dril" not in train_text(storage, spec)
    layout = Layout(spec.model_uri)
    storage.delete(layout.train_txt)
    assert prepare(spec, storage, show_progress=False) == first  # the same posts: reused

    account.timeline = everything
    stats = prepare(spec, storage, show_progress=False)
    assert "post 0 by dril" in train_text(storage, spec)
    assert stats["inputs"]["dril"] != first["inputs"]["dril"]
