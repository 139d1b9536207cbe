"""A node's cache of base models: each ``s3://``/``file://`` model folder is downloaded once
per node and version, however many workers and runs train from it.

An entry is a folder under :func:`cache_root` named after the model URI and its files'
versions (ETag, or size and time, from one listing), so a model rewritten in the store is
a new entry. A file lock per entry (``fcntl``) makes the workers of a node wait for one
download instead of each making their own; a download goes to a folder of its own and is
renamed into place whole. An entry's folder time is when it was last used; after a
download, entries past the :data:`KEEP_NEWEST` most recent and unused for
:data:`KEEP_USED_WITHIN_S` are removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator

from botfleet.storage import NotFound, Storage, parse_uri

CACHE_ENV = "BOTFLEET_MODEL_CACHE"
KEEP_NEWEST = 3
KEEP_USED_WITHIN_S = 3600.0
_PARTIAL = ".partial-"  # a download under way (or abandoned) beside its entry


def cache_root() -> str:
    """$BOTFLEET_MODEL_CACHE, else a folder in the system's temporary directory."""
    return os.environ.get(CACHE_ENV) or os.path.join(tempfile.gettempdir(), "botfleet-model-cache")


def cached_model(base_model: str, storage: Storage, root: str | None = None) -> str:
    """The local folder of the model folder ``base_model`` in the cache, downloaded only when
    this node has no copy of these versions of its files; StorageError when the store fails."""
    root = root or cache_root()
    listing = storage.versions(base_model)
    if not listing:
        raise NotFound(f"{base_model}: not found (no objects under this prefix)")
    os.makedirs(root, exist_ok=True)
    entry = os.path.join(root, entry_name(base_model, listing))
    with _locked(entry):
        if not os.path.isdir(entry):
            _download(base_model, storage, entry)
        os.utime(entry)  # used now: kept by evict() for the next hour
    evict(root)
    return entry


def entry_name(base_model: str, listing: dict[str, str]) -> str:
    """The model folder's last name (readable) and a digest of its URI and file versions."""
    prefix = base_model.rstrip("/") + "/"
    files = sorted((uri.removeprefix(prefix), version) for uri, version in listing.items())
    digest = hashlib.sha256(json.dumps([prefix, files]).encode()).hexdigest()[:20]
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", parse_uri(base_model).uri.rstrip("/").rsplit("/", 1)[-1])
    return f"{name[:60]}-{digest}"


def evict(root: str) -> list[str]:
    """Remove the entries past the newest :data:`KEEP_NEWEST` that nobody used in the last
    :data:`KEEP_USED_WITHIN_S`, and abandoned downloads as old; the paths removed. An entry
    whose lock is held (a download, a worker waiting for one) is left alone."""
    now, removed = time.time(), []
    entries = sorted(_entries(root), key=lambda path: -_used_at(path))
    partials = [os.path.join(root, n) for n in os.listdir(root) if _PARTIAL in n]
    for path in partials + entries[KEEP_NEWEST:]:  # an entry last: its lock file goes with it
        if now - _used_at(path) < KEEP_USED_WITHIN_S:
            continue
        entry = path.split(_PARTIAL, 1)[0]
        with _locked(entry, wait=False) as held:
            if held and now - _used_at(path) >= KEEP_USED_WITHIN_S:  # not used meanwhile
                shutil.rmtree(path, ignore_errors=True)
                if path == entry:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry + ".lock")
                removed.append(path)
    return removed


def _download(base_model: str, storage: Storage, entry: str) -> None:
    partial = tempfile.mkdtemp(prefix=os.path.basename(entry) + _PARTIAL, dir=os.path.dirname(entry))
    try:
        storage.download_dir(base_model, partial)
        try:
            os.replace(partial, entry)
        except OSError:
            # A worker that opened the lock file just before evict() removed it holds that
            # old file's lock, not ours: its copy came first, and it is the same model.
            if not os.path.isdir(entry):
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)  # a failed or second download's files


def _entries(root: str) -> list[str]:
    return [
        os.path.join(root, n) for n in os.listdir(root) if _PARTIAL not in n and os.path.isdir(os.path.join(root, n))
    ]


def _used_at(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return time.time()  # just removed by another worker's evict(): nothing left to do


@contextlib.contextmanager
def _locked(entry: str, wait: bool = True) -> Iterator[bool]:
    """Hold the entry's lock (the file ``<entry>.lock``); yields False when ``wait`` is off
    and another process holds it."""
    with open(entry + ".lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
