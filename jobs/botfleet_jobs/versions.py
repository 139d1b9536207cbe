"""A bot's versions: each successful training is one. The latest stays in ``model/`` (what
the card and clients use); before a training replaces it, it is copied to
``versions/vN/``; after a success the new version is recorded in ``history.json`` and only
the newest ``spec.output.keepVersions`` earlier copies are kept.
"""

from __future__ import annotations

import dataclasses

from botfleet.artifacts import History, Stats, TrainingRecord, Version
from botfleet.layout import Layout, folder
from botfleet.storage import NotFound, Storage


def read_history(storage: Storage, layout: Layout) -> History:
    try:
        return History.from_dict(storage.read_json(layout.history))
    except NotFound:
        return History()


def archive_latest(storage: Storage, layout: Layout) -> History:
    """Copy the model in ``model/`` to ``versions/vN/`` (once: a resumed run finds it there)
    before a training replaces it; returns the history, with the copy recorded."""
    history = read_history(storage, layout)
    try:
        record = TrainingRecord.from_dict(storage.read_json(layout.training))
    except NotFound:
        return history  # no model yet
    latest = history.latest or _unrecorded(record)  # a model made before botfleet kept versions
    target = layout.version(latest.version)
    if latest.archived is None or not storage.exists(f"{target}/training.json"):
        copy_folder(storage, layout.model, target, last="training.json")
        archived = dataclasses.replace(latest, archived=folder(target))
        history = History((*history.versions[:-1], archived) if history.latest else (archived,))
        storage.write_json(layout.history, history.to_dict())
    return history


def _unrecorded(record: TrainingRecord) -> Version:
    return Version(1, finished_at=record.finished_at, perplexity=record.perplexity_after, run_name=record.run_name)


def copy_folder(storage: Storage, source: str, target: str, *, last: str) -> None:
    """Every object under ``source`` to ``target``, the one named ``last`` at the end (its
    presence then means the copy is complete)."""
    names = [uri[len(source) + 1 :] for uri in storage.list(source)]
    for name in sorted(names, key=lambda n: n == last):
        storage.copy(f"{source}/{name}", f"{target}/{name}")


def record_version(
    storage: Storage, layout: Layout, history: History, training: dict, stats: dict, keep: int
) -> Version:
    """Record the training that just succeeded as the latest version and prune the copies
    beyond the newest ``keep``; returns it. The same run again (a rerun that found its
    training done) is no new version: its copy of itself is dropped instead."""
    record = TrainingRecord.from_dict(training)
    latest = history.latest
    if latest is not None and record.run_name and latest.run_name == record.run_name:
        version, earlier = dataclasses.replace(latest, archived=None), history.versions[:-1]
        if latest.archived:
            storage.delete_prefix(latest.archived)
    else:
        version = Version(
            (latest.version if latest else 0) + 1,
            finished_at=record.finished_at,
            posts=Stats.from_dict(stats).kept,
            new_posts=Stats.from_dict(stats).new_posts,
            perplexity=record.perplexity_after,
            run_name=record.run_name,
        )
        earlier = history.versions
    kept = [v for v in earlier if v.archived]
    pruned = {v.version for v in kept[: max(0, len(kept) - keep)]}
    for old in earlier:
        if old.version in pruned:
            storage.delete_prefix(old.archived)
    earlier = tuple(dataclasses.replace(v, archived=None) if v.version in pruned else v for v in earlier)
    storage.write_json(layout.history, History((*earlier, version)).to_dict())
    return version
