"""A plain dataset of posts: JSON Lines or CSV.

Each record has a ``text`` field (JSONL) or column (CSV), and optionally ``is_retweet``
(true/false, 1/0, or JSON booleans; missing or empty means false), ``id`` (defaults to
the line number) and ``created_at`` (kept as given).

Order: the file is taken to be newest first, like a timeline; records are not re-sorted
(their dates may be in any format), and ``maxPosts`` keeps the first records. Blank
JSONL lines are skipped.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Callable

from botfleet_jobs.posts import Post, SourceError

_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n", ""}


def fetch(config: Any, max_posts: int, storage: Any, progress: Callable[[int], Any] | None = None) -> list[Post]:
    data = storage.read_bytes(config.uri)
    posts = parse_dataset(data, getattr(config, "format", "jsonl") or "jsonl", max_posts)
    if progress and posts:
        progress(len(posts))
    return posts


def parse_dataset(data: bytes, fmt: str = "jsonl", max_posts: int | None = None) -> list[Post]:
    text = _decode(data)
    if fmt == "jsonl":
        return _jsonl(text, max_posts)
    if fmt == "csv":
        return _csv(text, max_posts)
    raise SourceError(f"unknown dataset format {fmt!r} (use jsonl or csv)")


def _decode(data: bytes) -> str:
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = bom + exc.start
        line = data.count(b"\n", 0, offset) + 1
        raise SourceError(f"not UTF-8: byte 0x{data[offset]:02x} at offset {offset} (line {line})") from None


def parse_bool(value: Any, where: str) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise SourceError(f"{where}: is_retweet must be true/false or 1/0, got {value!r}")


def _record(fields: dict, where: str, default_id: str) -> Post:
    text = fields.get("text")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise SourceError(f"{where}: `text` must be a string, got {type(text).__name__}")
    post_id = fields.get("id")
    created_at = fields.get("created_at")
    return Post(
        id=str(post_id) if post_id not in (None, "") else default_id,
        text=text,
        is_retweet=parse_bool(fields.get("is_retweet"), where),
        created_at=str(created_at) if created_at not in (None, "") else None,
    )


def _jsonl(text: str, max_posts: int | None) -> list[Post]:
    posts: list[Post] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if max_posts is not None and len(posts) >= max_posts:
            break
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SourceError(f"{where}: malformed JSON at column {exc.colno} ({exc.msg})") from None
        if not isinstance(value, dict):
            raise SourceError(f"{where}: expected a JSON object, got {type(value).__name__}")
        if "text" not in value:
            fields = ", ".join(sorted(value)[:8]) or "none"
            raise SourceError(f"{where}: no `text` field (fields: {fields})")
        posts.append(_record(value, where, str(number)))
    return posts


def _csv(text: str, max_posts: int | None) -> list[Post]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        columns = reader.fieldnames
    except csv.Error as exc:
        raise SourceError(f"line 1: malformed CSV ({exc})") from None
    if not columns:
        raise SourceError("line 1: no header row (an empty file; a `text` column is needed)")
    if "text" not in columns:
        shown = ", ".join(c for c in columns[:8])
        raise SourceError(f"line 1: no `text` column in the header (columns: {shown})")
    posts: list[Post] = []
    while max_posts is None or len(posts) < max_posts:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise SourceError(f"line {reader.line_num}: malformed CSV ({exc})") from None
        # line_num is the line the record ends on (the line, for one-line records).
        posts.append(_record(row, f"line {reader.line_num}", str(reader.line_num)))
    return posts
