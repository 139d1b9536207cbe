"""Twitter/X archive exports ("Download an archive of your data").

Accepted: the export .zip (with ``data/tweets.js``, ``data/tweets-part1.js``, ... or the
older ``data/tweet.js`` / ``tweet-partN.js`` names; a top folder around ``data/`` is
fine), or one ``tweets*.js`` file given directly.

Each file is ``window.YTD.tweets.part0 = [ {"tweet": {...}}, ... ]``. Texts are kept as
the export has them (HTML-escaped like the API's, e.g. ``&amp;``: the data stage's
``fix_text`` undoes exactly that, as the reference did). Long tweets: the export cuts a
long tweet's ``full_text`` and keeps the whole text in ``data/note-tweet.js``; the full
note text replaces the cut one when the cut text (without its trailing ellipsis and
t.co link) starts the note text and the two were created within a few seconds. The
comparison ignores which t.co URL wraps a link (the note may wrap the same link in
another one) and a reply's leading @mentions (the note leaves them out; they are put
back in front of the note text).
"""

from __future__ import annotations

import contextlib
import heapq
import html
import io
import os
import re
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO

from botfleet.timestamps import now_iso
from botfleet_jobs.posts import Post, SourceError
from botfleet_jobs.sources.json_stream import iter_array

TWEETS_FILE = re.compile(r"(?:^|/)data/tweets?(?:-part(?P<part>\d+))?\.js$")
NOTES_FILE = re.compile(r"(?:^|/)data/note-tweets?(?:-part(?P<part>\d+))?\.js$")
_WRAPPER = re.compile(r"\A\s*window\.YTD\.[A-Za-z0-9_]+\.part\d+\s*=\s*")
_TRAILING_LINK = re.compile(r"(?:\s*https?://t\.co/\w+)+\s*$")
_TRAILING_ELLIPSIS = re.compile(r"\s*(?:…|\.\.\.)\s*$")
_TCO_LINK = re.compile(r"https?://t\.co/\w+")
_LEADING_MENTIONS = re.compile(r"\A(?:\.?@\w+\s+)+")
NOTE_MATCH_SECONDS = 10
_TWITTER_EPOCH_MS = 1288834974657


def fetch(config: Any, max_posts: int, storage: Any, progress: Callable[[int], Any] | None = None) -> list[Post]:
    """The newest ``max_posts`` tweets of the archive at ``config.uri``.

    The archive is copied to a temporary file (removed after) and read entry by entry:
    memory follows ``max_posts``, not the archive's size.
    """
    with tempfile.TemporaryDirectory(prefix="botfleet-archive-") as folder:
        path = storage.download_file(config.uri, os.path.join(folder, "archive"))
        with open(path, "rb") as stream:
            posts = read_archive(stream, config.uri.rsplit("/", 1)[-1], max_posts)
    if progress and posts:
        progress(len(posts))
    return posts


def parse_archive(data: bytes, name: str = "archive", max_posts: int | None = None) -> list[Post]:
    """The newest ``max_posts`` (default: all) tweets of an export held in memory."""
    return read_archive(io.BytesIO(data), name, max_posts)


def read_archive(stream: BinaryIO, name: str, max_posts: int | None = None) -> list[Post]:
    """The newest ``max_posts`` tweets of an export (a zip, or one tweets.js file), newest first."""
    head = stream.read(200)
    stream.seek(0)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _read_zip(stream, max_posts)
    if name.lower().endswith(".zip"):
        raise SourceError(f"{name}: not a zip file (it starts with {head[:8]!r})")
    if _looks_like_js(head):
        newest = _newest(_entries(_rewinding(stream), name, "tweet"), max_posts)
        return _to_posts(newest, [])
    raise SourceError(f"{name}: neither a zip archive nor a tweets.js file (it starts with {head[:16]!r})")


def _rewinding(stream: BinaryIO) -> Callable[[], contextlib.AbstractContextManager]:
    """Open ``stream`` again from its start (and leave it open): what ``_entries`` needs."""

    def open_again():
        stream.seek(0)
        return contextlib.nullcontext(stream)

    return open_again


def _looks_like_js(data: bytes) -> bool:
    head = data[:200].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"window.YTD.") or head.startswith(b"[")


def _read_zip(stream: BinaryIO, max_posts: int | None) -> list[Post]:
    try:
        archive = zipfile.ZipFile(stream)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise SourceError(f"not a valid zip file ({exc})") from None
    with archive:
        return _read_members(archive, max_posts)


