"""The reconcile-failure policy (operator/botfleet_operator/failures.py): what a failing
request's status says, when an event and a log line come, how retries back off."""

from __future__ import annotations

import pytest

from botfleet.reasons import Reason
from botfleet_operator import failures as f
from botfleet_operator.ray_access import RayUnauthorized, RayUnreachable

NOW = "2026-12-02T16:00:00Z"
LATER = "2026-12-02T16:05:00Z"
UNAUTHORIZED = f.describe(RayUnauthorized("http://head:8265", "the Ray cluster at http://head:8265 refuses ..."))


def test_describe_names_the_executor_reasons_and_keeps_anything_else_to_one_line():
    assert UNAUTHORIZED == f.Failure(Reason.RAY_UNAUTHORIZED, "the Ray cluster at http://head:8265 refuses ...", True)
    unreachable = f.describe(RayUnreachable("http://head:8265", "cannot reach the Ray cluster at http://head:8265"))
    assert (unreachable.reason, unreachable.executor) == (Reason.RAY_UNREACHABLE, True)
    other = f.describe(ValueError("line one\n  line two\n" + "x" * 1000))
    assert other.reason == Reason.RECONCILE_ERROR and not other.executor
    assert other.message.startswith("ValueError: line one line two") and "\n" not in other.message
    assert len(other.message) < 450


def test_backoff_doubles_from_the_interval_up_to_the_cap():
    assert [f.backoff(n, 5, 60) for n in range(1, 8)] == [5, 10, 20, 40, 60, 60, 60]
    assert f.backoff(10_000, 5, 60) == 60  # no overflow after days of failures
    assert f.backoff(3, 90, 60) == 90  # a cap below the interval: the interval


def test_an_event_and_a_log_line_only_when_the_reason_changes():
    first = f.on_failure(None, UNAUTHORIZED, now=0, base=5, cap=60)
    assert first.announce and first.state.count == 1 and first.state.retry_at == 5
    again = f.on_failure(first.state, UNAUTHORIZED, now=5, base=5, cap=60)
    assert not again.announce and again.state.count == 2 and again.state.retry_at == 15
    other = f.describe(RayUnreachable("http://head:8265", "cannot reach"))
    changed = f.on_failure(again.state, other, now=15, base=5, cap=60)
    assert changed.announce and changed.state.failure == other


def test_a_minute_of_failures_at_the_default_interval_gives_one_event_and_few_tries():
    """The reported flood: a reconcile every 5 s, an event each. Simulated level loop."""
    state, tries, events = None, 0, 0
    for tick in range(0, 61, 5):
        if f.is_due(state, tick, executor_up_since=None):
            decision = f.on_failure(state, UNAUTHORIZED, tick, base=5, cap=60)
            state, tries, events = decision.state, tries + 1, events + decision.announce
    assert events == 1
    assert tries == 4  # at 0, 5, 15 and 35 s; then 75 s


def test_a_request_failing_on_the_executor_is_due_again_once_the_executor_answers():
    state = f.on_failure(None, UNAUTHORIZED, now=100, base=5, cap=60).state
    assert not f.is_due(state, 101, executor_up_since=None)
    assert not f.is_due(state, 101, executor_up_since=50)  # up before the failure: not news
    assert f.is_due(state, 101, executor_up_since=100.5)
    assert f.is_due(state, 105, executor_up_since=None)  # its backoff is over
    own = f.on_failure(None, f.describe(KeyError("x")), now=100, base=5, cap=60).state
    assert not f.is_due(own, 101, executor_up_since=100.5)  # its own problem: the backoff stands
    assert f.is_due(None, 0, None)


def test_the_status_of_a_new_request_says_why_at_once():
    status = f.failure_status({}, UNAUTHORIZED, generation=1, now=NOW)
    assert status["phase"] == "Pending" and status["observedGeneration"] == 1
    assert (status["reason"], status["message"]) == (UNAUTHORIZED.reason, UNAUTHORIZED.message)
    assert status["conditions"] == [
        {
            "type": "Ready",
            "status": "False",
            "reason": "RayUnauthorized",
            "message": UNAUTHORIZED.message,
            "observedGeneration": 1,
            "lastTransitionTime": NOW,
        }
    ]


def test_the_status_keeps_what_it_showed_and_replaces_only_the_ready_condition():
    data = {"type": "DataReady", "status": "False", "reason": "Pending", "message": "m", "lastTransitionTime": NOW}
    ready = {"type": "Ready", "status": "False", "reason": "Launching", "message": "m", "lastTransitionTime": NOW}
    old = {
        "phase": "Training",
        "reason": "Training",
        "message": "step 3 of 40",
        "observedGeneration": 2,
        "job": {"executor": "ray", "name": "botfleet-ns-a-g2"},
        "conditions": [ready, data],
    }
    status = f.failure_status(old, UNAUTHORIZED, generation=2, now=LATER)
    assert status["phase"] == "Training" and status["job"] == old["job"] and status["reason"] == "RayUnauthorized"
    new_ready, kept = status["conditions"]
    assert new_ready["reason"] == "RayUnauthorized" and new_ready["lastTransitionTime"] == NOW  # still False
    assert kept == data
    assert f.failure_status(status, UNAUTHORIZED, generation=2, now="2027-01-01T00:00:00Z") == status  # no new write


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_a_finished_older_generation_does_not_make_the_new_one_look_finished(phase):
    old = {"phase": phase, "observedGeneration": 1, "reason": phase, "message": "done"}
    status = f.failure_status(old, UNAUTHORIZED, generation=2, now=NOW)
    assert status["phase"] == "Pending" and status["observedGeneration"] == 1
