"""The reconciler's lifecycle beyond one run, against a real S3 server with the ray
executor's stand-in (tests/integration/test_reconciler.py): retrying a failed request by
annotation, suspending and resuming one."""

from __future__ import annotations

import pytest

from botfleet_operator.lifecycle import RETRY_ANNOTATION
from botfleet_operator.queue import queue_entry
from tests.fixtures.reconciler_world import RayJobsByRunTag, World, write_stats


@pytest.fixture
def world(storage) -> World:
    world = World(storage)
    world.executor = world.reconciler.executor = RayJobsByRunTag()
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
    assert world.executor.started == ["bots-alice-1", "bots-alice-1-a1"]  # a job of its own
    assert (status["phase"], status["reason"], status["job"]["name"]) == ("Pending", "JobStarting", "bots-alice-1-a1")
    assert status["retry"] == {"handled": "2026-12-02T15:00:00Z", "attempts": 1} and "completionTime" not in status
    assert "RetryRequested" in [reason for _, reason, _ in outcome.events]
    assert not world.storage.exists(world.layout("alice").result)  # the failed verdict is not this attempt's

    # Reconciled again and again: one retry per value, not one per reconcile.
    world.reconcile("alice")
    world.reconcile("alice")
    assert world.executor.started == ["bots-alice-1", "bots-alice-1-a1"]
    assert fail(world, "alice", "worker died again")["message"] == "worker died again"
    world.reconcile("alice")
    assert len(world.executor.started) == 2 and body["status"]["phase"] == "Failed"

    ask_retry(world, "alice", "again")
    status = world.reconcile("alice")
    assert world.executor.started[-1] == "bots-alice-1-a2" and status["retry"]["attempts"] == 2
    world.executor.states["bots-alice-1-a2"] = "SUCCEEDED"
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


def set_suspend(world: World, name: str, suspend: bool) -> dict:
    """``spec.suspend`` changed as kubectl would: the generation goes up."""
    body = world.requests[name]
    body["spec"]["suspend"] = suspend
    body["metadata"]["generation"] += 1
    return body


def test_suspend_stops_the_job_and_frees_its_slot_and_resume_goes_on_from_there(world):
    world.create("alice")
    world.reconcile("alice")
    world.executor.states["bots-alice-1"] = "RUNNING"
    write_stats(world, "alice")
    world.storage.write_json(world.layout("alice").progress, {"step": 40, "total_steps": 100})
    assert world.reconcile("alice")["phase"] == "Training"

    set_suspend(world, "alice", True)
    status = world.reconcile("alice")
    assert (status["phase"], status["reason"]) == ("Suspended", "Suspending")
    assert world.executor.states["bots-alice-1"] == "STOPPED"
    status = world.reconcile("alice")  # Ray has stopped it
    assert (status["phase"], status["reason"]) == ("Suspended", "SuspendRequested")
    assert "at step 40 of 100" in status["message"] and not queue_entry(world.requests["alice"]).active
    patches = len(world.patches)
    world.reconcile("alice")
    assert len(world.patches) == patches  # settled: nothing to do until spec.suspend changes

    set_suspend(world, "alice", False)
    status = world.reconcile("alice")
    # A stopped Ray job cannot go on: the run goes on in the next attempt's job, which the
    # trainer resumes from the newest checkpoint (same run name: same settings and data).
    assert world.executor.started == ["bots-alice-1", "bots-alice-1-a1"]
    assert (status["phase"], status["job"]["name"]) == ("Pending", "bots-alice-1-a1")
    assert {c["type"]: c["reason"] for c in status["conditions"]}["Suspended"] == "Resumed"
    world.reconcile("alice")
    assert len(world.executor.started) == 2


def test_a_suspended_request_gives_its_slot_to_the_next_in_line(world):
    world.reconciler.settings.max_concurrent = 1
    world.create("alice")
    world.create("bob")
    world.requests["bob"]["spec"]["output"]["uri"] = world.storage.uri("other")

    def reconcile(name: str) -> dict:
        world.reconciler.reconcile(world.requests[name], [queue_entry(b) for b in world.requests.values()])
        return world.requests[name]["status"]

    reconcile("alice")
    world.executor.states["bots-alice-1"] = "RUNNING"
    assert reconcile("bob")["reason"] == "Queued"

    set_suspend(world, "alice", True)
    reconcile("alice")
    assert reconcile("bob")["reason"] == "Queued"  # alice's job is still stopping
    assert reconcile("alice")["reason"] == "SuspendRequested"
    assert reconcile("bob")["job"]["name"] == "bots-bob-1" and world.executor.started[-1] == "bots-bob-1"

    # Resumed while bob trains: alice waits in line for the slot.
    set_suspend(world, "alice", False)
    assert reconcile("alice")["reason"] == "Queued"


def test_a_failed_job_runs_again_up_to_its_backoff_limit(world):
    body = world.create("alice")
    body["spec"]["backoffLimit"] = 2
    world.reconcile("alice")
    write_stats(world, "alice")
    for retry in (1, 2):
        status = fail(world, "alice", f"worker died {retry}")
        assert (status["phase"], status["reason"]) == ("Pending", "Retrying")
        assert f"worker died {retry}" in status["message"] and f"retry {retry} of 2" in status["message"]
        assert status["retry"] == {"attempts": retry, "backoff": retry}
        world.reconcile("alice")  # the next attempt's job, from the newest checkpoint
        assert world.executor.started[-1] == f"bots-alice-1-a{retry}"
    status = fail(world, "alice", "worker died 3")
    assert (status["phase"], status["message"]) == ("Failed", "worker died 3")
    assert len(world.executor.started) == 3


def test_a_failure_the_same_inputs_would_repeat_is_not_run_again(world):
    body = world.create("alice")
    body["spec"]["backoffLimit"] = 2
    world.reconcile("alice")
    job = body["status"]["job"]["name"]
    world.storage.write_json(
        world.layout("alice").result,
        {"status": "failed", "stage": "data", "error": "@alice: not enough posts", "reason": "NotEnoughPosts"},
    )
    world.executor.states[job] = "FAILED"
    assert world.reconcile("alice")["reason"] == "NotEnoughPosts" and world.executor.started == [job]


@pytest.mark.parametrize(
    "field, value",
    [("serving", {"enabled": False}), ("refresh", {"schedule": "@weekly"}), ("epochs", 7)],
)
def test_only_a_change_of_what_trains_the_bot_trains_it_again(world, field, value):
    world.create("alice")
    world.reconcile("alice")
    write_stats(world, "alice")
    layout = world.layout("alice")
    world.storage.write_json(layout.model_config, {"model_type": "gpt2"})
    world.storage.write_text(layout.card, "# alice\n")
    world.storage.write_json(layout.result, {"status": "succeeded", "model": f"{layout.model}/", "card": layout.card})
    world.executor.states["bots-alice-1"] = "SUCCEEDED"
    assert world.reconcile("alice")["phase"] == "Succeeded"

    body = world.requests["alice"]
    if field == "epochs":
        body["spec"].setdefault("training", {})["epochs"] = value
    else:
        body["spec"][field] = value
    body["metadata"]["generation"] += 1
    status = world.reconcile("alice")
    if field == "epochs":  # the training changed: a new run, a new job
        assert world.executor.started == ["bots-alice-1", "bots-alice-2"] and status["phase"] == "Pending"
    else:  # how the bot is served or refreshed changed: the finished model stands
        assert world.executor.started == ["bots-alice-1"]
        assert (status["phase"], status["observedGeneration"]) == ("Succeeded", 2)
