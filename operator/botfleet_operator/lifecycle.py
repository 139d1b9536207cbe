"""A request's lifecycle beyond one run: suspending and resuming it, retrying a failed one.

Pure functions of the BotRequest object as the API server returns it.

``spec.suspend: true`` stops the request's job and frees its training slot; ``false`` resumes
the same run from its newest checkpoint. Being a spec field, it bumps the generation, which
names a new job; so a job belongs to a *run* (``status.run``): the generation at which the
spec, less ``suspend``, last changed. Toggling ``suspend`` keeps the run, and its job.

A retry is asked for
the way ``kubectl rollout restart`` asks for a restart: by a new value of an annotation,
``botfleet.dev/retry-requested`` (any value; a timestamp is usual). The operator records the
value it has seen in ``status.retry.handled`` (the operator writes only status), so one
value starts one retry however often the request is reconciled. A value set while the
request has not failed asks for nothing.

Each retry is a new attempt, with a job of its own (``status.retry.attempts`` is in the
job's name): the failed job stays as it is for inspection, and the new one resumes from the
newest checkpoint, as any rerun of the same request does.
"""

from __future__ import annotations

import hashlib
import json

from botfleet import api
from botfleet.reasons import Reason

RETRY_ANNOTATION = "botfleet.dev/retry-requested"
FAILED, SUSPENDED = api.PHASES[5], api.PHASES[6]


def _status(body: dict) -> dict:
    return body.get("status") or {}


def _generation(body: dict) -> int:
    return int((body.get("metadata") or {}).get("generation") or 1)


def annotation(body: dict, key: str) -> str | None:
    return ((body.get("metadata") or {}).get("annotations") or {}).get(key) or None


def attempt(body: dict) -> int:
    """Retries started so far (0: the first job of the request); part of the job's name."""
    return int((_status(body).get("retry") or {}).get("attempts") or 0)


def requested_retry(body: dict) -> str | None:
    """The retry annotation's value, when it asks for a retry now: the current generation
    failed and the operator has not handled that value yet."""
    value = annotation(body, RETRY_ANNOTATION)
    status = _status(body)
    if value is None or status.get("phase") != FAILED or status.get("observedGeneration") != _generation(body):
        return None
    return None if value == (status.get("retry") or {}).get("handled") else value


def backoff_retries(body: dict) -> int:
    """Retries the backoff limit has started (executors whose jobs do not count their own)."""
    return int((_status(body).get("retry") or {}).get("backoff") or 0)


def retry_status(body: dict) -> dict | None:
    """``status.retry`` as the next status write carries it: the attempts so far, those the
    backoff limit started, and the annotation value seen (a value seen before a failure is
    no request to retry it)."""
    handled = annotation(body, RETRY_ANNOTATION)
    pairs = (("handled", handled), ("attempts", attempt(body)), ("backoff", backoff_retries(body)))
    return {k: v for k, v in pairs if v} or None


def with_attempts(body: dict, attempts: int) -> dict:
    """``body`` as it will be once its status counts ``attempts`` retries."""
    status = _status(body)
    return {**body, "status": {**status, "retry": {**(status.get("retry") or {}), "attempts": attempts}}}


def retry_message(value: str, attempts: int) -> str:
    """The message of the retry that makes ``attempts`` retries in all."""
    return f"retry requested ({RETRY_ANNOTATION}: {value}): starting attempt {attempts + 1}"


# --------------------------------------------------------------------------- suspend


# Spec fields that change how the bot is run or shown, not what it is trained on: changing
# them keeps the run (and its job, or its finished model) instead of training again.
NOT_TRAINING = ("suspend", "serving", "refresh")


def spec_digest(spec: dict | None) -> str:
    """What decides the run: the whole spec but the fields in :data:`NOT_TRAINING`."""
    rest = {k: v for k, v in (spec or {}).items() if k not in NOT_TRAINING}
    return hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()[:16]


def run_generation(body: dict) -> int:
    """The generation of the request's run (part of its job's name): the recorded one while
    the spec but ``suspend`` is unchanged, else the current generation."""
    run = _status(body).get("run") or {}
    if run.get("generation") and run.get("spec") == spec_digest(body.get("spec")):
        return int(run["generation"])
    return _generation(body)


def run_status(body: dict) -> dict:
    """``status.run`` as the next status write carries it."""
    return {"generation": run_generation(body), "spec": spec_digest(body.get("spec"))}


def suspend_requested(body: dict) -> bool:
    return bool((body.get("spec") or {}).get("suspend"))


def settled_suspended(body: dict) -> bool:
    """Suspended, with nothing running any more: nothing to do until spec.suspend changes."""
    status = _status(body)
    return (
        suspend_requested(body)
        and status.get("phase") == SUSPENDED
        and status.get("reason") == Reason.SUSPEND_REQUESTED
        and status.get("observedGeneration") == _generation(body)
    )
