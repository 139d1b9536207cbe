"""The files the job writes and the operator reads: one definition both sides use."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

from botfleet.api import BotSpec


def data_fingerprint(spec: BotSpec) -> str:
    """What decides the dataset: handles and sources, data settings, epochs baked in."""
    relevant = {
        "handles": [asdict(h) for h in spec.handles],
        "data": asdict(spec.data),
        "epochs": spec.training.epochs,
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]