def _read_members(archive: zipfile.ZipFile, max_posts: int | None) -> list[Post]:
    members = [info for info in archive.infolist() if not info.is_dir()]
    if not members:
        raise SourceError("the zip is empty: no data/tweets.js in it")
    names = [info.filename for info in members]
    tweet_files = sorted((n for n in names if TWEETS_FILE.search(n)), key=lambda n: _part_key(TWEETS_FILE, n))
    if not tweet_files:
        shown = ", ".join(sorted(names)[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        raise SourceError(f"no data/tweets.js (or tweets-partN.js) in the zip; it holds {shown}")
    note_files = sorted((n for n in names if NOTES_FILE.search(n)), key=lambda n: _part_key(NOTES_FILE, n))
    newest = _newest((e for n in tweet_files for e in _member_entries(archive, n, "tweet")), max_posts)
    if not note_files:  # most archives: no long tweets, nothing to match
        return _to_posts(newest, [])
    # Only the notes that can match a kept tweet are kept: those created within seconds of one.
    seconds = {int(row.created.timestamp()) for row in newest if row.created}
    near = {s + d for s in seconds for d in range(-NOTE_MATCH_SECONDS, NOTE_MATCH_SECONDS + 1)}
    notes = [e for n in note_files for e in _member_entries(archive, n, "noteTweet") if _note_second(e[2]) in near]
    return _to_posts(newest, notes)


def _part_key(pattern: re.Pattern, name: str) -> tuple:
    match = pattern.search(name)
    part = match.group("part") if match else None
    return (name[: match.start()] if match else name, int(part) if part else -1)


def _member_entries(archive: zipfile.ZipFile, name: str, key: str) -> Iterator[tuple[str, int, dict]]:
    if archive.getinfo(name).flag_bits & 0x1:
        raise SourceError(
            f"{name}: the zip is password-protected; download the archive again and upload it as it comes"
        )
    try:
        yield from _entries(lambda: archive.open(name), name, key)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
        raise SourceError(f"{name}: cannot read it from the zip ({exc})") from None


def _entries(open_stream: Callable[[], BinaryIO], name: str, key: str) -> Iterator[tuple[str, int, dict]]:
    """(file, index, object) for each entry of one ``window.YTD.x.partN = [...]`` file."""
    with open_stream() as stream:
        head = stream.read(256).decode("utf-8", errors="replace").lstrip("\ufeff")
    match = _WRAPPER.match(head)
    if not match and not head.lstrip().startswith("["):
        raise SourceError(f"{name}: expected `window.YTD.<name>.part0 = [...]`, found {head[:30]!r}")
    with open_stream() as stream:
        for index, item in enumerate(iter_array(stream, name, match.end() if match else 0)):
            if isinstance(item, dict) and isinstance(item.get(key), dict):
                item = item[key]
            if not isinstance(item, dict):
                raise SourceError(f"{name}: entry {index} is not an object")
            yield name, index, item


_MONTHS = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}


def _parse_ctime_utc(value: str) -> datetime:
    """The common "+0000" case by hand: strptime dominated the data stage's profile."""
    _, month, day, clock, offset, year = value.split()
    if offset != "+0000" or month not in _MONTHS:
        raise ValueError(value)
    hour, minute, second = clock.split(":")
    return datetime(int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second), tzinfo=UTC)


def parse_twitter_date(value: Any) -> datetime | None:
    """``Wed Oct 10 20:19:24 +0000 2018`` (archive, API v1.1) or ISO 8601 (notes, API v2)."""
    if not isinstance(value, str) or not value:
        return None
    for parse in (
        _parse_ctime_utc,
        lambda v: datetime.strptime(v, "%a %b %d %H:%M:%S %z %Y"),
        lambda v: datetime.fromisoformat(v.replace("Z", "+00:00")),
    ):
        try:
            parsed = parse(value.strip())
        except ValueError:
            continue
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _snowflake_time(tweet_id: str) -> float | None:
    if tweet_id.isdigit() and int(tweet_id) > 30_000_000_000:  # snowflakes began in Nov 2010
        return ((int(tweet_id) >> 22) + _TWITTER_EPOCH_MS) / 1000.0
    return None


