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


def test_the_jobs_pyarrow_filesystem_keeps_waiting_out_outages_once_pickled():
    """Ray Train pickles the run's filesystem to its controller and workers; pyarrow's own
    S3FileSystem loses its retry strategy on the way, botfleet's does not."""
    import pickle

    from botfleet.pyarrow_s3 import RetryingS3FileSystem
    from botfleet.storage import JOB_OUTAGE_WAIT_S, S3Config, Storage

    config = S3Config(endpoint="http://127.0.0.1:9", access_key="a", secret_key="b")
    filesystem = Storage(config, outage_wait_s=JOB_OUTAGE_WAIT_S).pyarrow_filesystem()
    copy = pickle.loads(pickle.dumps(filesystem))
    assert isinstance(copy, RetryingS3FileSystem) and copy.__reduce__()[1][0] == 14
    assert not isinstance(Storage(config).pyarrow_filesystem(), RetryingS3FileSystem)  # the operator's: no waiting
