"""The reconciler's lifecycle beyond one run, against a real S3 server with the ray
executor's stand-in (tests/integration/test_reconciler.py): retrying a failed request by
annotation."""

from __future__ import annotations

import pytest

from botfleet_operator.lifecycle import RETRY_ANNOTATION, attempt
from tests.integration.test_reconciler import RayJobsStandIn, World, write_stats


class AttemptsStandIn(RayJobsStandIn):
    """The stand-in, naming each attempt's job apart as the real executors do."""

    def name(self, body: dict) -> str:
        retry = attempt(body)
        return super().name(body) + (f"-r{retry}" if retry else "")


@pytest.fixture
def world(storage) -> World:
    world = World(storage)
    world.executor = world.reconciler.executor = AttemptsStandIn()
    return world


def fail(world: World, name: str, error: str = "worker died") -> dict:
    """The request's current job fails the way the job reports it; its status afterwards."""
    job = world.requests[name]["status"]["job"]["name"]
    world.storage.write_json(
        world.layout(name).result, {"status": "failed", "stage": "training", "error": error, "reason": "TrainingFailed"}
    )
    world.executor.states[job] = "FAILED"
    return world.reconcile(name)


def ask_retry(world: World, name: str, value: str) -> None:
    world.requests[name]["metadata"].setdefault("annotations", {})[RETRY_ANNOTATION] = value


def test_a_failed_request_is_retried_once_per_annotation_value(world):
    body = world.create("alice")
    world.reconcile("alice")
    write_stats(world, "alice")
    assert fail(world, "alice")["phase"] == "Failed"
    world.reconcile("alice")
    assert world.executor.started == ["bots-alice-1"]

    ask_retry(world, "alice", "2026-12-02T15:00:00Z")
    outcome = world.reconciler.reconcile(body, [])
    status = body["status"]
    assert world.executor.started == ["bots-alice-1", "bots-alice-1-r1"]  # a job of its own
    assert (status["phase"], status["reason"], status["job"]["name"]) == ("Pending", "JobStarting", "bots-alice-1-r1")
    assert status["retry"] == {"handled": "2026-12-02T15:00:00Z", "attempts": 1} and "completionTime" not in status
    assert "RetryRequested" in [reason for _, reason, _ in outcome.events]
    assert not world.storage.exists(world.layout("alice").result)  # the failed verdict is not this attempt's

    # Reconciled again and again: one retry per value, not one per reconcile.
    world.reconcile("alice")
    world.reconcile("alice")
    assert world.executor.started == ["bots-alice-1", "bots-alice-1-r1"]
    assert fail(world, "alice", "worker died again")["message"] == "worker died again"
    world.reconcile("alice")
    assert len(world.executor.started) == 2 and body["status"]["phase"] == "Failed"

    ask_retry(world, "alice", "again")
    status = world.reconcile("alice")
    assert world.executor.started[-1] == "bots-alice-1-r2" and status["retry"]["attempts"] == 2
    world.executor.states["bots-alice-1-r2"] = "SUCCEEDED"
    layout = world.layout("alice")
    world.storage.write_json(layout.model_config, {"model_type": "gpt2"})
    world.storage.write_text(layout.card, "# alice\n")
    world.storage.write_json(layout.result, {"status": "succeeded", "model": f"{layout.model}/", "card": layout.card})
    assert world.reconcile("alice")["phase"] == "Succeeded"


def test_a_retry_asked_while_the_request_runs_asks_nothing(world):
    world.create("alice")
    world.reconcile("alice")
    world.executor.states["bots-alice-1"] = "RUNNING"
    ask_retry(world, "alice", "too-early")
    assert world.reconcile("alice")["retry"] == {"handled": "too-early"}
    assert fail(world, "alice")["phase"] == "Failed"
    world.reconcile("alice")
    assert world.executor.started == ["bots-alice-1"] and world.requests["alice"]["status"]["phase"] == "Failed"
