"""A plain dataset of posts: JSON Lines or CSV.

Each record has a ``text`` field (JSONL) or column (CSV), and optionally ``is_retweet``
(true/false, 1/0, or JSON booleans; missing or empty means false), ``id`` (defaults to
the line number) and ``created_at`` (kept as given).

Order: the file is taken to be newest first, like a timeline; records are not re-sorted
(their dates may be in any format), and ``maxPosts`` keeps the first records. Blank
JSONL lines are skipped. The file is read line by line and only up to ``maxPosts``
records: memory follows ``maxPosts`` (and the longest line), not the file's size.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from botfleet_jobs.posts import Post, SourceError

MAX_LINE = 8 << 20  # no real post comes near this

_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n", ""}


def fetch(config: Any, max_posts: int, storage: Any, progress: Callable[[int], Any] | None = None) -> list[Post]:
    with tempfile.TemporaryDirectory(prefix="botfleet-dataset-") as folder:
        path = storage.download_file(config.uri, os.path.join(folder, "dataset"))
        with open(path, "rb") as stream:
            posts = read_dataset(stream, getattr(config, "format", "jsonl") or "jsonl", max_posts)
    if progress and posts:
        progress(len(posts))
    return posts


def parse_dataset(data: bytes, fmt: str = "jsonl", max_posts: int | None = None) -> list[Post]:
    return read_dataset(io.BytesIO(data), fmt, max_posts)


def read_dataset(stream: BinaryIO, fmt: str = "jsonl", max_posts: int | None = None) -> list[Post]:
    if fmt == "jsonl":
        return _jsonl(_lines(stream), max_posts)
    if fmt == "csv":
        return _csv(_lines(stream), max_posts)
    raise SourceError(f"unknown dataset format {fmt!r} (use jsonl or csv)")


def _lines(stream: BinaryIO) -> Iterator[str]:
    """The file's lines as text (line ends kept, a byte order mark dropped)."""
    offset = 0
    for number, raw in enumerate(iter(lambda: stream.readline(MAX_LINE + 1), b""), start=1):
        if len(raw) > MAX_LINE:
            raise SourceError(f"line {number}: longer than {MAX_LINE >> 20} MB")
        start = 3 if number == 1 and raw.startswith(b"\xef\xbb\xbf") else 0
        try:
            yield raw[start:].decode("utf-8")
        except UnicodeDecodeError as exc:
            at = offset + start + exc.start
            raise SourceError(
                f"not UTF-8: byte 0x{raw[start + exc.start]:02x} at offset {at} (line {number})"
            ) from None
        offset += len(raw)


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


def _jsonl(lines: Iterator[str], max_posts: int | None) -> list[Post]:
    posts: list[Post] = []
    for number, line in enumerate(lines, start=1):
        if max_posts is not None and len(posts) >= max_posts:
            break
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SourceError(f"{where}: malformed JSON at column {exc.colno} ({exc.msg})") from None
        except RecursionError:
            raise SourceError(f"{where}: JSON nested too deeply") from None
        if not isinstance(value, dict):
            raise SourceError(f"{where}: expected a JSON object, got {type(value).__name__}")
        if "text" not in value:
            fields = ", ".join(sorted(value)[:8]) or "none"
            raise SourceError(f"{where}: no `text` field (fields: {fields})")
        posts.append(_record(value, where, str(number)))
    return posts


def _csv(lines: Iterator[str], max_posts: int | None) -> list[Post]:
    reader = csv.DictReader(lines)
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
