"""The node's base-model cache (botfleet_jobs.model_cache) against the real S3 server: a
model is downloaded once per version of its files, however many loaders ask at once."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from botfleet.storage import Storage
from botfleet_jobs.base_model import load_base_model
from botfleet_jobs.model_cache import CACHE_ENV, KEEP_NEWEST, cache_root, cached_model, evict
from tests.fixtures.training import upload_tiny_model


class CountingStorage(Storage):
    """A real Storage on the test server that counts the files it downloads; with a barrier,
    each listing waits for the other loaders' so that they all reach the lock together."""

    def __init__(self, storage: Storage, barrier: threading.Barrier | None = None) -> None:
        super().__init__(storage.config)
        self.barrier = barrier
        self.downloads: list[str] = []

    def versions(self, prefix_uri: str) -> dict[str, str]:
        listing = super().versions(prefix_uri)
        if self.barrier is not None:
            self.barrier.wait(timeout=60)
        return listing

    def download_file(self, uri: str, path) -> str:
        self.downloads.append(uri)
        return super().download_file(uri, path)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> str:
    root = str(tmp_path / "cache")
    monkeypatch.setenv(CACHE_ENV, root)
    return root


def test_a_second_load_reads_the_cache(storage, tiny_model_dir, cache, tmp_path):
    base = upload_tiny_model(storage, tiny_model_dir)
    counting = CountingStorage(storage)
    first = load_base_model(base, counting, tmp_path / "work-1")
    files = sorted(os.listdir(tiny_model_dir))
    assert os.path.dirname(first) == cache == cache_root()
    assert sorted(os.listdir(first)) == files and len(counting.downloads) == len(files)

    second = load_base_model(base, counting, tmp_path / "work-2")
    assert second == first and len(counting.downloads) == len(files)  # nothing downloaded again


def test_an_unwritable_cache_is_skipped_with_a_warning(storage, tiny_model_dir, tmp_path, monkeypatch, caplog):
    # A file where the folder should be: as unusable as a mounted volume of another owner
    # (which root, running these tests, could still write to).
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv(CACHE_ENV, str(blocked))
    base = upload_tiny_model(storage, tiny_model_dir)
    with caplog.at_level("WARNING", logger="botfleet_jobs.train"):
        folder = load_base_model(base, storage, tmp_path / "work")
    assert folder.startswith(str(tmp_path / "work")) and sorted(os.listdir(folder)) == sorted(
        os.listdir(tiny_model_dir)
    )
    assert f"model cache {blocked} unusable" in caplog.text


def test_a_changed_model_is_downloaded_again(storage, tiny_model_dir, cache):
    base = upload_tiny_model(storage, tiny_model_dir)
    counting = CountingStorage(storage)
    old = cached_model(base, counting)
    config = storage.read_json(base + "/config.json")
    storage.write_json(base + "/config.json", {**config, "n_ctx_note": "rewritten"})

    new = cached_model(base, counting)
    assert new != old and os.path.isdir(old)  # the old version stays until evicted
    assert len(counting.downloads) == 2 * len(os.listdir(tiny_model_dir))
    assert '"rewritten"' in open(os.path.join(new, "config.json")).read()
    assert '"rewritten"' not in open(os.path.join(old, "config.json")).read()


def test_loaders_at_once_download_once(storage, tiny_model_dir, cache):
    base = upload_tiny_model(storage, tiny_model_dir)
    loaders = 3
    counting = CountingStorage(storage, threading.Barrier(loaders))
    with ThreadPoolExecutor(loaders) as pool:  # each loader opens the lock file itself, as processes do
        folders = list(pool.map(lambda _: cached_model(base, counting), range(loaders)))
    assert len(set(folders)) == 1
    assert sorted(counting.downloads) == sorted(storage.list(base))  # each file once
    assert sorted(os.listdir(cache)) == sorted([os.path.basename(folders[0]), os.path.basename(folders[0]) + ".lock"])


def cache_entries(root, ages: dict[str, float]) -> str:
    """Entries (and their lock files) last used ``ages[name]`` seconds ago."""
    root.mkdir()
    now = time.time()
    for name, age in ages.items():
        (root / name).mkdir()
        (root / name / "config.json").write_text("{}")
        if ".partial-" not in name:
            (root / f"{name}.lock").touch()
        os.utime(root / name, (now - age, now - age))
    return str(root)


def test_eviction_keeps_the_newest_and_the_recently_used(tmp_path):
    assert KEEP_NEWEST == 3
    hour = 3600
    # the newest three (e, a, b) stay; c, d, f and an abandoned download, over an hour unused, go
    root = cache_entries(
        tmp_path / "one",
        {"a": hour + 1, "b": hour + 2, "c": hour + 3, "d": hour + 4, "e": 60, "f": hour + 5, "d.partial-x1": hour},
    )
    removed = evict(root)
    assert sorted(os.listdir(root)) == ["a", "a.lock", "b", "b.lock", "e", "e.lock"]
    assert sorted(os.path.basename(p) for p in removed) == ["c", "d", "d.partial-x1", "f"]
    # more than three used within the hour: all of them stay
    root = cache_entries(tmp_path / "two", {"a": 60, "b": 120, "c": 180, "d": hour - 60, "e": hour + 1})
    evict(root)
    assert sorted(os.listdir(root)) == ["a", "a.lock", "b", "b.lock", "c", "c.lock", "d", "d.lock"]
