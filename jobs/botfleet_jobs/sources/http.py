"""The HTTP client the Mastodon, Bluesky and Twitter sources share.

One place for what every public API needs: a User-Agent, time-outs, retries with
rate-limit handling, JSON decoding, one-line errors, and the paging loop.

Retries: HTTP 429 and 5xx answers and connection failures are retried up to
``max_tries`` times in all. The wait honours ``Retry-After`` (seconds or an HTTP date),
else an ``X-RateLimit-Reset`` / ``x-rate-limit-reset`` header (epoch seconds, as Twitter
sends, or an ISO 8601 time, as Mastodon sends), else exponential backoff with jitter;
every single wait is capped at ``max_wait_s``. Other 4xx answers raise at once.

The module-level settings are read when a client is made, so tests (and the CLI) can
change them: ``MAX_TRIES``, ``MAX_WAIT_S``, ``BACKOFF_S``, ``TIMEOUT_S`` and ``SLEEP``.
"""

from __future__ import annotations

import email.utils
import random
import re
import sys
import time
import urllib.parse
from collections.abc import Callable, Container, Hashable
from datetime import UTC, datetime
from typing import Any

import requests
from tqdm import tqdm

from botfleet import __version__
from botfleet.errors import one_line

USER_AGENT = f"botfleet/{__version__}"
MAX_TRIES = 6  # for answers that say "later" (429, 5xx)
NO_ANSWER_TRIES = 3  # for a service that refuses the connection or does not answer
MAX_WAIT_S = 60.0
BACKOFF_S = 1.0
TIMEOUT_S = (10.0, 30.0)  # (connect, read), each call
DEADLINE_S = 600.0  # one client's calls, retries and waits together (one handle's fetch)
SLEEP: Callable[[float], None] = time.sleep
CLOCK: Callable[[], float] = time.monotonic


def _notice(message: str) -> None:
    """Say on stderr what a fetch waits for, above any progress bar."""
    tqdm.write(message, file=sys.stderr)


NOTICE: Callable[[str], None] = _notice


class HttpError(Exception):
    """A request failed for good. ``status`` is None when no answer came back;
    ``body`` is the decoded JSON answer when there was one."""

    def __init__(self, url: str, status: int | None, detail: str, body: Any = None) -> None:
        self.url = url
        self.status = status
        self.detail = detail
        self.body = body
        if status is None:
            message = detail
        else:
            message = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
        super().__init__(message)


def error_detail(body: Any, text: str = "") -> str:
    """The human part of an API's error answer (Mastodon, Bluesky, Twitter shapes)."""
    if isinstance(body, dict):
        errors = body.get("errors")
        first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
        for value in (
            body.get("message"),  # Bluesky {"error": "InvalidRequest", "message": ...}
            body.get("error_description"),
            body.get("detail"),  # Twitter v2 problem
            first.get("detail"),
            first.get("message"),
            body.get("error"),  # Mastodon {"error": "Record not found"}
            body.get("title"),
        ):
            if isinstance(value, str) and value.strip():
                return one_line(value, 200)
    title = re.search(r"<title[^>]*>(.*?)</title>", text or "", re.IGNORECASE | re.DOTALL)
    if title and title.group(1).strip():  # an HTML error page (a proxy, a CDN)
        return one_line(title.group(1), 200)
    return one_line(text, 200) if text.strip() else ""


def retry_after_seconds(headers: Any, now: float | None = None) -> float | None:
    """How long the server asks us to wait, from the answer's headers; None if it does not say."""
    now = time.time() if now is None else now
    value = headers.get("Retry-After")
    if value:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                return max(0.0, when.timestamp() - now)
    value = headers.get("X-RateLimit-Reset") or headers.get("x-rate-limit-reset")
    if value:
        value = value.strip()
        try:
            number = float(value)
        except ValueError:
            try:
                when = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return max(0.0, when.timestamp() - now)
        # An epoch time (Twitter, GitHub); small numbers are seconds from now.
        return max(0.0, number - now) if number > 1e9 else max(0.0, number)
    return None


