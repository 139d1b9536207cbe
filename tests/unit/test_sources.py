"""The post sources: archive and dataset files, and the Mastodon, Bluesky and Twitter APIs
(served by a local stand-in, tests/fakes/fake_social_apis.py: nothing reaches the internet)."""

from __future__ import annotations

import email.utils
import io
import json
import socket
import time
import zipfile

import pytest

from botfleet import api
from botfleet.secrets import secret_env_name
from botfleet.storage import Storage, file_uri
from botfleet_jobs.posts import Post, SourceError
from botfleet_jobs.sources import fetch_posts
from botfleet_jobs.sources import http as http_mod
from botfleet_jobs.sources.archive import parse_archive
from botfleet_jobs.sources.mastodon import html_to_text
from tests.fakes import FakeAccount, FakeSocialApis

TOKEN_REF = api.SecretRef(name="twitter", key="token")


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def sleeps(monkeypatch):
    """Record the client's waits instead of sleeping; keep retries fast and local."""
    waits: list[float] = []
    monkeypatch.setattr(http_mod, "SLEEP", waits.append)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return waits


@pytest.fixture
def apis(sleeps):
    with FakeSocialApis() as server:
        yield server


@pytest.fixture
def storage():
    return Storage()  # file:// URIs only


def error_of(call) -> str:
    with pytest.raises(SourceError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and message.strip() == message, message
    return message


def handle(name: str, **source) -> api.Handle:
    return api.Handle(handle=name, source=api.Source(**source))


def mastodon(name, server):
    return handle(name, mastodon=api.MastodonSource(instance=server.url))


def bluesky(name, server):
    return handle(name, bluesky=api.BlueskySource(service=server.url))


def twitter(name, server, monkeypatch, token="test-token"):
    monkeypatch.setenv(secret_env_name(TOKEN_REF), token)
    return handle(name, twitter=api.TwitterSource(bearer_token_secret_ref=TOKEN_REF, api_base=server.url))


class Counter:
    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, n):
        self.calls.append(n)

    @property
    def total(self):
        return sum(self.calls)


# --------------------------------------------------------------------------- HTTP client


def test_retry_after_parsing():
    now = 1_700_000_000.0
    parse = http_mod.retry_after_seconds
    assert parse({"Retry-After": "7"}, now) == 7
    assert parse({"Retry-After": email.utils.formatdate(now + 30, usegmt=True)}, now) == pytest.approx(30, abs=1)
    assert parse({"Retry-After": email.utils.formatdate(now - 30, usegmt=True)}, now) == 0
    assert parse({"x-rate-limit-reset": str(int(now) + 12)}, now) == 12
    assert parse({"X-RateLimit-Reset": "2023-11-14T22:13:50Z"}, 1_700_000_000.0) == pytest.approx(30, abs=1)
    assert parse({"Retry-After": "7", "x-rate-limit-reset": str(int(now) + 99)}, now) == 7
    assert parse({}, now) is None
    assert parse({"Retry-After": "soon"}, now) is None


def test_429_honours_retry_after_then_succeeds(apis, sleeps):
    account = apis.add(FakeAccount("dril", posts=30))
    apis.throttle(f"/api/v1/accounts/{account.account_id}/statuses", 2, headers={"Retry-After": "2"})
    posts = fetch_posts(mastodon("@dril", apis), 100, None)
    assert len(posts) == 30
    assert sleeps == [2, 2]
    assert len(apis.requests("/api/v1/accounts/" + account.account_id)) == 3


def test_429_uses_rate_limit_reset_header_and_caps_the_wait(apis, sleeps, monkeypatch):
    monkeypatch.setattr(http_mod, "MAX_WAIT_S", 5.0)
    apis.add(FakeAccount("jack", posts=10))
    reset = str(int(time.time()) + 900)  # Twitter's 15-minute window
    apis.throttle("/2/users/by/username/", 1, headers={"x-rate-limit-reset": reset})
    posts = fetch_posts(twitter("jack", apis, monkeypatch), 100, None)
    assert len(posts) == 10
    assert sleeps == [5.0]


