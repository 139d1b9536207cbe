"""RFC 3339 timestamps in UTC, to the second: how status, result and progress files write time."""

from __future__ import annotations

import datetime as _dt


def now_iso(now: _dt.datetime | None = None) -> str:
    now = now or _dt.datetime.now(_dt.UTC)
    # isoformat, not strftime: the same text at a fraction of the cost (the data stage dates every post)
    return now.astimezone(_dt.UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def parse_time(value: str | None) -> _dt.datetime | None:
    """The time ``value`` names, or None when it is empty or not a timestamp."""
    if not value:
        return None
    try:
        return _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
