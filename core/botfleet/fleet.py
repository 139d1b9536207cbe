"""The fleet as the object store holds it: every bot folder under an output URI, with its
state read from its own files (no cluster needed). Serving lists the finished ones; the
fleet page shows them all.

A bot folder is ``<output>/<model-id>`` (see :mod:`botfleet.layout`); a folder holding
none of botfleet's files is not a bot and is left out.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botfleet.artifacts import Progress, Result, Stats
from botfleet.layout import Layout
from botfleet.storage import NotFound, Storage

# The states a bot's files can show, in the order a bot goes through them.
PENDING, PREPARING, TRAINING, SUCCEEDED, FAILED = "pending", "preparing", "training", "succeeded", "failed"
# Reads of different bots overlap: a gallery of hundreds of bots is round trips, not work.
_READERS = 16


@dataclass(frozen=True)
class BotFolder:
    model_id: str
    model_uri: str
    state: str
    result: Result | None = None
    progress: Progress | None = None
    stats: Stats | None = None

    @property
    def layout(self) -> Layout:
        return Layout(self.model_uri)

    @property
    def finished(self) -> bool:
        """Whether a model is there to load (the job's verdict is success)."""
        return self.state == SUCCEEDED


def bot_state(result: Result | None, progress: Progress | None, stats: Stats | None) -> str:
    """What a bot's files say of it: the job's verdict first, then how far the work got."""
    if result is not None and result.finished:
        return SUCCEEDED if result.succeeded else FAILED
    if progress is not None and progress.status == "failed":
        return FAILED
    if progress is not None:
        return TRAINING
    if stats is not None:
        return PREPARING  # the dataset is complete; training has not written progress yet
    return PENDING


def read_bot(storage: Storage, model_uri: str) -> BotFolder | None:
    """One bot folder's state from its files; None when it holds none of them."""
    layout = Layout(model_uri)
    result = _read(storage, layout.result, Result.from_dict)
    progress = _read(storage, layout.progress, Progress.from_dict)
    stats = _read(storage, layout.stats, Stats.from_dict)
    if result is None and progress is None and stats is None and not storage.exists(layout.owner):
        return None
    model_id = model_uri.rstrip("/").rsplit("/", 1)[-1]
    return BotFolder(model_id, model_uri, bot_state(result, progress, stats), result, progress, stats)


def scan_fleet(storage: Storage, output_uri: str) -> list[BotFolder]:
    """Every bot folder directly under ``output_uri``, sorted by model id."""
    folders = storage.folders(output_uri)
    with ThreadPoolExecutor(max_workers=min(_READERS, max(1, len(folders)))) as pool:
        bots = pool.map(lambda uri: read_bot(storage, uri), folders)
        return sorted((b for b in bots if b is not None), key=lambda b: b.model_id)


def _read(storage: Storage, uri: str, parse: Callable[[Any], Any]) -> Any:
    """A typed file, or None when it is missing or not JSON (a half-written file is no file).
    An unreachable store is an error, not an empty fleet."""
    try:
        return parse(json.loads(storage.read_bytes(uri)))
    except (NotFound, ValueError, TypeError):  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