def test_5xx_retried_with_capped_exponential_backoff(apis, sleeps, monkeypatch):
    monkeypatch.setattr(http_mod, "BACKOFF_S", 1.0)
    monkeypatch.setattr(http_mod, "MAX_WAIT_S", 3.0)
    apis.add(FakeAccount("alice.bsky.social", posts=10))
    apis.throttle("/xrpc/", 4, status=503, headers={})
    posts = fetch_posts(bluesky("alice.bsky.social", apis), 100, None)
    assert len(posts) == 10
    assert len(sleeps) == 4
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0 and all(w <= 3.0 for w in sleeps)


def test_gives_up_after_max_tries(apis, sleeps):
    apis.add(FakeAccount("dril"))
    apis.throttle("/api/v1/accounts/lookup", 100)
    message = error_of(lambda: fetch_posts(mastodon("@dril", apis), 100, None))
    assert message.startswith(f"@dril (mastodon {apis.url}): ")
    assert "rate limited (HTTP 429) after 6 tries" in message
    assert len(apis.requests("/api/v1/accounts/lookup")) == http_mod.MAX_TRIES == 6


def test_other_4xx_is_not_retried(apis, sleeps):
    apis.add(FakeAccount("dril"))
    apis.throttle("/api/v1/accounts/lookup", 1, status=403, headers={})
    message = error_of(lambda: fetch_posts(mastodon("dril", apis), 100, None))
    assert "HTTP 403" in message and message.startswith("@dril (mastodon ")
    assert sleeps == [] and len(apis.requests()) == 1


def test_user_agent_and_accept_headers(apis):
    apis.add(FakeAccount("dril", posts=3))
    fetch_posts(mastodon("dril", apis), 10, None)
    for request in apis.requests():
        assert request.headers["User-Agent"].startswith("botfleet/")
        assert "application/json" in request.headers["Accept"]


