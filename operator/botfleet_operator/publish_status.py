"""Pure status logic of publishing to the Hub (``spec.publish.huggingFace``).

A request that publishes is Succeeded only once its model is on the Hub. Until the job (or
the operator's retry) has published, it is Publishing; a refused or failed publish is
Failed with the reason, and a failed one (the token, the rights, the Hub) is tried again
by the operator (:func:`wants_publish_retry`): the model stays in the object store and is
not trained again.
"""

from __future__ import annotations

import datetime as _dt

from botfleet import api
from botfleet.artifacts import FAILED as PUBLISH_FAILED_STATUS
from botfleet.artifacts import Publication
from botfleet.reasons import RETRIED_PUBLISH_FAILURES, Reason
from botfleet.timestamps import parse_time

RETRY_AFTER_SECONDS = 60.0  # a failed publish downloads the model again: not every reconcile
PUBLISHING, SUCCEEDED, FAILED = api.PHASES[3:6]


def after_training(publication: Publication | None, repo: str, model_folder: str) -> tuple[str, str, str]:
    """(phase, reason, message) of a request whose model is trained, with its card, and is
    to be published to ``repo``."""
    if publication is None or publication.repo != repo:
        return PUBLISHING, Reason.PUBLISH_PENDING, f"publishing {model_folder} to {repo}"
    if publication.published:
        where = f"published at {publication.url} (commit {publication.commit})"
        return SUCCEEDED, Reason.SUCCEEDED, f"model at {model_folder}, {where}"
    reason = publication.reason or Reason.PUBLISH_FAILED
    message = publication.error or "publishing failed"
    if reason in RETRIED_PUBLISH_FAILURES:
        message += f"; the model is safe at {model_folder} and the publish is retried"
    return FAILED, reason, message


def published(publication: Publication | None, repo: str, message: str) -> tuple[bool, str, str]:
    """The Published condition's (ok, reason, message); ``message`` says why it is not."""
    if publication is not None and publication.repo == repo and publication.published:
        return True, Reason.PUBLISHED, f"{publication.url} at commit {publication.commit}"
    if publication is not None and publication.repo == repo:
        return False, publication.reason or Reason.PUBLISH_FAILED, message
    return False, Reason.PUBLISH_PENDING, f"not published to {repo} yet"


def publish_status(publication: Publication | None, repo: str) -> dict:
    """``status.publish``: the repository, and once published its page and commit."""
    out = {"repo": repo}
    if publication is not None and publication.repo == repo and publication.published:
        out.update(url=publication.url, commit=publication.commit)
    return out


def awaiting_publish_retry(status: dict) -> bool:
    """Whether a Failed status is a failed publish the operator tries again (so the request
    is not finished: the level loop keeps reconciling it, without a training slot)."""
    return status.get("reason") in RETRIED_PUBLISH_FAILURES


def wants_publish_retry(publication: Publication | None, repo: str, now: _dt.datetime) -> bool:
    """Whether the operator publishes now: nothing recorded for ``repo`` (the job did not get
    to it), or a failure worth retrying that is old enough."""
    if publication is None or publication.repo != repo:
        return True
    if publication.status != PUBLISH_FAILED_STATUS or publication.reason not in RETRIED_PUBLISH_FAILURES:
        return False
    attempted = parse_time(publication.attempted_at)
    return attempted is None or (now - attempted).total_seconds() >= RETRY_AFTER_SECONDS
