"""Refreshes under the operator: a new annotation value or a schedule runs the job again,
once, under a new name, and the status says what it found. The reconciler against a real
S3 server with the executor stand-in of test_reconciler."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from botfleet import api
from botfleet.timestamps import now_iso
from botfleet_operator.reconciler import Reconciler
from botfleet_operator.settings import Settings
from tests.fixtures.reconciler_world import RayJobsByRunTag, World, write_stats


@pytest.fixture
def world(storage) -> World:
    world = World(storage)
    world.executor = world.reconciler.executor = RayJobsByRunTag()
    return world


def finish(world: World, name: str, result: dict) -> dict:
    """The current job succeeds, leaving ``result`` and its files; the status afterwards."""
    status = world.reconcile(name)
    job = status["job"]["name"]
    layout = world.layout(name)
    world.executor.states[job] = "RUNNING"
    write_stats(world, name)
    world.storage.write_json(layout.model_config, {"model_type": "gpt2"})
    world.storage.write_text(layout.card, "# alice\n")
    world.storage.write_json(layout.history, {"versions": [{"version": result.get("version") or 1, "posts": 100}]})
    world.storage.write_json(layout.result, {"status": "succeeded", "model": f"{layout.model}/", **result})
    world.executor.states[job] = "SUCCEEDED"
    return world.reconcile(name)


def restart_operator(world: World) -> None:
    """A new operator process: it knows only what the API server stores."""
    world.reconciler = Reconciler(
        Settings(executor="ray"), world.executor, world.storage, world.patch_status, world.request_uid
    )


def annotate(world: World, name: str, value: str) -> None:
    world.requests[name]["metadata"]["annotations"] = {api.REFRESH_ANNOTATION: value}


def test_a_new_annotation_value_refreshes_once(world):
    world.create("alice")
    annotate(world, "alice", "before-the-first-training")  # no model yet: nothing to refresh
    status = finish(world, "alice", {"version": 1})
    assert status["phase"] == "Succeeded" and world.executor.started == ["bots-alice-1"]

    # A bot with a model: the value not handled yet starts refresh 1 (so a value set at
    # creation refreshes once after the first training; that refresh finds nothing new).
    status = world.reconcile("alice")
    assert world.executor.started == ["bots-alice-1", "bots-alice-1-r1"]
    assert status["refresh"] == {"generation": 1, "count": 1, "trigger": "before-the-first-training"}
    assert (status["phase"], status["reason"]) == ("Pending", "JobStarting") and "completionTime" not in status
    assert not world.storage.exists(world.layout("alice").result)  # the last run's verdict is not this one's
    status = finish(world, "alice", {"version": 1, "new_posts": 0})
    assert status["phase"] == "Succeeded" and status["message"].endswith("(nothing new: version 1 stays)")
    assert status["refresh"]["lastResult"] == "nothing new: version 1 stays"

    annotate(world, "alice", "2026-12-02T10:00:00Z")  # as `kubectl annotate --overwrite ...=$(date)`
    status = world.reconcile("alice")
    assert world.executor.started[-1] == "bots-alice-1-r2"
    status = finish(world, "alice", {"version": 2, "new_posts": 12})
    assert status["message"].endswith("(+12 new posts: version 2)")
    assert status["history"][-1]["version"] == 2

    # Handled: reconciles, and a restarted operator, start nothing more.
    world.reconcile("alice")
    restart_operator(world)
    world.reconcile("alice")
    assert world.executor.started == ["bots-alice-1", "bots-alice-1-r1", "bots-alice-1-r2"]


def test_a_schedule_refreshes_at_its_time_once(world):
    body = world.create("alice")
    body["spec"]["refresh"] = {"schedule": "@daily", "timeZone": "Europe/Paris"}
    status = finish(world, "alice", {"version": 1})
    assert world.executor.started == ["bots-alice-1"]  # finished just now: the next midnight is to come

    body["status"]["completionTime"] = now_iso(datetime.now(UTC) - timedelta(days=2))  # two days later:
    restart_operator(world)
    status = world.reconcile("alice")
    assert world.executor.started[-1] == "bots-alice-1-r1"
    midnight = datetime.fromisoformat(status["refresh"]["scheduledAt"].replace("Z", "+00:00"))
    assert midnight.astimezone(ZoneInfo("Europe/Paris")).hour == 0
    assert datetime.now(UTC) - midnight < timedelta(days=1)
    finish(world, "alice", {"version": 2, "new_posts": 3})
    world.reconcile("alice")
    assert len(world.executor.started) == 2


def test_a_new_generation_is_no_refresh(world):
    body = world.create("alice")
    finish(world, "alice", {"version": 1})
    annotate(world, "alice", "1")
    world.reconcile("alice")
    body["metadata"]["generation"] = 2
    body["spec"]["training"] = {"epochs": 2}
    world.executor.states["bots-alice-1-r1"] = "SUCCEEDED"
    world.reconcile("alice")
    assert world.executor.started[-1] == "bots-alice-2"


def test_an_unknown_time_zone_is_reported_once(world):
    body = world.create("alice")
    body["spec"]["refresh"] = {"schedule": "0 3 * * *", "timeZone": "Mars/Olympus"}
    finish(world, "alice", {"version": 1})
    outcome = world.reconciler.reconcile(body, [])
    assert [(kind, reason) for kind, reason, _ in outcome.events] == [("Warning", "InvalidSpec")]
    assert "Mars/Olympus" in body["status"]["refresh"]["error"]
    assert world.reconciler.reconcile(body, []).events == []
    body["spec"]["refresh"]["timeZone"] = "UTC"
    world.reconcile("alice")
    assert "error" not in body["status"]["refresh"]
