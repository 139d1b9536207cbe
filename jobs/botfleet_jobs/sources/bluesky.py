"""A Bluesky account's public author feed (no login needed on the public AppView).

``GET /xrpc/app.bsky.feed.getAuthorFeed?actor=HANDLE&limit=100&cursor=...`` pages back
with the answer's ``cursor``, as the AT Protocol documents; paging stops when there is no
cursor or the feed comes back empty. The default feed filter is used (posts, replies
and reposts). Reposts (``reason.$type`` ``app.bsky.feed.defs#reasonRepost``) count as
retweets.
"""

from __future__ import annotations

from typing import Any, Callable

from botfleet_jobs.posts import Post, SourceError
from botfleet_jobs.sources.http import HttpClient, HttpError, paginate

PAGE_SIZE = 100  # the API's maximum
REPOST = "app.bsky.feed.defs#reasonRepost"


def _post(item: dict) -> Post:
    post = item.get("post") if isinstance(item.get("post"), dict) else {}
    record = post.get("record") if isinstance(post.get("record"), dict) else {}
    reason = item.get("reason") if isinstance(item.get("reason"), dict) else {}
    text = record.get("text")
    return Post(
        id=str(post.get("uri", "")),
        text=text if isinstance(text, str) else "",
        is_retweet=reason.get("$type") == REPOST,
        created_at=record.get("createdAt"),
    )


def fetch(config: Any, actor: str, max_posts: int, progress: Callable[[int], Any] | None = None) -> list[Post]:
    url = f"{config.service.rstrip('/')}/xrpc/app.bsky.feed.getAuthorFeed"
    with HttpClient() as client:

        def page(cursor: str | None) -> tuple[list[Post], str | None]:
            params = {"actor": actor, "limit": PAGE_SIZE}
            if cursor is not None:
                params["cursor"] = cursor
            try:
                answer, _ = client.get_json(url, params)
            except HttpError as exc:
                body = exc.body if isinstance(exc.body, dict) else {}
                message = str(body.get("message", ""))
                if exc.status == 400 and ("not found" in message.lower() or body.get("error") == "AccountNotFound"):
                    raise SourceError(f"account not found (HTTP 400: {message or body.get('error')})") from None
                if exc.status == 400 and "." not in actor and "handle" in message.lower():
                    raise SourceError(f"{exc} (Bluesky handles are domain names, e.g. {actor}.bsky.social)") from None
                raise SourceError(f"reading the author feed failed: {exc}") from None
            if not isinstance(answer, dict) or not isinstance(answer.get("feed"), list):
                raise SourceError(f"author feed answer has no `feed` list: {str(answer)[:80]!r}")
            items = [_post(item) for item in answer["feed"] if isinstance(item, dict)]
            next_cursor = answer.get("cursor")
            return items, next_cursor if isinstance(next_cursor, str) and next_cursor else None

        return paginate(page, max_posts, progress)
