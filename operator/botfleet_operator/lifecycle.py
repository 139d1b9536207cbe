"""A request's lifecycle beyond one run: retrying a failed one on request, without a spec edit.

Pure functions of the BotRequest object as the API server returns it. A retry is asked for
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

from botfleet import api

RETRY_ANNOTATION = "botfleet.dev/retry-requested"
FAILED = api.PHASES[5]


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


def retry_status(body: dict, attempts: int | None = None) -> dict | None:
    """``status.retry`` as the next status write carries it: the attempts so far and the
    annotation value seen (a value seen before a failure is no request to retry it)."""
    attempts = attempt(body) if attempts is None else attempts
    handled = annotation(body, RETRY_ANNOTATION)
    out = {k: v for k, v in (("handled", handled), ("attempts", attempts)) if v}
    return out or None


def retry_message(value: str, attempts: int) -> str:
    """The message of the retry that makes ``attempts`` retries in all."""
    return f"retry requested ({RETRY_ANNOTATION}: {value}): starting attempt {attempts + 1}"
