"""A store that never answered fails at once, whatever the outage wait: only a store that
has answered is waited for (tests/integration/test_train_resume.py cuts a real one)."""

from __future__ import annotations

import socket

import pytest

from botfleet import storage as storage_mod
from botfleet.storage import S3Config, Storage, StorageError


def test_a_store_never_reached_fails_at_once(monkeypatch):
    sleeps: list[float] = []
    monkeypatch.setattr(storage_mod.time, "sleep", sleeps.append)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = Storage(S3Config(f"http://127.0.0.1:{port}", "key", "secret"), outage_wait_s=300)
    with pytest.raises(StorageError, match="cannot reach S3 endpoint .*connection refused"):
        store.read_bytes("s3://bucket/key")
    assert sleeps == []
