"""The concurrency limit: which BotRequests hold a training slot, which wait, in what order."""

from __future__ import annotations

from dataclasses import dataclass

from botfleet.reasons import Reason
from botfleet_operator.lifecycle import suspend_requested
from botfleet_operator.publish_status import awaiting_publish_retry
from botfleet_operator.status import SUSPENDED, TERMINAL, is_terminal_for


@dataclass(frozen=True)
class QueueEntry:
    """One BotRequest as the concurrency limit sees it."""

    key: str  # namespace/name
    created: str  # creationTimestamp (RFC 3339; sorts as text)
    active: bool  # holds a training slot: a job was started for it and it has not finished
    waiting: bool  # needs a slot: unfinished, no job yet


@dataclass(frozen=True)
class QueueDecision:
    admit: bool
    position: int = 0  # 1-based place in the queue when not admitted
    queued: int = 0  # requests waiting
    running: int = 0  # slots in use
    limit: int = 0

    @property
    def message(self) -> str:
        return (
            f"queued: position {self.position} of {self.queued}; {self.running} of {self.limit}"
            " training slots in use (operator setting max_concurrent)"
        )


def decide_admission(
    key: str, entries: list[QueueEntry], limit: int, extra_active: set[str] = frozenset()
) -> QueueDecision:
    """Whether ``key`` may start its job now: first come (creationTimestamp), first served.

    ``extra_active`` are keys this operator started but the entries do not show yet.
    A limit of 0 means no limit.
    """
    active = {e.key for e in entries if e.active} | set(extra_active)
    if key in active:
        return QueueDecision(True, running=len(active), limit=limit)
    waiting = sorted((e for e in entries if e.waiting and e.key not in active), key=lambda e: (e.created, e.key))
    if all(e.key != key for e in waiting):
        waiting.append(QueueEntry(key, "~", False, True))  # not indexed yet: last in line
    if limit <= 0:
        return QueueDecision(True, running=len(active), limit=limit)
    free = max(0, limit - len(active))
    rank = next(i for i, e in enumerate(waiting) if e.key == key)
    if rank < free:
        return QueueDecision(True, running=len(active), limit=limit)
    return QueueDecision(
        False, position=rank - free + 1, queued=max(0, len(waiting) - free), running=len(active), limit=limit
    )


def request_key(body: dict) -> str:
    """``namespace/name``: how the queue, the reconciler and the runtime name a request."""
    meta = body.get("metadata", {})
    return f"{meta.get('namespace')}/{meta.get('name')}"


def queue_entry(body: dict) -> QueueEntry:
    meta = body.get("metadata", {})
    status = body.get("status") or {}
    generation = int(meta.get("generation") or 1)
    phase = status.get("phase")
    has_job = bool((status.get("job") or {}).get("name"))
    done = is_terminal_for(body)
    # Suspended (spec.suspend): its slot is free once its job has stopped, and it waits for none.
    stopped = phase == SUSPENDED and status.get("reason") == Reason.SUSPEND_REQUESTED
    active = has_job and phase not in TERMINAL and not stopped and not meta.get("deletionTimestamp")
    # A request whose output folder is another's waits for that, not for a slot.
    blocked = status.get("reason") == Reason.OUTPUT_IN_USE and status.get("observedGeneration") == generation
    held = suspend_requested(body)
    publishing = awaiting_publish_retry(status)  # trained: the operator publishes it, no job
    waiting = not (active or done or blocked or held or publishing or meta.get("deletionTimestamp"))
    return QueueEntry(request_key(body), meta.get("creationTimestamp") or "", active, waiting)
