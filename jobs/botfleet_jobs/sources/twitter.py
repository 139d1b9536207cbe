"""A user's timeline from the Twitter/X API v2 (a paid API; needs a bearer token).

``GET /2/users/by/username/NAME`` finds the user, then ``GET /2/users/:id/tweets``
(100 a page, ``pagination_token`` from ``meta.next_token``) pages back. The endpoint
serves at most the newest 3,200 tweets, so paging stops there, as the reference did.
A tweet referencing a ``retweeted`` tweet is a retweet; ``note_tweet.text`` (the whole
text of a long tweet) is preferred over the cut ``text``. Like the reference, an empty
first timeline page is asked for again (up to 5 times) before taking it as "no tweets".
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Container
from typing import Any

from botfleet.secrets import resolve_secret
from botfleet_jobs.posts import Post, SourceError
from botfleet_jobs.sources.http import HttpClient, HttpError, paginate

PAGE_SIZE = 100  # the API's maximum
API_CAP = 3200  # the user tweets endpoint serves no more than this
EMPTY_PAGE_RETRIES = 5
TWEET_FIELDS = "created_at,referenced_tweets,note_tweet"


def _post(tweet: dict) -> Post:
    note = tweet.get("note_tweet") if isinstance(tweet.get("note_tweet"), dict) else {}
    text = note.get("text") if isinstance(note.get("text"), str) else tweet.get("text")
    references = tweet.get("referenced_tweets") if isinstance(tweet.get("referenced_tweets"), list) else []
    return Post(
        id=str(tweet.get("id", "")),
        text=text if isinstance(text, str) else "",
        is_retweet=any(isinstance(r, dict) and r.get("type") == "retweeted" for r in references),
        created_at=tweet.get("created_at"),
    )


def _failure(what: str, exc: HttpError) -> SourceError:
    if exc.status == 401:
        return SourceError(
            "bearer token rejected (HTTP 401)"
            f"{': ' + exc.detail if exc.detail and exc.detail != 'Unauthorized' else ''}"
        )
    if exc.status == 404:
        return SourceError("account not found (HTTP 404)")
    return SourceError(f"{what} failed: {exc}")


def _errors(answer: Any) -> list[dict]:
    errors = answer.get("errors") if isinstance(answer, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def fetch(
    config: Any,
    username: str,
    max_posts: int,
    progress: Callable[[int], Any] | None = None,
    known: Container[str] = frozenset(),
) -> list[Post]:
    token = resolve_secret(config.bearer_token_secret_ref)
    base = config.api_base.rstrip("/")
    with HttpClient({"Authorization": f"Bearer {token}"}) as client:
        try:
            answer, _ = client.get_json(f"{base}/2/users/by/username/{urllib.parse.quote(username, safe='')}")
        except HttpError as exc:
            raise _failure("user lookup", exc) from None
        user = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(user, dict) or "id" not in user:
            errors = _errors(answer)
            first = errors[0] if errors else {}
            if not errors or "not found" in str(first.get("title", "")).lower():
                raise SourceError(f"account not found ({first.get('detail') or 'no user in the answer'})")
            raise SourceError(
                f"user lookup failed: {first.get('title', 'error')}: {first.get('detail') or first.get('message', '')}"
            )
        timeline = f"{base}/2/users/{urllib.parse.quote(str(user['id']), safe='')}/tweets"

        def page(token_: str | None) -> tuple[list[Post], str | None]:
            params = {"max_results": PAGE_SIZE, "tweet.fields": TWEET_FIELDS}
            if token_ is not None:
                params["pagination_token"] = token_
            try:
                answer, _ = client.get_json(timeline, params)
            except HttpError as exc:
                raise _failure("reading the timeline", exc) from None
            if not isinstance(answer, dict):
                raise SourceError(f"timeline answer is not an object: {str(answer)[:80]!r}")
            tweets = answer.get("data")
            if tweets is None and _errors(answer):
                first = _errors(answer)[0]
                raise SourceError(
                    f"reading the timeline failed: {first.get('title', 'error')}:"
                    f" {first.get('detail') or first.get('message', '')}"
                )
            meta = answer.get("meta") if isinstance(answer.get("meta"), dict) else {}
            next_token = meta.get("next_token")
            items = [_post(t) for t in tweets or [] if isinstance(t, dict)]
            return items, next_token if isinstance(next_token, str) and next_token else None

        return paginate(page, min(max_posts, API_CAP), progress, empty_retries=EMPTY_PAGE_RETRIES, known=known)
