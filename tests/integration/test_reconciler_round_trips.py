"""How many object-store calls a new request's first reconcile makes: the claim of its folder
and the removal of an earlier run's result and progress, and nothing read that cannot exist
yet (200 requests at once pay each call 200 times). Same world as test_reconciler.py: real
S3, status patches recorded, a stand-in for the ray executor.
"""

from __future__ import annotations

import pytest

from tests.fixtures.s3 import BucketStorage
from tests.integration.test_reconciler import World


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


def test_a_new_requests_first_reconcile_makes_four_object_store_calls(counted):
    world = World(counted)
    world.create("alice")
    counted.calls = 0
    status = world.reconcile("alice")
    assert world.executor.started == ["bots-alice-1"]
    assert (status["phase"], status["reason"]) == ("Pending", "JobStarting")
    # owner.json read and written; result.json and progress.json of an earlier run removed.
    assert counted.calls == 4


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
