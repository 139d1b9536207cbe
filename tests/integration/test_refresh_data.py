"""A refresh's data (no training): only what is new is fetched, merged by id, maxPosts kept;
nothing new writes nothing. Real S3 server; the social API is the local stand-in."""

import pytest

from botfleet import api
from botfleet.layout import Layout
from botfleet_jobs.data_stage import prepare
from botfleet_jobs.refresh import NothingToRefresh, read_stored_posts, refresh_dataset
from tests.fakes import FakeAccount
from tests.fixtures.posts import dataset_spec, posts_jsonl


def mastodon_spec(storage, apis, max_posts: int) -> api.BotSpec:
    return api.parse_spec(
        {
            "handles": [{"handle": "dril", "source": {"mastodon": {"instance": apis.url}}}],
            "data": {"maxPosts": max_posts},
            "output": {"uri": storage.uri("out")},
        }
    )


def test_a_refresh_fetches_only_the_new_posts_and_keeps_max_posts(storage, apis):
    account = apis.add(FakeAccount("dril", posts=130, boost_every=0, note_every=0))
    everything = account.timeline
    account.timeline = everything[7:]  # seven posts to come
    spec = mastodon_spec(storage, apis, max_posts=120)
    prepare(spec, storage, show_progress=False)
    layout = Layout(spec.model_uri)
    before = read_stored_posts(storage, layout, "dril")
    assert len(before) == 120

    account.timeline = everything
    asked = len(apis.requests("/api/v1/accounts/" + account.account_id))
    gathered = refresh_dataset(spec, storage)
    assert len(apis.requests("/api/v1/accounts/" + account.account_id)) == asked + 1  # one page: the new ones
    after = read_stored_posts(storage, layout, "dril")
    assert gathered.new_posts == 7 and gathered.stats["new_posts"] == 7
    assert len(after) == 120  # maxPosts: the seven oldest made room
    assert after[:7] == [p for p in after if p.id not in {q.id for q in before}]
    assert after[7:] == before[:113]
    assert "post 0 by dril" in storage.read_text(layout.train_txt)


def test_a_refresh_with_nothing_new_writes_nothing(storage, apis):
    apis.add(FakeAccount("dril", posts=130, boost_every=0, note_every=0))
    spec = mastodon_spec(storage, apis, max_posts=3200)
    first = prepare(spec, storage, show_progress=False)
    layout = Layout(spec.model_uri)
    storage.delete(layout.train_txt)
    gathered = refresh_dataset(spec, storage)
    assert (gathered.new_posts, gathered.stats) == (0, first)
    assert not storage.exists(layout.train_txt)


def test_an_object_is_read_again_only_when_it_changed(storage):
    source = storage.uri("inputs", "alice.jsonl")
    spec = dataset_spec(storage, source)
    storage.write_bytes(source, posts_jsonl("old"))
    first = prepare(spec, storage, show_progress=False)
    assert refresh_dataset(spec, storage).new_posts == 0

    storage.write_bytes(source, posts_jsonl("old") + posts_jsonl("new", 30))
    gathered = refresh_dataset(spec, storage)
    assert gathered.new_posts == 30 and gathered.stats["inputs"] != first["inputs"]


def test_a_bot_without_a_dataset_cannot_be_refreshed(storage):
    spec = dataset_spec(storage, storage.uri("inputs", "alice.jsonl"))
    with pytest.raises(NothingToRefresh, match="botfleet run"):
        refresh_dataset(spec, storage)
