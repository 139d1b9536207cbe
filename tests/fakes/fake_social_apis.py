"""A local stand-in for the Mastodon, Bluesky and Twitter v2 APIs (no internet in tests).

One threaded ``http.server`` on 127.0.0.1 (a free port) answers, for the accounts it is
given, the way the real services do for the calls botfleet makes:

* Mastodon: ``/api/v1/accounts/lookup?acct=`` (404 ``{"error": "Record not found"}``),
  ``/api/v1/accounts/:id/statuses?limit=&max_id=`` (at most 40 a page, HTML ``content``,
  boosts with ``reblog``, a ``spoiler_text`` now and then, and a ``Link`` header with
  ``rel="next"`` only when the page is full, as Mastodon does).
* Bluesky: ``/xrpc/app.bsky.feed.getAuthorFeed?actor=&limit=&cursor=`` (limit 1-100,
  reposts with ``reason.$type == app.bsky.feed.defs#reasonRepost``, a ``cursor`` while the
  page is full, 400 ``{"error": "InvalidRequest", "message": "Profile not found"}``).
* Twitter v2: ``/2/users/by/username/:name`` (unknown users: HTTP 200 with an ``errors``
  array, like the real API), ``/2/users/:id/tweets?max_results=&pagination_token=``
  (max_results 5-100, ``meta.next_token`` while the page is full, retweets with
  ``referenced_tweets`` type ``retweeted`` and text ``RT @...``, long tweets with
  ``note_tweet.text``, texts HTML-escaped like the real API); every ``/2/`` call needs
  ``Authorization: Bearer <token>`` or gets the real 401 problem answer. (Unlike the
  real endpoint, this one does not stop at 3,200 tweets, so tests can see the client stop.)

Switches: :meth:`FakeSocialApis.throttle` answers the first K requests under a path with
429 (or any status) and ``Retry-After`` (or other headers); :meth:`empty_pages` answers
the first K requests under a path with an empty page (Bluesky's still carries a cursor,
as the service does over posts it may not show). Bluesky posts carry their links as the
official app writes them (shortened in the text, whole in link facets); a Mastodon quote
post carries the server's ``quote-inline`` fallback. Every request is logged
(:attr:`FakeSocialApis.log`, :meth:`requests`).
"""

from __future__ import annotations

import html
import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPOST = "app.bsky.feed.defs#reasonRepost"
START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@dataclass
class FakePost:
    index: int  # 0 is the newest
    text: str  # what the author typed (for a boost: the boosted post's text)
    created_at: datetime
    boost: bool = False
    note: bool = False  # a long tweet: Twitter cuts `text` and sends `note_tweet`
    spoiler: str = ""
    quotes: str = ""  # a quote post of this URL: Mastodon adds its "RE:" fallback paragraph

    def iso(self) -> str:
        return self.created_at.strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class FakeAccount:
    """An account with ``posts`` posts; every ``boost_every``-th (from index 3) is a
    boost/repost/retweet and every ``note_every``-th (from index 1) a long tweet."""

    name: str
    posts: int = 95
    boost_every: int = 7
    note_every: int = 10
    account_id: str = ""
    timeline: list[FakePost] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.account_id:
            self.account_id = str(100000 + sum(map(ord, self.name)) * 7)
        for i in range(self.posts):
            when = START - timedelta(hours=i)
            if self.boost_every and i % self.boost_every == 3:
                self.timeline.append(FakePost(i, f"boosted post {i} by someone else & co", when, boost=True))
            elif self.note_every and i % self.note_every == 1:
                text = f"long post {i} by {self.name} & friends: " + " ".join(f"word{k}" for k in range(60))
                self.timeline.append(FakePost(i, text, when, note=True))
            else:
                text = f"post {i} by {self.name}\nfish & chips <3 'quoted'\n\nsee https://example.org/{i}"
                self.timeline.append(FakePost(i, text, when, spoiler="cw: food" if i % 11 == 5 else ""))

    # ids: newest is highest, as snowflakes are
    def mastodon_id(self, post: FakePost) -> str:
        return str(110000000000000000 + (self.posts - post.index))

    def twitter_id(self, post: FakePost) -> str:
        return str(1700000000000000000 + (self.posts - post.index) * 1000)

    def bluesky_uri(self, post: FakePost) -> str:
        return f"at://did:plc:{self.account_id}/app.bsky.feed.post/3k{self.posts - post.index:010d}"

    def expected_text(self, post: FakePost, api: str) -> str:
        """The text botfleet should produce for ``post`` from ``api``."""
        if api == "twitter" and post.boost:
            return "RT @someone: " + _twitter_escape(post.text)
        if api == "twitter" and not post.note:
            return _twitter_escape(post.text)
        return post.text


