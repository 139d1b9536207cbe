"""A Bluesky account's public author feed (no login needed on the public AppView).

``GET /xrpc/app.bsky.feed.getAuthorFeed?actor=HANDLE&limit=100&cursor=...`` pages back
with the answer's ``cursor``, as the AT Protocol documents; paging stops when there is no
cursor (a page can be empty and still carry one: paging goes on over a bounded number of
empty pages in a row). The default feed filter is used (posts, replies and reposts).
Reposts (``reason.$type`` ``app.bsky.feed.defs#reasonRepost``) count as retweets.

The official app writes a link into the text shortened ("example.com/some/pa...") and keeps
the whole URL in a link facet (UTF-8 byte offsets); each link facet's URI is put back in
place, so the reference's URL rules see the links a tweet would have had.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from typing import Any

from botfleet_jobs.posts import Post, SourceError
from botfleet_jobs.sources.http import HttpClient, HttpError, paginate

PAGE_SIZE = 100  # the API's maximum
REPOST = "app.bsky.feed.defs#reasonRepost"
LINK = "app.bsky.richtext.facet#link"
EMPTY_PAGES = 5  # empty pages in a row that still carry a cursor, before paging gives up


def with_links(text: str, facets: Any) -> str:
    """``text`` with each link facet's byte range replaced by the facet's full URI."""
    if not isinstance(facets, list):
        return text
    data = text.encode("utf-8")
    links = []
    for facet in facets:
        index = facet.get("index") if isinstance(facet, dict) else None
        features = facet.get("features") if isinstance(facet, dict) else None
        if not isinstance(index, dict) or not isinstance(features, list):
            continue
        start, end = index.get("byteStart"), index.get("byteEnd")
        uri = next((f.get("uri") for f in features if isinstance(f, dict) and f.get("$type") == LINK), None)
        if isinstance(start, int) and isinstance(end, int) and 0 <= start < end <= len(data) and isinstance(uri, str):
            links.append((start, end, uri))
    links.sort()
    out, position = [], 0
    for start, end, uri in links:
        if start < position:  # overlapping facets: a malformed record; keep the first
            continue
        out += [data[position:start], uri.encode("utf-8")]
        position = end
    out.append(data[position:])
    return b"".join(out).decode("utf-8", errors="replace")


def _post(item: dict) -> Post:
    post = item.get("post") if isinstance(item.get("post"), dict) else {}
    record = post.get("record") if isinstance(post.get("record"), dict) else {}
    reason = item.get("reason") if isinstance(item.get("reason"), dict) else {}
    text = record.get("text")
    return Post(
        id=str(post.get("uri", "")),
        text=with_links(text, record.get("facets")) if isinstance(text, str) else "",
        is_retweet=reason.get("$type") == REPOST,
        created_at=record.get("createdAt"),
    )


def fetch(
    config: Any,
    actor: str,
    max_posts: int,
    progress: Callable[[int], Any] | None = None,
    known: Container[str] = frozenset(),
) -> list[Post]:
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

        return paginate(page, max_posts, progress, empty_pages=EMPTY_PAGES, known=known)
