"""How many calls a new request's first reconcile makes: to the object store, the claim of
its folder and one removal of an earlier run's result and progress, and nothing read that
cannot exist yet; to Kubernetes, one status patch when no training limit needs a slot
reserved first, and one event (200 requests at once pay each call 200 times). The world of
tests/fixtures/reconciler_world.py: real S3, status patches recorded, a stand-in executor.
"""

from __future__ import annotations

import pytest

from tests.fixtures.reconciler_world import World
from tests.fixtures.s3 import BucketStorage


class CountingStorage(BucketStorage):
    """The test's bucket, counting the calls that reach the S3 server."""

    def __init__(self, storage: BucketStorage) -> None:
        super().__init__(storage.config, storage.test_bucket)
        self.calls = 0

    def _call(self, *args, **kwargs):
        self.calls += 1
        return super()._call(*args, **kwargs)


@pytest.fixture
def counted(storage) -> CountingStorage:
    return CountingStorage(storage)


def test_a_new_requests_first_reconcile_makes_three_object_store_calls(counted):
    world = World(counted)
    world.create("alice")
    counted.calls = 0
    status = world.reconcile("alice")
    assert world.executor.started == ["bots-alice-1"]
    assert (status["phase"], status["reason"]) == ("Pending", "JobStarting")
    # owner.json read and written; result.json and progress.json of an earlier run removed in one.
    assert counted.calls == 3


def test_with_a_training_limit_the_slot_is_reserved_in_status_before_the_job_starts(counted):
    world = World(counted)
    assert world.reconciler.settings.max_concurrent > 0
    world.create("alice")
    world.reconcile("alice")
    reserved, started = world.patches_of("alice")
    assert (reserved["phase"], reserved["reason"]) == ("Pending", "Launching") and reserved["job"]["name"]
    assert started["reason"] == "JobStarting"


def test_with_no_training_limit_a_new_request_gets_one_status_patch(counted):
    world = World(counted)
    world.reconciler.settings.max_concurrent = 0
    world.create("alice")
    status = world.reconcile("alice")
    (patch,) = world.patches_of("alice")
    assert world.executor.started == ["bots-alice-1"]
    assert patch["job"]["name"] == "bots-alice-1" and (status["phase"], status["reason"]) == ("Pending", "JobStarting")


@pytest.mark.parametrize("max_concurrent", [0, 2])
def test_a_job_created_by_a_reconcile_is_announced_by_one_event(counted, max_concurrent):
    world = World(counted)
    world.reconciler.settings.max_concurrent = max_concurrent
    world.create("alice")
    outcome = world.reconciler.reconcile(world.requests["alice"], [])
    assert [reason for _, reason, _ in outcome.events] == ["JobCreated"]
    assert world.requests["alice"]["status"]["reason"] == "JobStarting"


def test_an_earlier_runs_result_is_removed_not_read_as_this_runs(counted):
    world = World(counted)
    world.create("alice")
    layout = world.layout("alice")
    counted.write_json(layout.result, {"status": "succeeded", "model": f"{layout.model}/", "card": layout.card})
    counted.write_json(layout.progress, {"step": 9, "total_steps": 9})
    status = world.reconcile("alice")
    assert world.executor.started == ["bots-alice-1"]
    assert status["phase"] == "Pending" and "progress" not in status
    assert not counted.exists(layout.result) and not counted.exists(layout.progress)
