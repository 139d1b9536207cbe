"""A Mastodon account's public statuses (no token needed on most instances).

``GET /api/v1/accounts/lookup?acct=NAME`` finds the account, then
``GET /api/v1/accounts/:id/statuses?limit=40`` pages back through the ``Link`` header's
``rel="next"`` URL, as the Mastodon API documents. Boosts (``reblog`` set) count as
retweets, with the boosted status's text.
"""

from __future__ import annotations

import html
import re
import urllib.parse
from collections.abc import Callable, Container
from typing import Any

from botfleet_jobs.posts import Post, SourceError
from botfleet_jobs.sources.http import HttpClient, HttpError, paginate

PAGE_SIZE = 40  # the API's maximum for account statuses

_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_PARAGRAPH = re.compile(r"</p>\s*<p(?:\s[^>]*)?>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")
# The "RE: <link>" fallback a server adds to a quote post for old clients, which clients
# that show the quote hide (Mastodon 4.4+); it is not what the author wrote.
_QUOTE_FALLBACK = re.compile(
    r"<(p|span)\b[^>]*\bclass\s*=\s*[\"'][^\"']*\bquote-inline\b[^\"']*[\"'][^>]*>.*?</\1\s*>",
    re.IGNORECASE | re.DOTALL,
)


def html_to_text(content: str) -> str:
    """A status's HTML ``content`` as the plain text its author typed.

    The quote-post fallback (``class="quote-inline"``) goes first. ``<br>`` is a new line
    and a paragraph break a blank line; tags are dropped (a link's visible text is its
    whole URL, split over spans that vanish with the tags); then ALL
    entities are decoded with ``html.unescape`` and nothing is escaped again. So a status
    reads like a tweet after the reference's ``fix_text``: that filter replaces exactly
    ``&amp; &lt; &gt;``, which are already decoded here, so it leaves the text alone
    (only a literally typed "&amp;" would be decoded once more, as for a tweet).
    """
    text = _QUOTE_FALLBACK.sub("", content or "")
    text = _PARAGRAPH.sub("\n\n", text)
    text = _BR.sub("\n", text)
    text = _TAG.sub("", text)
    return html.unescape(text).strip()


def _post(status: dict) -> Post:
    reblog = status.get("reblog")
    shown = reblog if isinstance(reblog, dict) else status
    # spoiler_text (the content warning) is ignored: only the content is the post.
    return Post(
        id=str(status.get("id", "")),
        text=html_to_text(shown.get("content") or ""),
        is_retweet=isinstance(reblog, dict),
        created_at=status.get("created_at"),
    )


def fetch(
    config: Any,
    account: str,
    max_posts: int,
    progress: Callable[[int], Any] | None = None,
    known: Container[str] = frozenset(),
) -> list[Post]:
    base = config.instance.rstrip("/")
    with HttpClient() as client:
        try:
            found, _ = client.get_json(f"{base}/api/v1/accounts/lookup", {"acct": account})
        except HttpError as exc:
            if exc.status == 404:
                raise SourceError("account not found (HTTP 404)") from None
            raise SourceError(f"account lookup failed: {exc}") from None
        if not isinstance(found, dict) or "id" not in found:
            raise SourceError(f"account lookup answered something that is not a Mastodon account: {str(found)[:80]!r}")
        first = f"{base}/api/v1/accounts/{urllib.parse.quote(str(found['id']), safe='')}/statuses"

        def page(next_url: str | None) -> tuple[list[Post], str | None]:
            try:
                if next_url is None:
                    statuses, response = client.get_json(first, {"limit": PAGE_SIZE})
                else:
                    statuses, response = client.get_json(next_url)
            except HttpError as exc:
                raise SourceError(f"reading statuses failed: {exc}") from None
            if not isinstance(statuses, list):
                raise SourceError(f"statuses answer is not a list: {str(statuses)[:80]!r}")
            following = response.links.get("next", {}).get("url")
            if following:
                following = urllib.parse.urljoin(response.url, following)
            return [_post(s) for s in statuses if isinstance(s, dict)], following

        return paginate(page, max_posts, progress, known=known)
