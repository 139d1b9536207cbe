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

import html
import io
import json
import re
import zipfile
import zlib
from datetime import datetime, timezone
from typing import Any, Callable

from botfleet_jobs.posts import Post, SourceError

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
    data = storage.read_bytes(config.uri)
    posts = parse_archive(data, config.uri.rsplit("/", 1)[-1])[:max_posts]
    if progress and posts:
        progress(len(posts))
    return posts


def parse_archive(data: bytes, name: str = "archive") -> list[Post]:
    """All tweets of an export (zip bytes, or one tweets.js file's bytes), newest first."""
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _parse_zip(data)
    if name.lower().endswith(".zip"):
        raise SourceError(f"{name}: not a zip file (it starts with {data[:8]!r})")
    if _looks_like_js(data):
        return _to_posts(_read_entries(data, name, "tweet"), [])
    raise SourceError(f"{name}: neither a zip archive nor a tweets.js file (it starts with {data[:16]!r})")


def _looks_like_js(data: bytes) -> bool:
    head = data[:200].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"window.YTD.") or head.startswith(b"[")


def _parse_zip(data: bytes) -> list[Post]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = [n for n in archive.namelist() if not n.endswith("/")]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise SourceError(f"not a valid zip file ({exc})") from None
    if not names:
        raise SourceError("the zip is empty: no data/tweets.js in it")
    tweet_files = sorted((n for n in names if TWEETS_FILE.search(n)), key=lambda n: _part_key(TWEETS_FILE, n))
    if not tweet_files:
        shown = ", ".join(sorted(names)[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        raise SourceError(f"no data/tweets.js (or tweets-partN.js) in the zip; it holds {shown}")
    note_files = sorted((n for n in names if NOTES_FILE.search(n)), key=lambda n: _part_key(NOTES_FILE, n))
    entries = [e for n in tweet_files for e in _read_entries(_member(archive, n), n, "tweet")]
    notes = [e for n in note_files for e in _read_entries(_member(archive, n), n, "noteTweet")]
    return _to_posts(entries, notes)


def _part_key(pattern: re.Pattern, name: str) -> tuple:
    match = pattern.search(name)
    part = match.group("part") if match else None
    return (name[: match.start()] if match else name, int(part) if part else -1)


def _member(archive: zipfile.ZipFile, name: str) -> bytes:
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, zlib.error, OSError, ValueError, NotImplementedError) as exc:
        raise SourceError(f"{name}: cannot read it from the zip ({exc})") from None


def _read_entries(data: bytes, name: str, key: str) -> list[tuple[str, int, dict]]:
    """Decode one ``window.YTD.x.partN = [...]`` file into (file, index, object) entries."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{name}: not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    match = _WRAPPER.match(text)
    start = match.end() if match else 0
    if not match and not text.lstrip().startswith("["):
        raise SourceError(f"{name}: expected `window.YTD.<name>.part0 = [...]`, found {text[:30]!r}")
    try:
        value = json.loads(text[start:])
    except json.JSONDecodeError as exc:
        position = start + exc.pos
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
        raise SourceError(f"{name}: malformed JSON at line {line} column {column} ({exc.msg})") from None
    if not isinstance(value, list):
        raise SourceError(f"{name}: expected a JSON array after the `window.YTD` assignment, got {type(value).__name__}")
    entries = []
    for index, item in enumerate(value):
        if isinstance(item, dict) and isinstance(item.get(key), dict):
            item = item[key]
        if not isinstance(item, dict):
            raise SourceError(f"{name}: entry {index} is not an object")
        entries.append((name, index, item))
    return entries


_MONTHS = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}


def _parse_ctime_utc(value: str) -> datetime:
    """The common "+0000" case by hand: strptime dominated the data stage's profile."""
    _, month, day, clock, offset, year = value.split()
    if offset != "+0000" or month not in _MONTHS:
        raise ValueError(value)
    hour, minute, second = clock.split(":")
    return datetime(int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second), tzinfo=timezone.utc)


def parse_twitter_date(value: Any) -> datetime | None:
    """``Wed Oct 10 20:19:24 +0000 2018`` (archive, API v1.1) or ISO 8601 (notes, API v2)."""
    if not isinstance(value, str) or not value:
        return None
    for parse in (_parse_ctime_utc, lambda v: datetime.strptime(v, "%a %b %d %H:%M:%S %z %Y"), lambda v: datetime.fromisoformat(v.replace("Z", "+00:00")),
    ):
        try:
            parsed = parse(value.strip())
        except ValueError:
            continue
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None


def iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _snowflake_time(tweet_id: str) -> float | None:
    if tweet_id.isdigit() and int(tweet_id) > 30_000_000_000:  # snowflakes began in Nov 2010
        return ((int(tweet_id) >> 22) + _TWITTER_EPOCH_MS) / 1000.0
    return None


def _to_posts(entries: list[tuple[str, int, dict]], notes: list[tuple[str, int, dict]]) -> list[Post]:
    note_index = _NoteIndex(notes)
    rows = []
    seen: set[str] = set()
    for name, index, tweet in entries:
        text = tweet.get("full_text", tweet.get("text"))
        if not isinstance(text, str):
            raise SourceError(f"{name}: entry {index} has no full_text or text")
        tweet_id = str(tweet.get("id_str") or tweet.get("id") or f"{name}#{index}")
        if tweet_id in seen:  # the same tweet in tweet.js and tweets.js
            continue
        seen.add(tweet_id)
        created = parse_twitter_date(tweet.get("created_at"))
        is_retweet = text.startswith("RT @") or bool(tweet.get("retweeted_status"))
        if not is_retweet and notes:
            text = note_index.full_text(text, created) or text
        when = created.timestamp() if created else _snowflake_time(tweet_id)
        rows.append(((when or 0.0, int(tweet_id) if tweet_id.isdigit() else 0),
                     Post(tweet_id, text, is_retweet, iso(created) if created else tweet.get("created_at"))))
    rows.sort(key=lambda row: row[0], reverse=True)
    return [post for _, post in rows]


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
