"""Services that do not answer: each call and the whole fetch are bounded, the wait is
shown, and the error names the service and how long was waited."""

from __future__ import annotations

import socket

import pytest

from botfleet import api
from botfleet_jobs.posts import SourceError
from botfleet_jobs.sources import fetch_posts
from botfleet_jobs.sources import http as http_mod
from tests.fakes import FakeAccount, FakeSocialApis


@pytest.fixture
def waits(monkeypatch):
    """Sleeps recorded (and the clock moved by them), notices collected; local calls only."""
    record = {"sleeps": [], "notices": [], "now": 1000.0}

    def sleep(seconds):
        record["sleeps"].append(seconds)
        record["now"] += seconds

    monkeypatch.setattr(http_mod, "SLEEP", sleep)
    monkeypatch.setattr(http_mod, "CLOCK", lambda: record["now"])
    monkeypatch.setattr(http_mod, "NOTICE", record["notices"].append)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return record


def mastodon(url: str) -> api.Handle:
    return api.Handle(handle="dril", source=api.Source(mastodon=api.MastodonSource(instance=url)))


def error_of(call) -> str:
    with pytest.raises(SourceError) as info:
        call()
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_server_that_never_answers_is_given_up_on(waits, monkeypatch):
    monkeypatch.setattr(http_mod, "TIMEOUT_S", (2.0, 0.2))
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        host = f"127.0.0.1:{silent.getsockname()[1]}"
        message = error_of(lambda: fetch_posts(mastodon(f"http://{host}"), 10, None))
    assert f"no answer from {host} within 0.2 s, after {http_mod.NO_ANSWER_TRIES} tries in " in message
    assert len(waits["sleeps"]) == http_mod.NO_ANSWER_TRIES - 1
    assert len(waits["notices"]) == len(waits["sleeps"])
    assert all(n.startswith(f"waiting for {host}: no answer") and "trying again in" in n for n in waits["notices"])


def test_a_refused_connection_is_tried_a_few_times_only(waits):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{s.getsockname()[1]}"
    message = error_of(lambda: fetch_posts(mastodon(f"http://{host}"), 10, None))
    assert f"cannot connect to {host} (connection refused), after {http_mod.NO_ANSWER_TRIES} tries" in message
    assert sum(waits["sleeps"]) < 10


def test_the_whole_fetch_has_a_deadline(waits, monkeypatch):
    monkeypatch.setattr(http_mod, "DEADLINE_S", 100.0)
    with FakeSocialApis([FakeAccount("dril")]) as apis:
        apis.throttle("/api/v1/accounts/lookup", 50, headers={"Retry-After": "45"})
        message = error_of(lambda: fetch_posts(mastodon(apis.url), 10, None))
    # 45 s, 45 s, and a third wait would pass the 100 s limit: three tries, not six.
    assert waits["sleeps"] == [45.0, 45.0]
    assert "rate limited (HTTP 429) after 3 tries in 90 s" in message
