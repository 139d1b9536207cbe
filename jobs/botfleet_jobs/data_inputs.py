"""What a dataset was made from, so that a new run can tell whether its inputs changed.

A handle's input identity is recorded in ``stats.json`` (``Stats.inputs``): for an object
(archive, dataset) its version (ETag, or size and time), read before the download so a
change during it shows next time; for a social API, a hash of the posts themselves (an
edit changes it too), since nothing cheaper says whether someone posted.
"""

from __future__ import annotations

import hashlib
import json

from botfleet.api import BotSpec
from botfleet.artifacts import Progress
from botfleet.layout import Layout
from botfleet.storage import Storage, StorageError
from botfleet_jobs.posts import Post

OBJECT_SOURCES = ("archive", "dataset")


def object_versions(spec: BotSpec, storage: Storage) -> dict[str, str]:
    """The version of each handle's object, for the handles whose source is one. A handle
    whose object cannot be looked at is left out: fetching it says why."""
    versions = {}
    for handle in spec.handles:
        if handle.source.kind in OBJECT_SOURCES:
            try:
                versions[handle.name] = "object " + storage.version(handle.source.config.uri)
            except StorageError:
                continue
    return versions


def posts_identity(posts: list[Post]) -> str:
    """How many posts, and a hash of them (ids, texts, flags, dates) in order."""
    digest = hashlib.sha256()
    for post in posts:
        digest.update(json.dumps(post.to_record(), sort_keys=True, ensure_ascii=False).encode())
        digest.update(b"\n")
    return f"posts {len(posts)} {digest.hexdigest()[:16]}"


def training_unfinished(storage: Storage, layout: Layout) -> bool:
    """Whether a training of the current dataset started and has not finished (the workers'
    progress.json says so; the operator removes it before a new generation's job): its
    checkpoints belong to that dataset, so a resumed run must train on it."""
    try:
        progress = Progress.from_dict(storage.read_json(layout.progress))
    except StorageError:
        return False
    return progress.status not in (None, "succeeded")
