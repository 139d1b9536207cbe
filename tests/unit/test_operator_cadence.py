"""When the level loop reconciles a request again: ``reconcile_interval`` after its last
reconcile ended, not at a tick shared by all (a burst the watch just reconciled would be
reconciled again at once)."""

from __future__ import annotations

from botfleet_operator.runtime import due_for_level


def body(phase: str | None = None, generation: int = 1, deleting: bool = False) -> dict:
    meta = {"namespace": "bots", "name": "x", "generation": generation}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": phase, "observedGeneration": 1} if phase else {}}


def test_a_request_is_due_an_interval_after_its_last_reconcile():
    bodies = {"bots/new": body(), "bots/fresh": body("Training"), "bots/stale": body("Training")}
    reconciled_at = {"bots/fresh": 98.0, "bots/stale": 94.0}
    assert due_for_level(bodies, reconciled_at, now=100.0, interval=5.0) == ["bots/new", "bots/stale"]
    assert due_for_level(bodies, reconciled_at, now=103.0, interval=5.0) == ["bots/new", "bots/fresh", "bots/stale"]


def test_finished_and_deleted_requests_are_never_due():
    bodies = {
        "bots/done": body("Succeeded"),
        "bots/failed": body("Failed"),
        "bots/gone": body("Training", deleting=True),
        "bots/respec": body("Succeeded", generation=2),  # a new spec after success: due again
    }
    assert due_for_level(bodies, {}, now=100.0, interval=5.0) == ["bots/respec"]
