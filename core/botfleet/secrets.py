"""Secrets referenced by a BotRequest, as the job sees them.

On a cluster the operator injects each referenced Secret key into the job as an
environment variable (`valueFrom.secretKeyRef`, never inline); the local CLI reads the
same variable. `secret_env_name` is the one naming rule both sides use.
"""

from __future__ import annotations

import os
import re

from botfleet.api import SecretRef


def secret_env_name(ref: SecretRef) -> str:
    raw = f"BOTFLEET_SECRET_{ref.name}_{ref.key}"
    return re.sub(r"[^A-Za-z0-9]", "_", raw).upper()


def resolve_secret(ref: SecretRef) -> str:
    name = secret_env_name(ref)
    value = os.environ.get(name)
    if not value:
        raise KeyError(f"secret {ref.name}/{ref.key} is not available: set {name}")
    return value
