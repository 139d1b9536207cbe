"""JSON merge patches (RFC 7386): the reconciler writes a status as the difference from the last one."""

from __future__ import annotations

from typing import Any


def merge_patch(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new`` (None: no change)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return None if old == new else new
    patch = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif isinstance(value, dict) and isinstance(old[key], dict):
            sub = merge_patch(old[key], value)
            if sub is not None and sub != {}:
                patch[key] = sub
        elif old[key] != value:
            patch[key] = value
    return patch or None