@dataclass(frozen=True)
class _Row:
    """One tweet of the export, as read, before its Post is made."""

    order: tuple  # newest first when sorted in reverse: (time, numeric id, -position in the files)
    tweet_id: str
    text: str
    is_retweet: bool
    created: datetime | None
    created_text: Any


def _newest(entries: Iterable[tuple[str, int, dict]], max_posts: int | None) -> list[_Row]:
    """The ``max_posts`` newest tweets (all when None), in the files' order; a tweet in
    two files (tweet.js and tweets.js) counts once."""
    heap: list[tuple[tuple, _Row]] = []  # the smallest order first: the one to drop
    kept: set[str] = set()
    for position, (name, index, tweet) in enumerate(entries):
        text = tweet.get("full_text", tweet.get("text"))
        if not isinstance(text, str):
            raise SourceError(f"{name}: entry {index} has no full_text or text")
        tweet_id = str(tweet.get("id_str") or tweet.get("id") or f"{name}#{index}")
        if tweet_id in kept:
            continue
        created = parse_twitter_date(tweet.get("created_at"))
        when = created.timestamp() if created else _snowflake_time(tweet_id)
        order = (when or 0.0, int(tweet_id) if tweet_id.isdigit() else 0, -position)
        is_retweet = text.startswith("RT @") or bool(tweet.get("retweeted_status"))
        row = _Row(order, tweet_id, text, is_retweet, created, tweet.get("created_at"))
        if max_posts is None or len(heap) < max_posts:
            heapq.heappush(heap, (order, row))
        elif max_posts and order > heap[0][0]:
            kept.discard(heapq.heappushpop(heap, (order, row))[1].tweet_id)
        else:
            continue
        kept.add(tweet_id)
    return sorted((row for _, row in heap), key=lambda row: -row.order[2])


def _to_posts(rows: list[_Row], notes: list[tuple[str, int, dict]]) -> list[Post]:
    """Posts, newest first; a cut long tweet gets its note's whole text."""
    note_index = _NoteIndex(notes)
    posts = []
    for row in rows:
        text = row.text
        if not row.is_retweet and notes:
            text = note_index.full_text(text, row.created) or text
        created = now_iso(row.created) if row.created else row.created_text
        posts.append((row.order, Post(row.tweet_id, text, row.is_retweet, created)))
    posts.sort(key=lambda pair: pair[0], reverse=True)
    return [post for _, post in posts]


def _note_second(note: dict) -> int | None:
    created = parse_twitter_date(note.get("createdAt") or note.get("created_at"))
    return int(created.timestamp()) if created else None


class _NoteIndex:
    """Note tweets by creation second, each used at most once."""

    def __init__(self, notes: list[tuple[str, int, dict]]) -> None:
        self.by_second: dict[int, list[list]] = {}
        for _name, _index, note in notes:
            core = note.get("core") if isinstance(note.get("core"), dict) else {}
            text = core.get("text", note.get("text"))
            created = parse_twitter_date(note.get("createdAt") or note.get("created_at"))
            if isinstance(text, str) and created:
                entry = [created, text, _comparable(html.unescape(text)), False]  # [time, text, comparable, used]
                self.by_second.setdefault(int(created.timestamp()), []).append(entry)

    def full_text(self, tweet_text: str, created: datetime | None) -> str | None:
        if created is None or not self.by_second:
            return None
        prefix = _comparable(_TRAILING_ELLIPSIS.sub("", _TRAILING_LINK.sub("", html.unescape(tweet_text))))
        if not prefix:
            return None
        second = int(created.timestamp())
        best = None
        for offset in range(-NOTE_MATCH_SECONDS, NOTE_MATCH_SECONDS + 1):
            for entry in self.by_second.get(second + offset, ()):
                if entry[3] or not entry[2].startswith(prefix):
                    continue
                distance = abs((entry[0] - created).total_seconds())
                if distance <= NOTE_MATCH_SECONDS and (best is None or distance < best[0]):
                    best = (distance, entry)
        if best is None:
            return None
        best[1][3] = True
        note_text = best[1][1]
        mentions = _LEADING_MENTIONS.match(tweet_text)
        return mentions.group(0) + note_text if mentions and not _LEADING_MENTIONS.match(note_text) else note_text


def _comparable(text: str) -> str:
    """A text as a cut tweet and its note can both be compared: no leading @mentions,
    every t.co URL alike, whitespace collapsed."""
    text = _TCO_LINK.sub("https://t.co/", _LEADING_MENTIONS.sub("", text))
    return " ".join(text.split())