def _twitter_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def bluesky_short_url(url: str) -> str:
    """How the official Bluesky app writes a link into a post's text: host and the start of
    the path, cut to 13 characters plus "..." when the path is longer than 15."""
    parts = urllib.parse.urlsplit(url)
    path = ("" if parts.path == "/" else parts.path) + (f"?{parts.query}" if parts.query else "")
    path += f"#{parts.fragment}" if parts.fragment else ""
    return parts.netloc + (path[:13] + "..." if len(path) > 15 else path)


def bluesky_record(text: str, created: str) -> dict:
    """A post record as the app writes it: links shortened in the text, whole in link facets
    (UTF-8 byte offsets)."""
    out, facets, size = [], [], 0
    for token in re.split(r"(https?://\S+)", text):
        shown = bluesky_short_url(token) if re.match(r"https?://", token) else token
        data = shown.encode("utf-8")
        if shown is not token:
            facets.append(
                {
                    "index": {"byteStart": size, "byteEnd": size + len(data)},
                    "features": [{"$type": "app.bsky.richtext.facet#link", "uri": token}],
                }
            )
        out.append(shown)
        size += len(data)
    record = {"$type": "app.bsky.feed.post", "text": "".join(out), "createdAt": created, "langs": ["en"]}
    if facets:
        record["facets"] = facets
    return record


def mastodon_html(text: str) -> str:
    """Text as Mastodon renders it: paragraphs, <br />, linked URLs split in spans."""

    def line(raw: str) -> str:
        out = []
        for token in re.split(r"(https?://\S+)", raw):
            if re.match(r"https?://", token):
                scheme, rest = token.split("://", 1)
                out.append(
                    f'<a href="{html.escape(token)}" rel="nofollow noopener noreferrer" target="_blank">'
                    f'<span class="invisible">{scheme}://</span><span class="">{html.escape(rest)}</span>'
                    '<span class="invisible"></span></a>'
                )
            else:
                out.append(html.escape(token).replace("&#x27;", "&#39;"))
        return "".join(out)

    paragraphs = text.split("\n\n")
    return "".join("<p>" + "<br />".join(line(raw_line) for raw_line in p.split("\n")) + "</p>" for p in paragraphs)


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: dict
    headers: dict


