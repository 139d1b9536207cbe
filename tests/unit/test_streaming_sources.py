"""Archives and datasets read entry by entry: the same posts whatever the chunking, memory
that follows ``maxPosts`` and not the file, and one-line errors for encrypted or absurd files."""

from __future__ import annotations

import io
import json
import random
import tracemalloc
import zipfile

import pytest

from botfleet import api
from botfleet.storage import Storage, file_uri
from botfleet_jobs.posts import SourceError
from botfleet_jobs.sources import dataset, fetch_posts, json_stream
from botfleet_jobs.sources.archive import parse_archive
from botfleet_jobs.sources.dataset import parse_dataset


def tweets_js(count: int, seed: int = 0, text=lambda i: f"tweet number {i} with ünïcödé & more") -> bytes:
    rng = random.Random(seed)
    ids = rng.sample(range(1_500_000_000_000_000_000, 1_600_000_000_000_000_000), count)  # not in time order
    entries = [{"tweet": {"id_str": str(i), "full_text": text(n)}} for n, i in enumerate(ids)]
    return ("window.YTD.tweets.part0 = " + json.dumps(entries, indent=2, ensure_ascii=False)).encode()


def zip_of(files: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def error_of(call) -> str:
    with pytest.raises(SourceError) as info:
        call()
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 16])
def test_same_posts_whatever_the_chunk_size(monkeypatch, chunk):
    data = tweets_js(300)
    expected = parse_archive(data, "tweets.js")
    monkeypatch.setattr(json_stream, "CHUNK", chunk)
    assert parse_archive(data, "tweets.js") == expected
    assert parse_archive(zip_of({"data/tweets.js": data}), "a.zip", max_posts=25) == expected[:25]
    assert [p.id for p in expected] == sorted((p.id for p in expected), reverse=True)


@pytest.mark.parametrize("chunk", [1, 5, 1 << 16])
def test_error_positions_survive_chunking(monkeypatch, chunk):
    monkeypatch.setattr(json_stream, "CHUNK", chunk)
    broken = (
        'window.YTD.tweets.part0 = [\n  {"tweet": {"id_str": "1", "full_text": "ü"}},\n'
        '  {"tweet": {"id_str": "2" "full_text": "y"}}\n]'
    )
    assert error_of(lambda: parse_archive(broken.encode(), "t.js")).startswith(
        "t.js: malformed JSON at line 3 column 28"
    )
    data = tweets_js(3).replace("ünïcödé".encode(), b"\xc3\xbcn\xff", 1)
    offset = data.index(b"\xff")
    assert error_of(lambda: parse_archive(data, "t.js")) == f"t.js: not UTF-8 (byte 0xff at offset {offset})"
    assert "Expecting ',' delimiter" in error_of(lambda: parse_archive(b'[{"tweet": {"full_text": "a"}} {}]', "t.js"))
    assert "malformed JSON" in error_of(lambda: parse_archive(b'[{"tweet": {"full_text": "a"', "t.js"))


def test_memory_follows_max_posts_not_the_archive():
    data = tweets_js(150_000, text=lambda i: f"t{i}")  # ~12 MB of tiny tweets
    packed = zip_of({"data/tweets.js": data})
    assert len(packed) < len(data) / 4
    tracemalloc.start()
    try:
        posts = parse_archive(packed, "a.zip", max_posts=100)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(posts) == 100
    assert peak < len(data) / 4, f"peak {peak:,} bytes while reading {len(data):,} bytes of tweets"


def test_password_protected_zip_is_named(tmp_path):
    packed = bytearray(zip_of({"data/tweets.js": tweets_js(3)}))
    # Set the "encrypted" flag in the local and the central header, as a zip tool does.
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = packed.index(signature) + flag_at
        packed[at] |= 0x1
    path = tmp_path / "locked.zip"
    path.write_bytes(bytes(packed))
    handle = api.Handle(handle="me", source=api.Source(archive=api.ArchiveSource(uri=file_uri(str(path)))))
    message = error_of(lambda: fetch_posts(handle, 10, Storage()))
    assert message.startswith(f"@me (archive {file_uri(str(path))}): data/tweets.js: the zip is password-protected")


def test_deep_nesting_is_named_with_the_file_and_place():
    data = b'window.YTD.tweets.part0 = [\n{"tweet": ' + b"[" * 200_000 + b"]" * 200_000 + b"}]"
    message = error_of(lambda: parse_archive(data, "t.js"))
    assert message.startswith("t.js: ") and "nested too deeply" in message


def test_a_huge_unfinished_entry_is_refused_not_buffered(monkeypatch):
    monkeypatch.setattr(json_stream, "MAX_ENTRY", 1000)
    data = b'[{"tweet": {"full_text": "' + b"x" * 5000 + b'"'
    assert "malformed JSON at line 1 column" in error_of(lambda: parse_archive(data, "t.js"))


def test_dataset_memory_follows_max_posts_not_the_file(tmp_path):
    path = tmp_path / "posts.jsonl"
    with open(path, "w") as out:
        out.writelines(json.dumps({"text": f"post {i} of many"}) + "\n" for i in range(600_000))  # ~19 MB
    handle = api.Handle(handle="me", source=api.Source(dataset=api.DatasetSource(uri=file_uri(str(path)))))
    tracemalloc.start()
    try:
        posts = fetch_posts(handle, 100, Storage())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [p.text for p in posts[:2]] == ["post 0 of many", "post 1 of many"] and len(posts) == 100
    assert peak < path.stat().st_size / 4, f"peak {peak:,} bytes for a {path.stat().st_size:,}-byte file"


def test_dataset_lines_deep_long_and_unicode(monkeypatch):
    deep = b'{"text": "a"}\n' + b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    assert error_of(lambda: parse_dataset(deep)) == "line 2: JSON nested too deeply"
    monkeypatch.setattr(dataset, "MAX_LINE", 100)
    assert error_of(lambda: parse_dataset(b'{"text": "' + b"x" * 200 + b'"}\n')) == "line 1: longer than 0 MB"
    monkeypatch.undo()
    # A line separator inside a JSON string is part of the post, not the end of a line.
    assert [p.text for p in parse_dataset('{"text": "one\u2028two"}\n'.encode())] == ["one\u2028two"]
    assert [p.text for p in parse_dataset(b"\xef\xbb\xbftext\r\nhi there\r\n", "csv")] == ["hi there"]


def test_what_follows_or_replaces_the_array_is_named():
    assert error_of(lambda: parse_archive(b'[{"tweet": {"full_text": "a"}}] trailing', "t.js")) == (
        "t.js: malformed JSON at line 1 column 33 (Extra data)"
    )
    assert error_of(lambda: parse_archive(b"window.YTD.tweets.part0 = }", "t.js")).endswith("got '}'")
    assert error_of(lambda: parse_archive(b"window.YTD.tweets.part0 = 12", "t.js")).endswith("got a number")
