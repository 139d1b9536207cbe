"""The data stage: a BotRequest's posts, filtered, as a dataset in the object store.

Files under ``<output>/<model-id>/data/`` (:class:`botfleet.layout.Layout`):
``raw/<handle>.jsonl`` (every post fetched), ``train.txt``, ``valid.txt`` and
``stats.json``. ``stats.json`` is removed first and written last, so a crash never
leaves a dataset that looks complete; it also carries a fingerprint of the request's data
settings and the identity of its inputs (:mod:`botfleet_jobs.data_inputs`). A new run
reuses the dataset only when both are unchanged; a resumed run (its training unfinished)
reuses it whatever the inputs are now, so it trains on the posts its checkpoints saw.
"""

from __future__ import annotations

import io
import json
import sys
import time

from tqdm import tqdm

from botfleet import __version__
from botfleet.api import BotSpec, Handle
from botfleet.artifacts import HandleStats, Stats, data_fingerprint
from botfleet.card import DATA_ROWS
from botfleet.layout import Layout
from botfleet.storage import Storage, StorageError
from botfleet_jobs.background_writes import BackgroundWrites
from botfleet_jobs.data_inputs import object_versions, posts_identity, training_unfinished
from botfleet_jobs.dataset import TRAIN_FRACTION, build_dataset
from botfleet_jobs.filters import filter_posts
from botfleet_jobs.posts import Post
from botfleet_jobs.sources import fetch_posts


def read_complete_stats(storage: Storage, spec: BotSpec) -> dict | None:
    """The stats of a complete dataset made from these same settings, if there is one."""
    layout = Layout(spec.model_uri)
    try:
        stats = storage.read_json(layout.stats)
    except StorageError:
        return None
    return stats if Stats.from_dict(stats).fingerprint == data_fingerprint(spec) else None


_ENCODE_JSON = json.JSONEncoder(ensure_ascii=False).encode  # built once: json.dumps builds one a call


def _jsonl(posts: list[Post]) -> bytes:
    return "".join(_ENCODE_JSON(p.to_record()) + "\n" for p in posts).encode()


def prepare(
    spec: BotSpec, storage: Storage, *, reuse: bool = True, resume: bool = False, show_progress: bool = True
) -> dict:
    """Run the data stage and return stats.json's content.

    ``reuse``: keep a complete dataset of these settings whose inputs are unchanged;
    ``resume`` (the job): keep it, whatever the inputs, while its training is unfinished.
    Raises SourceError, NotEnoughText or StorageError with a one-line message.
    """
    layout = Layout(spec.model_uri)
    existing = read_complete_stats(storage, spec) if reuse else None
    if existing and resume and training_unfinished(storage, layout):
        return existing
    known = Stats.from_dict(existing).inputs if existing else None
    versions = object_versions(spec, storage)  # before any download: a change during it shows next time
    if known is not None and len(versions) == len(spec.handles) and versions == known:
        return existing  # every input is an object, and none changed: nothing to read
    if existing is None:
        storage.delete(layout.stats)  # another settings' dataset: it stops looking complete at once
    started = time.monotonic()
    posts = {handle.name: _fetch(handle, spec, storage, show_progress) for handle in spec.handles}
    inputs = {name: versions.get(name) or posts_identity(fetched) for name, fetched in posts.items()}
    if known is not None and inputs == known:
        return existing
    return write_dataset(spec, storage, posts, inputs, started, stats_removed=existing is None)


def _fetch(handle: Handle, spec: BotSpec, storage: Storage, show_progress: bool) -> list[Post]:
    with tqdm(
        total=spec.data.max_posts,
        desc=f"@{handle.name}",
        unit="posts",
        file=sys.stderr,
        disable=not show_progress,
        leave=True,
    ) as bar:
        return fetch_posts(handle, spec.data.max_posts, storage, progress=bar.update)


def write_dataset(
    spec: BotSpec,
    storage: Storage,
    posts: dict[str, list[Post]],
    inputs: dict[str, str],
    started: float,
    new_posts: int | None = None,
    *,
    stats_removed: bool = False,
) -> dict:
    """Filter ``posts`` (by handle name), write the dataset and return stats.json's content.

    ``stats_removed``: the caller has already removed stats.json (no request needed)."""
    layout = Layout(spec.model_uri)
    if not stats_removed:
        storage.delete(layout.stats)  # the old dataset stops looking complete before we touch it
    kept_by_handle: dict[str, list[str]] = {}
    handles: dict[str, HandleStats] = {}
    # Each file is uploaded while the next handle is filtered; stats.json last, once every
    # other file is written.
    with BackgroundWrites(storage) as uploads:
        for handle in spec.handles:
            fetched = posts[handle.name]
            uploads.write_bytes(layout.raw(handle.name), _jsonl(fetched), content_type="application/x-ndjson")
            result = filter_posts(fetched)
            kept_by_handle[handle.name] = list(result.kept)
            handles[handle.name] = HandleStats(
                **result.counts(), characters=result.characters, display_name=handle.label, source=handle.source.kind
            )
        dataset = build_dataset(kept_by_handle, spec.training.epochs, spec.data.seed)
        uploads.write_text(layout.train_txt, dataset.train)
        uploads.write_text(layout.valid_txt, dataset.valid)
    stats = Stats(
        model_id=spec.model_id,
        handles=handles,
        epochs=spec.training.epochs,
        seed=spec.data.seed,
        train_fraction=TRAIN_FRACTION,
        train_characters=len(dataset.train),
        valid_characters=len(dataset.valid),
        warnings=dataset.warnings,
        fingerprint=data_fingerprint(spec),
        seconds=round(time.monotonic() - started, 3),
        botfleet_version=__version__,
        inputs=inputs,
        new_posts=new_posts,
    ).to_dict()
    storage.write_json(layout.stats, stats)
    return stats


def format_table(stats: dict) -> str:
    """The per-handle counts as the model card's table shows them."""
    handles = stats["handles"]
    rows = [("Data", *[f"@{h}" for h in handles])]
    for label, key in DATA_ROWS:
        rows.append((label, *[str(counts[key]) for counts in handles.values()]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = io.StringIO()
    for row in rows:
        out.write(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
            + "\n"
        )
    return out.getvalue()