class FakeSocialApis:
    """The server; use as a context manager. ``url`` is its base URL."""

    def __init__(self, accounts: list[FakeAccount] | None = None, bearer_token: str = "test-token") -> None:
        self.accounts = {a.name.lower(): a for a in (accounts or [])}
        self.bearer_token = bearer_token
        self.log: list[LoggedRequest] = []
        self._throttles: list[list] = []  # [prefix, remaining, status, headers]
        self._empty: list[list] = []  # [prefix, remaining]
        self._bluesky_gaps = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ control

    def add(self, account: FakeAccount) -> FakeAccount:
        self.accounts[account.name.lower()] = account
        return account

    def throttle(self, prefix: str, count: int, status: int = 429, headers: dict | None = None) -> None:
        """Answer the first ``count`` requests whose path starts with ``prefix`` with ``status``."""
        with self._lock:
            self._throttles.append([prefix, count, status, {"Retry-After": "1"} if headers is None else headers])

    def empty_pages(self, prefix: str, count: int) -> None:
        """Answer the first ``count`` requests under ``prefix`` with an empty page."""
        with self._lock:
            self._empty.append([prefix, count])

    def requests(self, prefix: str = "/") -> list[LoggedRequest]:
        with self._lock:
            return [r for r in self.log if r.path.startswith(prefix)]

    @property
    def url(self) -> str:
        assert self._server is not None, "start the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeSocialApis:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                fake._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-social-apis", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> FakeSocialApis:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ dispatch

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        parts = urllib.parse.urlsplit(request.path)
        query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        path = urllib.parse.unquote(parts.path)
        with self._lock:
            self.log.append(LoggedRequest("GET", path, query, dict(request.headers.items())))
            throttle = next((t for t in self._throttles if path.startswith(t[0]) and t[1] > 0), None)
            if throttle:
                throttle[1] -= 1
            empty = next((e for e in self._empty if path.startswith(e[0]) and e[1] > 0), None)
            if empty:
                empty[1] -= 1
        if throttle:
            return self._send(request, throttle[2], {"error": "Too many requests"}, throttle[3])
        host = request.headers.get("Host") or self.url.split("://", 1)[1]
        routes = [
            (r"/api/v1/accounts/lookup", self._mastodon_lookup),
            (r"/api/v1/accounts/(?P<id>[^/]+)/statuses", self._mastodon_statuses),
            (r"/xrpc/app\.bsky\.feed\.getAuthorFeed", self._bluesky_feed),
            (r"/2/users/by/username/(?P<name>[^/]+)", self._twitter_user),
            (r"/2/users/(?P<id>[^/]+)/tweets", self._twitter_tweets),
        ]
        for pattern, route in routes:
            match = re.fullmatch(pattern, path)
            if match:
                status, body, headers = route(
                    query=query, host=host, request=request, empty=bool(empty), **match.groupdict()
                )
                return self._send(request, status, body, headers)
        self._send(request, 404, {"error": "Not found"}, {})

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, body, headers: dict) -> None:
        data = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json; charset=utf-8")
        request.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(data)

    def _account(self, name: str) -> FakeAccount | None:
        return self.accounts.get(name.lstrip("@").lower())

    def _by_id(self, account_id: str) -> FakeAccount | None:
        return next((a for a in self.accounts.values() if a.account_id == account_id), None)

    # ------------------------------------------------------------------ Mastodon

    def _mastodon_lookup(self, query, **_):
        account = self._account(query.get("acct", ""))
        if account is None:
            return 404, {"error": "Record not found"}, {}
        return 200, {"id": account.account_id, "username": account.name, "acct": account.name}, {}

    def _mastodon_status(self, account: FakeAccount, post: FakePost) -> dict:
        status = {
            "id": account.mastodon_id(post),
            "created_at": post.iso(),
            "spoiler_text": post.spoiler,
            "sensitive": bool(post.spoiler),
            "visibility": "public",
            "content": "" if post.boost else self._mastodon_quote(post) + mastodon_html(post.text),
            "reblog": None,
            "account": {"id": account.account_id, "username": account.name},
        }
        if post.boost:
            status["reblog"] = {
                "id": str(900000 + post.index),
                "created_at": post.iso(),
                "content": mastodon_html(post.text),
                "account": {"id": "1", "username": "someone"},
            }
        return status

    @staticmethod
    def _mastodon_quote(post: FakePost) -> str:
        if not post.quotes:
            return ""
        link = f'<a href="{html.escape(post.quotes)}">{html.escape(post.quotes)}</a>'
        return f'<p class="quote-inline">RE: {link}</p>'

    def _mastodon_statuses(self, id, query, host, **_):
        account = self._by_id(id)
        if account is None:
            return 404, {"error": "Record not found"}, {}
        limit = max(1, min(int(query.get("limit", 20)), 40))
        posts = account.timeline
        if "max_id" in query:
            posts = [p for p in posts if int(account.mastodon_id(p)) < int(query["max_id"])]
        page = posts[:limit]
        headers = {}
        if page and len(page) == limit:
            base = f"http://{host}/api/v1/accounts/{id}/statuses"
            headers["Link"] = (
                f'<{base}?limit={limit}&max_id={account.mastodon_id(page[-1])}>; rel="next", '
                f'<{base}?limit={limit}&min_id={account.mastodon_id(page[0])}>; rel="prev"'
            )
        return 200, [self._mastodon_status(account, p) for p in page], headers

    # ------------------------------------------------------------------ Bluesky

    def _bluesky_feed(self, query, empty, **_):
        try:
            limit = int(query.get("limit", 50))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            return 400, {"error": "InvalidRequest", "message": "limit must be between 1 and 100"}, {}
        actor = query.get("actor", "")
        if "." not in actor and not actor.startswith("did:"):
            return 400, {"error": "InvalidRequest", "message": "Error: actor must be a valid did or a handle"}, {}
        account = self._account(actor)
        if account is None:
            return 400, {"error": "InvalidRequest", "message": "Profile not found"}, {}
        cursor = query.get("cursor", "").split("~")[0]  # "N~K": the K-th empty page before N
        start = int(cursor) if cursor.isdigit() else 0
        if empty:  # the service skipped what it may not show: no items, still a cursor
            self._bluesky_gaps += 1
            return 200, {"feed": [], "cursor": f"{start}~{self._bluesky_gaps}"}, {}
        page = account.timeline[start : start + limit]
        feed = []
        for post in page:
            author = {
                "did": f"did:plc:{'other' if post.boost else account.account_id}",
                "handle": "someone.bsky.social" if post.boost else account.name,
            }
            item = {
                "post": {
                    "uri": account.bluesky_uri(post),
                    "cid": f"bafy{post.index}",
                    "author": author,
                    "record": bluesky_record(post.text, post.iso()),
                    "indexedAt": post.iso(),
                }
            }
            if post.boost:
                item["reason"] = {
                    "$type": REPOST,
                    "by": {"did": f"did:plc:{account.account_id}", "handle": account.name},
                    "indexedAt": post.iso(),
                }
            feed.append(item)
        body = {"feed": feed}
        if page and len(page) == limit:
            body["cursor"] = str(start + limit)
        return 200, body, {}

    # ------------------------------------------------------------------ Twitter v2

    def _twitter_auth(self, request) -> tuple | None:
        if request.headers.get("Authorization") != f"Bearer {self.bearer_token}":
            return 401, {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}, {}
        return None

    def _twitter_user(self, name, request, **_):
        if denied := self._twitter_auth(request):
            return denied
        account = self._account(name)
        if account is None:
            return (
                200,
                {
                    "errors": [
                        {
                            "value": name,
                            "detail": f"Could not find user with username: [{name}].",
                            "title": "Not Found Error",
                            "resource_type": "user",
                            "parameter": "username",
                            "resource_id": name,
                            "type": "https://api.twitter.com/2/problems/resource-not-found",
                        }
                    ]
                },
                {},
            )
        return 200, {"data": {"id": account.account_id, "name": account.name.title(), "username": account.name}}, {}

    def _twitter_tweets(self, id, query, request, empty, **_):
        if denied := self._twitter_auth(request):
            return denied
        account = self._by_id(id)
        if account is None:
            return (
                404,
                {"title": "Not Found Error", "detail": f"Could not find user with id: [{id}].", "status": 404},
                {},
            )
        try:
            limit = int(query.get("max_results", 10))
        except ValueError:
            limit = 0
        if not 5 <= limit <= 100:
            return (
                400,
                {
                    "title": "Invalid Request",
                    "detail": "One or more parameters to your request was invalid.",
                    "errors": [
                        {
                            "message": f"The `max_results` query parameter value [{query.get('max_results')}]"
                            " is not between 5 and 100"
                        }
                    ],
                },
                {},
            )
        if empty:
            return 200, {"meta": {"result_count": 0}}, {}
        token = query.get("pagination_token", "")
        start = int(token[3:]) if token.startswith("tok") and token[3:].isdigit() else 0
        fields = set(query.get("tweet.fields", "").split(","))
        page = account.timeline[start : start + limit]
        data = []
        for post in page:
            tweet = {"id": account.twitter_id(post), "edit_history_tweet_ids": [account.twitter_id(post)]}
            if post.boost:
                tweet["text"] = "RT @someone: " + _twitter_escape(post.text)
                if "referenced_tweets" in fields:
                    tweet["referenced_tweets"] = [{"type": "retweeted", "id": str(1600000000000000000 + post.index)}]
            elif post.note:
                tweet["text"] = _twitter_escape(post.text[:270]) + "… https://t.co/n0te" + str(post.index)
                if "note_tweet" in fields:
                    tweet["note_tweet"] = {"text": post.text, "entities": {}}
            else:
                tweet["text"] = _twitter_escape(post.text)
            if "created_at" in fields:
                tweet["created_at"] = post.iso()
            data.append(tweet)
        meta = {"result_count": len(data)}
        if data:
            meta.update(newest_id=data[0]["id"], oldest_id=data[-1]["id"])
            body = {"data": data, "meta": meta}
        else:
            body = {"meta": meta}
        if page and len(page) == limit:
            meta["next_token"] = f"tok{start + limit}"
        return 200, body, {}
