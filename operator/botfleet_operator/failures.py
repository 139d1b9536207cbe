"""What the operator does when reconciles of a request keep failing: pure decisions.

A failed reconcile is described once (:func:`describe`: a Reason and one line that names the
fix); the request's status says so at once (:func:`failure_status`); an event and a log line
come only when the reason changes (:func:`on_failure`); retries back off, doubling from the
reconcile interval up to a cap (:func:`backoff`), and come early once the executor's cluster
answers again (:func:`is_due`). The runtime keeps one :class:`FailureState` per failing request.
"""

from __future__ import annotations

from dataclasses import dataclass

from botfleet.errors import one_line
from botfleet.reasons import Reason
from botfleet_operator.status import PENDING, TERMINAL, condition, merge_conditions


class ExecutorUnavailable(Exception):
    """The executor's cluster cannot be used at all (refused, unreachable): every request that
    needs it fails alike, and none of them is at fault. ``reason`` is a :class:`Reason`; the
    message names the cluster's address and what to fix, never a secret."""

    reason: str = Reason.RECONCILE_ERROR

    def __init__(self, address: str, message: str) -> None:
        super().__init__(message)
        self.address = address


@dataclass(frozen=True)
class Failure:
    """Why reconciles of a request fail, for people and machines."""

    reason: str  # a Reason
    message: str  # one line
    executor: bool = False  # the executor's cluster is unusable: not the request's own problem


@dataclass(frozen=True)
class FailureState:
    """A request whose reconciles fail: since when, how often in a row, when to try again."""

    failure: Failure
    count: int  # reconciles failed in a row
    last: float  # when the latest one failed (monotonic seconds)
    retry_at: float  # no reconcile before this (monotonic seconds), unless is_due says so


@dataclass(frozen=True)
class Decision:
    state: FailureState
    announce: bool  # a new reason: post a Warning event and log a line


def describe(exc: BaseException) -> Failure:
    """The failure an exception of a reconcile stands for."""
    if isinstance(exc, ExecutorUnavailable):
        return Failure(exc.reason, one_line(exc), executor=True)
    return Failure(Reason.RECONCILE_ERROR, f"{type(exc).__name__}: {one_line(exc, 400)}")


def backoff(count: int, base: float, cap: float) -> float:
    """Seconds before the next try after ``count`` failures in a row: base, 2 base, 4 base...
    up to cap (never below base: the level loop's own interval)."""
    return min(max(cap, base), base * 2 ** min(max(count - 1, 0), 30))


def on_failure(previous: FailureState | None, failure: Failure, now: float, base: float, cap: float) -> Decision:
    """The state after one more failed reconcile, and whether to announce it (a new reason)."""
    count = previous.count + 1 if previous is not None else 1
    announce = previous is None or previous.failure.reason != failure.reason
    return Decision(FailureState(failure, count, now, now + backoff(count, base, cap)), announce)


def is_due(state: FailureState | None, now: float, executor_up_since: float | None) -> bool:
    """Whether the level loop may reconcile the request now: it is not failing, its backoff is
    over, or its failure was the executor's and the executor has answered since."""
    if state is None or now >= state.retry_at:
        return True
    return state.failure.executor and executor_up_since is not None and executor_up_since > state.last


def failure_status(old: dict, failure: Failure, generation: int, now: str) -> dict:
    """The request's status while its reconciles fail: what it was, with the failure as its
    reason, message and Ready condition. The phase stays (a status of an older generation that
    had finished goes back to Pending: this generation has not)."""
    status = dict(old)
    status.setdefault("observedGeneration", generation)
    if not status.get("phase") or (status["observedGeneration"] != generation and status["phase"] in TERMINAL):
        status["phase"] = PENDING
    status["reason"], status["message"] = failure.reason, failure.message
    ready = condition("Ready", False, failure.reason, failure.message, generation)
    others = [c for c in old.get("conditions") or [] if c.get("type") != "Ready"]
    status["conditions"] = merge_conditions(old.get("conditions"), [ready, *others], now)
    return status
