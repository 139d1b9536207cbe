"""Fidelity to the reference pipeline and to the real services' response shapes, where
they differ from the obvious reading (../shared/docs/reference-pipeline.md, docs/reference.md).
The social APIs are served by the local stand-in in tests/fakes/ (no internet here)."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from botfleet import api
from botfleet.storage import Storage, file_uri
from botfleet_jobs.dataset import (
    END_OF_TEXT,
    MIN_CHARACTERS,
    WARN_CHARACTERS,
    NotEnoughText,
    build_dataset,
    gate_length,
)
from botfleet_jobs.filters import clean_text, filter_posts
from botfleet_jobs.sources import fetch_posts
from botfleet_jobs.sources import http as http_mod
from botfleet_jobs.sources.bluesky import EMPTY_PAGES, with_links
from tests.fakes import FakeAccount, FakeSocialApis
from tests.fakes.fake_social_apis import bluesky_record, bluesky_short_url


@pytest.fixture
def apis(monkeypatch):
    monkeypatch.setattr(http_mod, "SLEEP", lambda seconds: None)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with FakeSocialApis([FakeAccount("alice.bsky.social", posts=250), FakeAccount("bob", posts=30)]) as server:
        yield server


def bluesky(apis, name="alice.bsky.social") -> api.Handle:
    return api.Handle(handle=name, source=api.Source(bluesky=api.BlueskySource(service=apis.url)))


def mastodon(apis, name="bob") -> api.Handle:
    return api.Handle(handle=name, source=api.Source(mastodon=api.MastodonSource(instance=apis.url)))


# --------------------------------------------------------------------------- size gates


def test_gates_count_the_separators_as_the_reference_did():
    assert gate_length(["ab", "cd", "e"]) == len("ab" + END_OF_TEXT + "cd" + END_OF_TEXT + "e")
    assert gate_length([]) == 0
    # 300 posts of 16 characters: 4,800 without the separators (under the error gate),
    # 4,800 + 299 * 13 = 8,687 with them: the reference trained on this person.
    posts = [f"post number {i:04d}" for i in range(300)]
    assert sum(map(len, posts)) < MIN_CHARACTERS <= gate_length(posts)
    dataset = build_dataset({"me": posts}, epochs=1, seed=0)
    assert any("under 40,000" in w for w in dataset.warnings)
    # Just over the warning gate only once the separators count: no warning.
    count = WARN_CHARACTERS // (16 + len(END_OF_TEXT)) + 1
    many = [f"post number {i:04d}" for i in range(count)]
    assert sum(map(len, many)) < WARN_CHARACTERS <= gate_length(many)
    assert not build_dataset({"me": many}, epochs=1, seed=0).warnings


def test_gate_still_refuses_too_little():
    with pytest.raises(NotEnoughText):
        build_dataset({"me": ["three plain words"] * 10}, epochs=1, seed=0)


# --------------------------------------------------------------------------- URL rules


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        # Removing one URL makes another: only the reference's order gives "ab".
        ("a\nhtthttp://x p://y b", "ab"),
        ("a\nhttp://x", "a"),
        ("see https://t.co/abc now", "see now"),
        ("x https://a https://b y", "x y"),
    ],
)
def test_url_substitutions_in_the_reference_order(text, cleaned):
    assert clean_text(text) == cleaned


# --------------------------------------------------------------------------- Bluesky


def test_bluesky_link_facets_put_the_whole_url_back():
    url = "https://example.com/some/long/path?q=1"
    record = bluesky_record(f"ünïcode first {url} after", "2024-01-01T00:00:00Z")
    assert "example.com/some/long/pa..." in record["text"] and "https://" not in record["text"]
    assert with_links(record["text"], record["facets"]) == f"ünïcode first {url} after"


def test_bluesky_link_only_posts_count_as_short(apis):
    account = apis.accounts["alice.bsky.social"]
    for post in account.timeline[:20]:
        post.text = f"look https://example.com/a/very/long/path/{post.index} wow"
    posts = fetch_posts(bluesky(apis), 20, None)
    assert [p.text for p in posts] == [p.text for p in account.timeline[:20]]
    assert all(
        bluesky_short_url(f"https://example.com/a/very/long/path/{p.index}").endswith("...")
        for p in account.timeline[:20]
    )
    result = filter_posts(posts)
    assert result.short == 20 - result.retweets and result.kept == ()


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "x",
        [{"index": {"byteStart": 5, "byteEnd": 2}}],
        [{"index": {"byteStart": 0, "byteEnd": 99}, "features": []}],
        [
            {
                "index": {"byteStart": 0, "byteEnd": 999},
                "features": [{"$type": "app.bsky.richtext.facet#link", "uri": "u"}],
            }
        ],
    ],
)
def test_bluesky_malformed_facets_leave_the_text_alone(bad):
    assert with_links("plain text", bad) == "plain text"


def test_bluesky_pages_over_empty_pages_that_carry_a_cursor(apis):
    apis.empty_pages("/xrpc/app.bsky.feed.getAuthorFeed", EMPTY_PAGES)
    posts = fetch_posts(bluesky(apis), 250, None)
    assert len(posts) == 250
    assert len(apis.requests("/xrpc/app.bsky.feed.getAuthorFeed")) == EMPTY_PAGES + 3  # the gaps, 100, 100, 50


def test_bluesky_gives_up_after_a_bounded_run_of_empty_pages(apis):
    apis.empty_pages("/xrpc/app.bsky.feed.getAuthorFeed", 50)
    assert fetch_posts(bluesky(apis), 250, None) == []
    assert len(apis.requests("/xrpc/app.bsky.feed.getAuthorFeed")) == EMPTY_PAGES + 1


# --------------------------------------------------------------------------- Mastodon


def test_mastodon_quote_post_fallback_is_not_trained_on(apis):
    account = apis.accounts["bob"]
    quoted = next(p for p in account.timeline if not p.boost)
    quoted.quotes = "https://mastodon.example/@carol/111"
    posts = fetch_posts(mastodon(apis), 30, None)
    text = next(p.text for p in posts if p.created_at.startswith(quoted.iso()[:19]))
    assert text == quoted.text and "RE:" not in text


# --------------------------------------------------------------------------- long tweets


def _archive(tmp_path, tweets: list[dict], notes: list[dict]) -> str:
    def js(name, rows, key):
        return f"window.YTD.{name}.part0 = " + json.dumps([{key: row} for row in rows])

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data/tweets.js", js("tweets", tweets, "tweet"))
        archive.writestr("data/note-tweet.js", js("note_tweet", notes, "noteTweet"))
    path = tmp_path / "archive.zip"
    path.write_bytes(buffer.getvalue())
    return file_uri(str(path))


def _fetch_archive(uri: str) -> list:
    handle = api.Handle(handle="me", source=api.Source(archive=api.ArchiveSource(uri=uri)))
    return fetch_posts(handle, 100, Storage())


NOTE = "a long thought that goes on https://t.co/NOTE1 and on " + " ".join(f"w{i}" for i in range(60))


def test_long_tweet_matched_when_the_note_wraps_its_link_in_another_tco(tmp_path):
    cut = "a long thought that goes on https://t.co/CUT99 and on w0 w1 w2… https://t.co/TAIL"
    tweets = [{"id_str": "1500000000000000000", "full_text": cut, "created_at": "Sat Mar 05 10:00:00 +0000 2022"}]
    notes = [{"noteTweetId": "9", "createdAt": "2022-03-05T10:00:01.000Z", "core": {"text": NOTE}}]
    assert [p.text for p in _fetch_archive(_archive(tmp_path, tweets, notes))] == [NOTE]


def test_long_reply_matched_and_keeps_its_leading_mentions(tmp_path):
    cut = "@carol @dave " + NOTE[:120] + "… https://t.co/TAIL"
    tweets = [{"id_str": "1500000000000000000", "full_text": cut, "created_at": "Sat Mar 05 10:00:00 +0000 2022"}]
    notes = [{"noteTweetId": "9", "createdAt": "2022-03-05T10:00:00.000Z", "core": {"text": NOTE}}]
    assert [p.text for p in _fetch_archive(_archive(tmp_path, tweets, notes))] == ["@carol @dave " + NOTE]


def test_unrelated_note_is_not_matched(tmp_path):
    cut = "something else entirely w0 w1… https://t.co/TAIL"
    tweets = [{"id_str": "1500000000000000000", "full_text": cut, "created_at": "Sat Mar 05 10:00:00 +0000 2022"}]
    notes = [{"noteTweetId": "9", "createdAt": "2022-03-05T10:00:00.000Z", "core": {"text": NOTE}}]
    assert [p.text for p in _fetch_archive(_archive(tmp_path, tweets, notes))] == [cut]
