"""Writes that go on while the data stage works (jobs/botfleet_jobs/background_writes.py),
on local files: all are done when the block ends, and a failure is not lost."""

from __future__ import annotations

import pytest

from botfleet.storage import Storage, StorageError, file_uri
from botfleet_jobs.background_writes import BackgroundWrites


def test_every_write_is_done_when_the_block_ends(tmp_path):
    storage = Storage()
    with BackgroundWrites(storage) as writes:
        for i in range(8):
            writes.write_text(file_uri(tmp_path / f"{i}.txt"), f"text {i}")
        writes.write_bytes(file_uri(tmp_path / "raw.jsonl"), b"{}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [*(f"{i}.txt" for i in range(8)), "raw.jsonl"]
    assert (tmp_path / "7.txt").read_text() == "text 7"


def test_a_failed_write_raises_when_the_block_ends(tmp_path):
    with pytest.raises(StorageError, match="no S3 endpoint configured"):
        with BackgroundWrites(Storage()) as writes:
            writes.write_text("s3://bucket/a.txt", "nowhere to go")
            writes.write_text(file_uri(tmp_path / "b.txt"), "fine")
    assert (tmp_path / "b.txt").read_text() == "fine"


def test_an_error_in_the_block_wins_over_a_failed_write():
    with pytest.raises(ValueError, match="the block's own"):
        with BackgroundWrites(Storage()) as writes:
            writes.write_text("s3://bucket/a.txt", "nowhere to go")
            raise ValueError("the block's own")
