"""Checkpoints: Ray Train checkpoints (``checkpoints/<run name>/step-NNNNNNN/``) holding the
DeepSpeed engine state (model, optimizer, LR schedule) of every rank plus
``botfleet_state.json``, the run's own state (step, losses, seconds trained) and the
fingerprint of the settings and data it belongs to."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile

from botfleet.timestamps import now_iso

from .train_errors import TrainingError

log = logging.getLogger("botfleet_jobs.train")

STATE_FILE = "botfleet_state.json"  # in every checkpoint, next to DeepSpeed's files


def resume(engine, fingerprint: str, session) -> dict:
    """Load the newest checkpoint the session (:mod:`~botfleet_jobs.train_session`) hands
    this worker, if any; return the run state (``{"step": 0}`` for a fresh run)."""
    with session.newest_checkpoint() as found:
        if found is None:
            return {"step": 0}
        folder, origin = found
        with open(os.path.join(folder, STATE_FILE), encoding="utf-8") as f:
            state = json.load(f)
        if state.get("fingerprint") != fingerprint:
            raise TrainingError(
                f"checkpoint {origin} was made with other settings or data"
                f" ({state.get('fingerprint')} != {fingerprint})"
            )
        load_path, _client = engine.load_checkpoint(folder, tag=state["tag"])
        if load_path is None:
            raise TrainingError(f"checkpoint {origin}: DeepSpeed could not load tag {state['tag']}")
    log.info("rank %d resumed from step %d (%s)", session.rank, state["step"], origin)
    return state


def save(engine, state: dict, metrics: dict, *, fingerprint: str, session, workdir: str) -> None:
    """Every rank saves its engine state, rank 0 the run state; the session (Ray Train)
    gets them as one checkpoint of step ``state["step"]``, reported with ``metrics`` (None
    values left out)."""
    step = state["step"]
    tag = f"step{step}"
    folder = tempfile.mkdtemp(prefix=f"ckpt-r{session.rank}-", dir=workdir)
    try:
        state = {**state, "tag": tag, "fingerprint": fingerprint, "saved_at": now_iso()}
        engine.save_checkpoint(folder, tag=tag, client_state={"botfleet": state})
        if session.rank == 0:
            with open(os.path.join(folder, STATE_FILE), "w", encoding="utf-8") as f:
                json.dump(state, f, indent=2)
        has_files = any(files for _d, _s, files in os.walk(folder))
        session.report(
            {k: v for k, v in metrics.items() if v is not None},
            folder if has_files else None,
            f"step-{step:07d}",
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