def test_unreachable_server(sleeps, monkeypatch):
    monkeypatch.setattr(http_mod, "MAX_TRIES", 2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    h = handle("dril", mastodon=api.MastodonSource(instance=f"http://127.0.0.1:{port}"))
    message = error_of(lambda: fetch_posts(h, 10, None))
    assert message.startswith(f"@dril (mastodon http://127.0.0.1:{port}): ")
    assert f"cannot connect to 127.0.0.1:{port} (connection refused)" in message
    assert len(sleeps) == 1


def test_paginate_stops_on_repeated_cursor():
    calls = []

    def page(state):
        calls.append(state)
        return [1, 2], "same"

    assert http_mod.paginate(page, 100) == [1, 2, 1, 2]
    assert calls == [None, "same"]


# --------------------------------------------------------------------------- Mastodon


def test_mastodon_pages_with_link_header(apis):
    account = apis.add(FakeAccount("dril", posts=95))
    progress = Counter()
    posts = fetch_posts(mastodon("@dril", apis), 3200, None, progress=progress)
    statuses = apis.requests(f"/api/v1/accounts/{account.account_id}/statuses")
    assert len(statuses) == 3  # 40 + 40 + 15, no next link on the short page
    assert [r.query.get("limit") for r in statuses] == ["40", "40", "40"]
    assert "max_id" not in statuses[0].query and "max_id" in statuses[1].query
    assert apis.requests("/api/v1/accounts/lookup")[0].query == {"acct": "dril"}
    assert progress.calls == [40, 40, 15]
    assert len(posts) == 95
    assert [p.id for p in posts] == [account.mastodon_id(p) for p in account.timeline]
    for post, source in zip(posts, account.timeline, strict=True):
        assert post.text == account.expected_text(source, "mastodon")
        assert post.is_retweet == source.boost
        assert post.created_at == source.iso()
    assert sum(p.is_retweet for p in posts) == sum(s.boost for s in account.timeline) > 0


def test_mastodon_stops_at_max_posts(apis):
    account = apis.add(FakeAccount("dril", posts=95))
    posts = fetch_posts(mastodon("dril", apis), 50, None)
    assert len(posts) == 50
    assert len(apis.requests(f"/api/v1/accounts/{account.account_id}/statuses")) == 2


def test_mastodon_full_last_page_ends_on_empty_page(apis):
    account = apis.add(FakeAccount("dril", posts=80))
    assert len(fetch_posts(mastodon("dril", apis), 1000, None)) == 80
    assert len(apis.requests(f"/api/v1/accounts/{account.account_id}/statuses")) == 3


def test_mastodon_unknown_account(apis):
    message = error_of(lambda: fetch_posts(mastodon("@nobody", apis), 10, None))
    assert message == f"@nobody (mastodon {apis.url}): account not found (HTTP 404)"


def test_mastodon_html_to_text():
    content = (
        "<p>a &amp; b &lt;3 &gt; &quot;q&quot; &#39;s&#39; caf&eacute;<br />line two<br>three</p>"
        '<p><span class="h-card"><a href="https://m.x/@bob" class="u-url mention">@<span>bob</span></a></span> '
        '<a href="https://m.x/tags/tag" class="mention hashtag" rel="tag">#<span>tag</span></a> '
        '<a href="https://example.org/a/b"><span class="invisible">https://</span>'
        '<span class="ellipsis">example.org/a</span>'
        '<span class="invisible">/b</span></a></p>'
    )
    assert html_to_text(content) == "a & b <3 > \"q\" 's' café\nline two\nthree\n\n@bob #tag https://example.org/a/b"
    assert html_to_text("") == ""


# --------------------------------------------------------------------------- Bluesky


def test_bluesky_pages_with_cursor(apis):
    account = apis.add(FakeAccount("alice.bsky.social", posts=250))
    progress = Counter()
    posts = fetch_posts(bluesky("@alice.bsky.social", apis), 3200, None, progress=progress)
    feed = apis.requests("/xrpc/app.bsky.feed.getAuthorFeed")
    assert len(feed) == 3 and progress.calls == [100, 100, 50]
    assert [r.query.get("cursor") for r in feed] == [None, "100", "200"]
    assert all(r.query["actor"] == "alice.bsky.social" and r.query["limit"] == "100" for r in feed)
    assert "filter" not in feed[0].query
    assert len(posts) == 250
    for post, source in zip(posts, account.timeline, strict=True):
        assert post.id == account.bluesky_uri(source)
        assert post.text == source.text
        assert post.is_retweet == source.boost
        assert post.created_at == source.iso()


def test_bluesky_stops_at_max_posts(apis):
    apis.add(FakeAccount("alice.bsky.social", posts=250))
    assert len(fetch_posts(bluesky("alice.bsky.social", apis), 150, None)) == 150
    assert len(apis.requests("/xrpc/")) == 2


def test_bluesky_unknown_account(apis):
    message = error_of(lambda: fetch_posts(bluesky("ghost.bsky.social", apis), 10, None))
    assert message == f"@ghost.bsky.social (bluesky {apis.url}): account not found (HTTP 400: Profile not found)"


def test_bluesky_handle_without_domain_gets_a_hint(apis):
    message = error_of(lambda: fetch_posts(bluesky("@dril", apis), 10, None))
    assert message.startswith(f"@dril (bluesky {apis.url}): HTTP 400")
    assert "dril.bsky.social" in message


# --------------------------------------------------------------------------- Twitter


def test_twitter_pages_with_next_token(apis, monkeypatch):
    account = apis.add(FakeAccount("jack", posts=250))
    progress = Counter()
    posts = fetch_posts(twitter("@jack", apis, monkeypatch), 3200, None, progress=progress)
    timeline = apis.requests(f"/2/users/{account.account_id}/tweets")
    assert len(timeline) == 3 and progress.calls == [100, 100, 50]
    assert [r.query.get("pagination_token") for r in timeline] == [None, "tok100", "tok200"]
    assert timeline[0].query["max_results"] == "100"
    assert set(timeline[0].query["tweet.fields"].split(",")) == {"created_at", "referenced_tweets", "note_tweet"}
    assert all(r.headers["Authorization"] == "Bearer test-token" for r in apis.requests())
    assert len(posts) == 250
    for post, source in zip(posts, account.timeline, strict=True):
        assert post.id == account.twitter_id(source)
        assert post.text == account.expected_text(source, "twitter")
        assert post.is_retweet == source.boost
        assert post.created_at == source.iso()
    notes = [p for p, s in zip(posts, account.timeline, strict=True) if s.note]
    assert notes and all(len(p.text) > 280 and "t.co" not in p.text for p in notes)


def test_twitter_stops_at_the_3200_cap(apis, monkeypatch):
    account = apis.add(FakeAccount("jack", posts=3300))
    posts = fetch_posts(twitter("jack", apis, monkeypatch), 100000, None)
    assert len(posts) == 3200
    assert len(apis.requests(f"/2/users/{account.account_id}/tweets")) == 32


def test_twitter_full_last_page_is_not_retried(apis, monkeypatch):
    account = apis.add(FakeAccount("jack", posts=200))
    assert len(fetch_posts(twitter("jack", apis, monkeypatch), 3200, None)) == 200
    assert len(apis.requests(f"/2/users/{account.account_id}/tweets")) == 3  # 100, 100, empty


def test_twitter_retries_an_empty_first_page(apis, monkeypatch):
    account = apis.add(FakeAccount("jack", posts=120))
    apis.empty_pages(f"/2/users/{account.account_id}/tweets", 2)
    assert len(fetch_posts(twitter("jack", apis, monkeypatch), 3200, None)) == 120
    assert len(apis.requests(f"/2/users/{account.account_id}/tweets")) == 4


def test_twitter_bad_token(apis, monkeypatch):
    apis.add(FakeAccount("jack"))
    message = error_of(lambda: fetch_posts(twitter("jack", apis, monkeypatch, token="wrong"), 10, None))
    assert message == f"@jack (twitter {apis.url}): bearer token rejected (HTTP 401)"


def test_twitter_unknown_account(apis, monkeypatch):
    message = error_of(lambda: fetch_posts(twitter("@nobody", apis, monkeypatch), 10, None))
    assert message.startswith(f"@nobody (twitter {apis.url}): account not found")
    assert "Could not find user with username: [nobody]" in message


def test_twitter_missing_secret(apis, monkeypatch):
    h = twitter("jack", apis, monkeypatch)
    monkeypatch.delenv(secret_env_name(TOKEN_REF))
    message = error_of(lambda: fetch_posts(h, 10, None))
    assert message.startswith(f"@jack (twitter {apis.url}): secret twitter/token is not available")
    assert secret_env_name(TOKEN_REF) in message
    assert apis.requests() == []


# --------------------------------------------------------------------------- archive


def js(name: str, entries: list, wrapper: str = "tweets") -> bytes:
    return (f"window.YTD.{wrapper}.{name} = " + json.dumps(entries, indent=2, ensure_ascii=False)).encode()


def tweet(id_: int, text: str, created: str | None = None, **extra) -> dict:
    body = {"id_str": str(id_), "full_text": text, **extra}
    if created:
        body["created_at"] = created
    return {"tweet": body}


def make_zip(path, files: dict) -> str:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return file_uri(path)


def archive(name: str, uri: str) -> api.Handle:
    return handle(name, archive=api.ArchiveSource(uri=uri))


LONG = "this is a very long note tweet & it goes on " + " ".join(f"w{i}" for i in range(80))


def test_archive_zip_with_parts_note_tweets_and_retweets(tmp_path, storage):
    part0 = [
        tweet(1050118621198921728, "oldest &amp; first", "Wed Oct 10 20:19:24 +0000 2018"),
        tweet(1500000000000000005, LONG[:260] + "… https://t.co/AbC123", "Sat Mar 05 10:00:00 +0000 2022"),
        tweet(1400000000000000000, "RT @other: something", "Wed Jun 02 08:00:00 +0000 2021"),
    ]
    part1 = [
        tweet(1600000000000000000, "newest one", "Mon Jan 02 00:00:00 +0000 2023"),
        tweet(
            1300000000000000000, "flagged retweet", "Wed Sep 30 00:00:00 +0000 2020", retweeted_status={"id_str": "1"}
        ),
        {
            "id_str": "1200000000000000000",
            "text": "bare object with text",
            "created_at": "Sat Nov 16 00:00:00 +0000 2019",
        },
    ]
    notes = [
        {"noteTweet": {"noteTweetId": "77", "createdAt": "2022-03-05T10:00:02.000Z", "core": {"text": LONG}}},
        {"noteTweet": {"noteTweetId": "78", "createdAt": "2020-01-01T00:00:00.000Z", "core": {"text": "unrelated"}}},
    ]
    uri = make_zip(
        tmp_path / "twitter-2023.zip",
        {
            "data/account.js": b"window.YTD.account.part0 = []",
            "data/tweets.js": js("part0", part0),
            "data/tweets-part1.js": js("part1", part1),
            "data/note-tweet.js": js("part0", notes, "note_tweet"),
            "data/deleted-tweets.js": js("part0", [tweet(1700000000000000000, "deleted one")], "deleted_tweets"),
        },
    )
    progress = Counter()
    posts = fetch_posts(archive("@me", uri), 3200, storage, progress=progress)
    assert [p.id for p in posts] == [
        "1600000000000000000",
        "1500000000000000005",
        "1400000000000000000",
        "1300000000000000000",
        "1200000000000000000",
        "1050118621198921728",
    ]
    assert progress.total == 6
    assert posts[1].text == LONG
    assert posts[0] == Post("1600000000000000000", "newest one", False, "2023-01-02T00:00:00Z")
    assert posts[-1].text == "oldest &amp; first"  # kept escaped: fix_text undoes it later
    assert [p.is_retweet for p in posts] == [False, False, True, True, False, False]
    assert [p.id for p in fetch_posts(archive("me", uri), 2, storage)] == ["1600000000000000000", "1500000000000000005"]


def test_archive_note_tweet_needs_close_creation_time(tmp_path, storage):
    uri = make_zip(
        tmp_path / "a.zip",
        {
            "data/tweets.js": js(
                "part0", [tweet(1500000000000000005, LONG[:100] + "…", "Sat Mar 05 10:00:00 +0000 2022")]
            ),
            "data/note-tweet.js": js(
                "part0",
                [{"noteTweet": {"createdAt": "2022-03-05T11:00:00.000Z", "core": {"text": LONG}}}],
                "note_tweet",
            ),
        },
    )
    assert fetch_posts(archive("me", uri), 10, storage)[0].text == LONG[:100] + "…"


def test_archive_old_names_in_a_top_folder_and_id_order(tmp_path, storage):
    uri = make_zip(
        tmp_path / "old.zip",
        {
            "twitter-2019/data/tweet.js": js("part0", [tweet(1100000000000000000, "older, no date")], "tweet"),
            "twitter-2019/data/tweet-part1.js": js("part1", [tweet(1190000000000000000, "newer, no date")], "tweet"),
        },
    )
    posts = fetch_posts(archive("me", uri), 10, storage)
    assert [p.text for p in posts] == ["newer, no date", "older, no date"]
    assert posts[0].created_at is None


def test_archive_single_tweets_js_file(tmp_path, storage):
    path = tmp_path / "tweets.js"
    path.write_bytes(
        js(
            "part0",
            [tweet(5, "one", "Wed Oct 10 20:19:24 +0000 2018"), tweet(6, "two", "Thu Oct 11 20:19:24 +0000 2018")],
        )
    )
    assert [p.text for p in fetch_posts(archive("me", file_uri(path)), 10, storage)] == ["two", "one"]


def test_archive_malformed_js(tmp_path, storage):
    broken = (
        b'window.YTD.tweets.part1 = [\n  {"tweet": {"id_str": "1", "full_text": "x"}},\n'
        b'  {"tweet": {"id_str": "2" "full_text": "y"}}\n]'
    )
    uri = make_zip(tmp_path / "a.zip", {"data/tweets.js": js("part0", []), "data/tweets-part1.js": broken})
    message = error_of(lambda: fetch_posts(archive("@me", uri), 10, storage))
    assert message.startswith(f"@me (archive {uri}): data/tweets-part1.js: malformed JSON at line 3 column 28")
    assert "delimiter" in message


def test_archive_without_the_wrapper(tmp_path, storage):
    uri = make_zip(tmp_path / "a.zip", {"data/tweets.js": b"var tweets = []"})
    message = error_of(lambda: fetch_posts(archive("me", uri), 10, storage))
    assert "data/tweets.js: expected `window.YTD.<name>.part0 = [...]`" in message


def test_archive_not_utf8(tmp_path, storage):
    data = js("part0", [tweet(1, "caf\u00e9")]).replace("café".encode(), b"caf\xff")
    uri = make_zip(tmp_path / "a.zip", {"data/tweets.js": data})
    message = error_of(lambda: fetch_posts(archive("me", uri), 10, storage))
    offset = data.index(b"\xff")
    assert message == f"@me (archive {uri}): data/tweets.js: not UTF-8 (byte 0xff at offset {offset})"


def test_archive_empty_zip(tmp_path, storage):
    uri = make_zip(tmp_path / "empty.zip", {})
    assert (
        error_of(lambda: fetch_posts(archive("me", uri), 10, storage))
        == f"@me (archive {uri}): the zip is empty: no data/tweets.js in it"
    )


def test_archive_zip_without_tweets_lists_contents(tmp_path, storage):
    files = {f"data/file{i}.js": b"[]" for i in range(8)}
    uri = make_zip(tmp_path / "a.zip", {"data/like.js": b"[]", **files})
    message = error_of(lambda: fetch_posts(archive("me", uri), 10, storage))
    assert "no data/tweets.js (or tweets-partN.js) in the zip; it holds data/file0.js" in message
    assert "and 3 more" in message


def test_archive_not_a_zip(tmp_path, storage):
    path = tmp_path / "export.zip"
    path.write_bytes(b"<html>not found</html>")
    message = error_of(lambda: fetch_posts(archive("me", file_uri(path)), 10, storage))
    assert message.startswith(f"@me (archive {file_uri(path)}): export.zip: not a zip file")


def test_archive_truncated_zip(tmp_path, storage):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("data/tweets.js", js("part0", [tweet(1, "x")]))
    path = tmp_path / "cut.zip"
    path.write_bytes(buffer.getvalue()[:40])
    message = error_of(lambda: fetch_posts(archive("me", file_uri(path)), 10, storage))
    assert "not a valid zip file" in message


def test_archive_missing_file(tmp_path, storage):
    uri = file_uri(tmp_path / "nope.zip")
    assert error_of(lambda: fetch_posts(archive("@me", uri), 10, storage)) == f"@me (archive {uri}): not found"


def test_parse_archive_accepts_bare_json_array():
    posts = parse_archive(json.dumps([tweet(3, "RT @x: y")]).encode(), "tweets.js")
    assert posts == [Post("3", "RT @x: y", True, None)]


# --------------------------------------------------------------------------- dataset


def dataset(name: str, path, fmt: str = "jsonl") -> api.Handle:
    return handle(name, dataset=api.DatasetSource(uri=file_uri(path), format=fmt))


def test_dataset_jsonl(tmp_path, storage):
    path = tmp_path / "posts.jsonl"
    lines = [
        {"text": "newest", "id": "a", "created_at": "2024-01-02"},
        {"text": "a retweet", "is_retweet": True},
        {"text": "string flag", "is_retweet": "false"},
        {"text": "int flag", "is_retweet": 1},
    ]
    path.write_text(
        "\n".join(json.dumps(post) for post in lines[:2])
        + "\n\n"
        + "\n".join(json.dumps(post) for post in lines[2:])
        + "\n"
    )
    progress = Counter()
    posts = fetch_posts(dataset("me", path), 100, storage, progress=progress)
    assert posts == [
        Post("a", "newest", False, "2024-01-02"),
        Post("2", "a retweet", True, None),
        Post("4", "string flag", False, None),
        Post("5", "int flag", True, None),
    ]
    assert progress.total == 4
    assert [p.text for p in fetch_posts(dataset("me", path), 2, storage)] == ["newest", "a retweet"]


def test_dataset_csv(tmp_path, storage):
    path = tmp_path / "posts.csv"
    path.write_text(
        "id,text,is_retweet,created_at\n1,hello there,false,2024-01-01\n"
        '2,"multi\nline, with comma",TRUE,\n3,no flag,,\n4,zero,0,\n',
        encoding="utf-8",
    )
    posts = fetch_posts(dataset("me", path, "csv"), 100, storage)
    assert posts == [
        Post("1", "hello there", False, "2024-01-01"),
        Post("2", "multi\nline, with comma", True, None),
        Post("3", "no flag", False, None),
        Post("4", "zero", False, None),
    ]


def test_dataset_csv_with_bom_and_text_only(tmp_path, storage):
    path = tmp_path / "posts.csv"
    path.write_bytes("\ufefftext\nfirst\nsecond\n".encode("utf-8"))
    assert fetch_posts(dataset("me", path, "csv"), 100, storage) == [Post("2", "first"), Post("3", "second")]


def test_dataset_jsonl_missing_text(tmp_path, storage):
    path = tmp_path / "posts.jsonl"
    path.write_text('{"text": "ok"}\n{"body": "no text", "id": 2}\n')
    message = error_of(lambda: fetch_posts(dataset("@me", path), 100, storage))
    assert message == f"@me (dataset {file_uri(path)}): line 2: no `text` field (fields: body, id)"


def test_dataset_csv_missing_text_column(tmp_path, storage):
    path = tmp_path / "posts.csv"
    path.write_text("id,body\n1,hello\n")
    message = error_of(lambda: fetch_posts(dataset("me", path, "csv"), 100, storage))
    assert message == f"@me (dataset {file_uri(path)}): line 1: no `text` column in the header (columns: id, body)"


def test_dataset_malformed_json_line(tmp_path, storage):
    path = tmp_path / "posts.jsonl"
    path.write_text('{"text": "ok"}\n{"text": "ok"}\n{"text": oops}\n')
    message = error_of(lambda: fetch_posts(dataset("me", path), 100, storage))
    assert message.startswith(f"@me (dataset {file_uri(path)}): line 3: malformed JSON at column 10")


def test_dataset_not_utf8(tmp_path, storage):
    data = b'{"text": "ok"}\n{"text": "caf\xe9"}\n'
    path = tmp_path / "posts.jsonl"
    path.write_bytes(data)
    message = error_of(lambda: fetch_posts(dataset("me", path), 100, storage))
    offset = data.index(b"\xe9")
    assert message == f"@me (dataset {file_uri(path)}): not UTF-8: byte 0xe9 at offset {offset} (line 2)"


def test_dataset_bad_retweet_flag(tmp_path, storage):
    path = tmp_path / "posts.csv"
    path.write_text("text,is_retweet\nhello,maybe\n")
    message = error_of(lambda: fetch_posts(dataset("me", path, "csv"), 100, storage))
    assert message.endswith("line 2: is_retweet must be true/false or 1/0, got 'maybe'")


def test_dataset_not_an_object(tmp_path, storage):
    path = tmp_path / "posts.jsonl"
    path.write_text('["text"]\n')
    assert error_of(lambda: fetch_posts(dataset("me", path), 100, storage)).endswith(
        "line 1: expected a JSON object, got list"
    )


# --------------------------------------------------------------------------- dispatch


def test_fetch_posts_accepts_any_reader(tmp_path):
    class Reader:
        def __init__(self):
            self.asked = []

        def download_file(self, uri, path):  # the sources stream files they download
            self.asked.append(uri)
            with open(path, "wb") as out:
                out.write(b'{"text": "from a reader"}\n')
            return path

    reader = Reader()
    h = handle("me", dataset=api.DatasetSource(uri="s3://bucket/posts.jsonl"))
    assert fetch_posts(h, 10, reader) == [Post("1", "from a reader")]
    assert reader.asked == ["s3://bucket/posts.jsonl"]


def test_fetch_posts_storage_error_names_the_source():
    h = handle("@me", dataset=api.DatasetSource(uri="s3://bucket/posts.jsonl"))
    message = error_of(lambda: fetch_posts(h, 10, Storage()))
    assert message.startswith("@me (dataset s3://bucket/posts.jsonl): no S3 endpoint configured")


def test_fetch_posts_without_a_source():
    message = error_of(lambda: fetch_posts(api.Handle(handle="me", source=api.Source()), 10, None))
    assert message == "@me: no source given"
