"""A refresh: the bot's dataset again with what is new since the last one.

From a social API only the posts newer than those stored are fetched (paging stops at the
first stored one), merged with the stored ones by id, newest first, ``maxPosts`` at most.
An archive or dataset object is read again only when its version changed, and then it is
the whole truth (an export holds everything). When no post is new, nothing is written and
nothing is trained.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass

from botfleet.api import BotSpec, Handle
from botfleet.artifacts import SUCCEEDED, History, Result, Stats, TrainingRecord
from botfleet.errors import UserError
from botfleet.layout import Layout, folder
from botfleet.storage import NotFound, Storage
from botfleet_jobs.data_inputs import OBJECT_SOURCES, object_versions, posts_identity, training_unfinished
from botfleet_jobs.data_stage import prepare, read_complete_stats, write_dataset
from botfleet_jobs.posts import Post
from botfleet_jobs.sources import fetch_posts


class NothingToRefresh(UserError):
    """A refresh of a bot that has no dataset yet."""


@dataclass(frozen=True)
class Gathered:
    stats: dict  # stats.json of the dataset to train on (the current one when nothing is new)
    new_posts: int | None  # posts in it that the one before did not have (None: no refresh made it)


def refresh_dataset(spec: BotSpec, storage: Storage) -> Gathered:
    """Gather what is new; write a new dataset when there is some. Raises NothingToRefresh,
    SourceError, NotEnoughText or StorageError with a one-line message."""
    layout = Layout(spec.model_uri)
    current = read_complete_stats(storage, spec)
    if current is None:
        raise NothingToRefresh(
            f"{folder(layout.data)} holds no dataset of this request to refresh: `botfleet run` makes the first version"
        )
    started = time.monotonic()
    known = Stats.from_dict(current).inputs
    versions = object_versions(spec, storage)  # before any download, as the data stage does
    posts, inputs, new = {}, {}, 0
    for handle in spec.handles:
        stored = read_stored_posts(storage, layout, handle.name)
        if handle.source.kind in OBJECT_SOURCES and versions.get(handle.name) == known.get(handle.name):
            posts[handle.name], inputs[handle.name] = stored, known[handle.name]
            continue
        merged = _gather(handle, spec, storage, stored)
        stored_ids = {post.id for post in stored}
        new += sum(post.id not in stored_ids for post in merged)
        posts[handle.name] = merged
        inputs[handle.name] = versions.get(handle.name) or posts_identity(merged)
    if new == 0:
        return Gathered(current, 0)
    return Gathered(write_dataset(spec, storage, posts, inputs, started, new_posts=new), new)


def _gather(handle: Handle, spec: BotSpec, storage: Storage, stored: list[Post]) -> list[Post]:
    """The handle's posts after the refresh, newest first."""
    limit = spec.data.max_posts
    if handle.source.kind in OBJECT_SOURCES:
        return fetch_posts(handle, limit, storage)
    fresh = fetch_posts(handle, limit, storage, known={post.id for post in stored})
    merged = {post.id: post for post in fresh}
    for post in stored:
        merged.setdefault(post.id, post)
    return list(merged.values())[:limit]


def read_stored_posts(storage: Storage, layout: Layout, handle: str) -> list[Post]:
    """The posts the current dataset was made from (data/raw/<handle>.jsonl)."""
    try:
        text = storage.read_text(layout.raw(handle))
    except NotFound:
        return []
    return [Post(**json.loads(line)) for line in text.splitlines() if line.strip()]


def gather_data(spec: BotSpec, storage: Storage, *, refresh: bool, show_progress: bool) -> Gathered:
    """The job's data stage. A refresh whose training is unfinished resumes on the dataset
    it gathered, like any run; new_posts is then what that dataset recorded."""
    if refresh and not training_unfinished(storage, Layout(spec.model_uri)):
        return refresh_dataset(spec, storage)
    stats = prepare(spec, storage, resume=True, show_progress=show_progress)
    return Gathered(stats, Stats.from_dict(stats).new_posts)


def starting_point(spec: BotSpec, layout: Layout, history: History) -> BotSpec:
    """The spec a refresh trains with: from the latest version's copy (``refresh.from:
    previous``, once there is one) or from the base model."""
    if spec.refresh.from_ != "previous" or history.latest is None:
        return spec
    previous = layout.version(history.latest.version)
    return dataclasses.replace(spec, training=dataclasses.replace(spec.training, base_model=previous))


def record_nothing_new(storage: Storage, layout: Layout) -> dict:
    """result.json of a refresh that found no new post: the model stays the latest version."""
    latest = History.from_dict(_read_or_empty(storage, layout.history)).latest
    metrics = TrainingRecord.from_dict(_read_or_empty(storage, layout.training)).metrics()
    result = Result(
        SUCCEEDED,
        model=folder(layout.model),
        card=layout.card,
        metrics=metrics,
        version=latest.version if latest else None,
        new_posts=0,
    ).to_dict()
    storage.write_json(layout.result, result)
    return result


def _read_or_empty(storage: Storage, uri: str) -> dict:
    try:
        return storage.read_json(uri)
    except NotFound:
        return {}