class HttpClient:
    """A ``requests.Session`` with botfleet's User-Agent, time-outs and retries.

    Each call is bounded (``timeout``) and so is everything one client does
    (``deadline_s``, from its creation): a service that accepts connections and never
    answers fails the fetch with a message naming it and how long was waited.
    """

    def __init__(
        self,
        headers: dict | None = None,
        *,
        max_tries: int | None = None,
        max_wait_s: float | None = None,
        backoff_s: float | None = None,
        timeout: Any = None,
        deadline_s: float | None = None,
        sleep: Callable[[float], None] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.max_tries = max(1, MAX_TRIES if max_tries is None else max_tries)
        self.max_wait_s = MAX_WAIT_S if max_wait_s is None else max_wait_s
        self.backoff_s = BACKOFF_S if backoff_s is None else backoff_s
        self.timeout = TIMEOUT_S if timeout is None else timeout
        self.sleep = SLEEP if sleep is None else sleep
        self.deadline_s = DEADLINE_S if deadline_s is None else deadline_s
        self.started = CLOCK()
        self.session = session or requests.Session()
        self.session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        if headers:
            self.session.headers.update(headers)

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    def _backoff(self, failures: int) -> float:
        base = self.backoff_s * (2 ** (failures - 1))
        return min(self.max_wait_s, base * random.uniform(0.5, 1.0))

    def get(self, url: str, params: dict | None = None) -> requests.Response:
        """GET with retries; returns a 2xx response or raises :class:`HttpError`."""
        failures = 0
        while True:
            try:
                response = self.session.get(url, params=params, timeout=self.timeout)
            except requests.Timeout:
                error = HttpError(url, None, f"no answer from {_host(url)} within {_read_timeout(self.timeout):g} s")
                wait = None
            except requests.RequestException as exc:
                error = HttpError(url, None, f"cannot connect to {_host(url)} ({_reason(exc)})")
                wait = None
            else:
                if response.ok:
                    return response
                body = _json_or_none(response)
                error = HttpError(url, response.status_code, error_detail(body, response.text), body)
                if response.status_code != 429 and response.status_code < 500:
                    raise error
                wait = retry_after_seconds(response.headers)
            failures += 1
            self._wait_or_give_up(error, failures, wait)

    def _wait_or_give_up(self, error: HttpError, failures: int, wait: float | None) -> None:
        """Sleep before the next try, or raise ``error`` saying how long was tried."""
        tries = self.max_tries if error.status is not None else min(self.max_tries, NO_ANSWER_TRIES)
        delay = min(self.max_wait_s, wait) if wait is not None else self._backoff(failures)
        waited = CLOCK() - self.started
        if failures < tries and waited + delay <= self.deadline_s:
            NOTICE(f"waiting for {_host(error.url)}: {error.detail or error}; trying again in {delay:.0f} s")
            self.sleep(delay)
            return
        tried = f"after {failures} {'try' if failures == 1 else 'tries'} in {waited:.0f} s"
        if error.status is not None:
            what = "rate limited" if error.status == 429 else "server error"
            error.args = (f"{what} (HTTP {error.status}) {tried}" + (f": {error.detail}" if error.detail else ""),)
        else:
            error.args = (f"{error.detail}, {tried}",)
        raise error

    def get_json(self, url: str, params: dict | None = None) -> tuple[Any, requests.Response]:
        """GET and decode JSON; an answer that is not JSON is an :class:`HttpError`."""
        response = self.get(url, params)
        try:
            return response.json(), response
        except ValueError:
            kind = response.headers.get("Content-Type", "no content type").split(";")[0]
            raise HttpError(url, response.status_code, f"answer is not JSON ({kind}) from {_host(url)}") from None


def paginate(
    fetch_page: Callable[[Any], tuple[list, Hashable | None]],
    max_items: int,
    progress: Callable[[int], Any] | None = None,
    empty_retries: int = 0,
    empty_pages: int = 0,
    known: Container[str] = frozenset(),
) -> list:
    """Collect items page by page, newest first, up to ``max_items``.

    ``known``: ids already stored (a refresh); paging stops at the first item whose ``id``
    is one of them, which is left out with everything after it.

    ``fetch_page(state)`` gets None for the first page and afterwards the ``next`` value the
    previous call returned (a URL, a cursor, a token); it returns ``(items, next)``, with
    ``next`` None on the last page. Paging stops at ``max_items``, at a page without a
    ``next``, at an empty page, or when a ``next`` repeats (a server bug; never loop).

    ``empty_retries``: while nothing has been collected yet, an empty page is asked for
    again up to this many times (the reference did this for Twitter's flaky timeline).
    ``empty_pages``: an empty page that still carries a ``next`` is followed, up to this
    many in a row (a service that pages over gaps in what it may show).
    """
    items: list = []
    state: Any = None
    seen: set = set()
    retries_left = empty_retries
    empty_in_a_row = 0
    while len(items) < max_items:
        page, next_state = fetch_page(state)
        if not page and not items and retries_left > 0:
            retries_left -= 1
            continue
        page = page[: max_items - len(items)]
        seen_before = next((i for i, item in enumerate(page) if getattr(item, "id", None) in known), None)
        if seen_before is not None:
            page, next_state = page[:seen_before], None  # the rest is stored already
        items.extend(page)
        if progress and page:
            progress(len(page))
        empty_in_a_row = 0 if page else empty_in_a_row + 1
        if empty_in_a_row > empty_pages or next_state is None or next_state in seen:
            break
        seen.add(next_state)
        state = next_state
    return items


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc or url


def _read_timeout(timeout: Any) -> float:
    return timeout[1] if isinstance(timeout, tuple) else float(timeout)


def _reason(exc: BaseException) -> str:
    text = str(exc)
    lowered = text.lower()
    if "refused" in lowered:
        return "connection refused"
    if "name or service not known" in lowered or "nodename nor servname" in lowered or "name resolution" in lowered:
        return "host name not found"
    if "certificate" in lowered or "ssl" in lowered:
        return "TLS error: " + one_line(text, 120)
    return one_line(text, 120) or type(exc).__name__


__all__ = ["HttpClient", "HttpError", "paginate", "retry_after_seconds", "error_detail", "USER_AGENT"]
