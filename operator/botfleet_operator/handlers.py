"""The kopf layer: small handlers that pass BotRequests on to the one :class:`Runtime`.

:func:`botfleet_operator.run` makes the runtime and hands it to kopf as ``memo.runtime``.
The watch (``react``) reconciles new requests and spec changes at once; the runtime's level
loop reconciles the unfinished ones every ``reconcile_interval`` seconds. Every write to a
BotRequest is a status patch; kopf keeps its own bookkeeping in annotations (never in the
pruned status), and a finalizer is added only to requests with
``spec.output.deletePolicy: Delete`` (their artifacts must go before the object does).
"""

from __future__ import annotations

import copy
import logging

import kopf

from botfleet import api
from botfleet_operator.failures import ExecutorUnavailable
from botfleet_operator.queue import queue_entry
from botfleet_operator.runtime import job_of

FINALIZER = "botfleet.dev/delete-artifacts"
INDEX = "botrequests_queue"
RESOURCE = (api.GROUP, api.VERSION, api.PLURAL)

# The operator's own registry: none of kopf's defaults (e.g. its login handlers) comes along.
registry = kopf.OperatorRegistry()


def _plain(body) -> dict:
    """A deep, plain-dict copy of a kopf body."""
    return copy.deepcopy({k: body[k] for k in body})


@kopf.index(*RESOURCE, registry=registry, id=INDEX)
def queue_index(namespace, name, body, **_):
    """Every request's place in the training queue (complete before any handler runs)."""
    return {f"{namespace}/{name}": (queue_entry(body), (body.get("status") or {}).get("phase"))}


@kopf.on.login(registry=registry)
def login(**kwargs):
    # In-cluster service account first, then $KUBECONFIG, as the kubernetes client does.
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup(registry=registry)
async def configure_kopf(settings: kopf.OperatorSettings, memo: kopf.Memo, **_):
    """kopf's settings (``settings`` is kopf's, not botfleet's); then start the level loop."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="botfleet.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="botfleet.dev", key="last-handled-configuration"
    )
    settings.persistence.finalizer = FINALIZER
    settings.posting.level = logging.INFO
    settings.execution.max_workers = memo.runtime.settings.workers
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    memo.runtime.start()


@kopf.on.cleanup(registry=registry)
async def stop(memo: kopf.Memo, **_):
    memo.runtime.stop()


@kopf.on.event(*RESOURCE, registry=registry, id="react")
async def react(event, body, logger, memo: kopf.Memo, **kwargs):
    """Every watch event: remember or forget the request, and reconcile a new or changed one."""
    memo.runtime.index = kwargs[INDEX]
    if event.get("type") == "DELETED":
        await memo.runtime.gone(_plain(body), logger)
    else:
        memo.runtime.seen(_plain(body))


def deletes_artifacts(spec, **_) -> bool:
    return (spec.get("output") or {}).get("deletePolicy") == "Delete"


@kopf.on.delete(*RESOURCE, registry=registry, id="delete-artifacts", when=deletes_artifacts)
def delete_artifacts(body, logger, memo: kopf.Memo, **_):
    """Stop the request's job and, once it has stopped, remove its outputs; then the object goes."""
    raw = _plain(body)
    job = job_of(raw)
    try:
        stopped = not job or memo.runtime.executor.delete(raw, job)
    except ExecutorUnavailable as exc:  # its message names the cluster and the fix; no traceback
        raise kopf.TemporaryError(f"cannot stop job {job}: {exc}", delay=30) from None
    if not stopped:
        # A job still running could write after the clean-up: the files would outlive the request.
        raise kopf.TemporaryError(f"waiting for job {job} to stop before removing its files", delay=2)
    try:
        count = memo.runtime.reconciler.delete_artifacts(raw)
    except Exception as exc:
        raise kopf.TemporaryError(f"cannot delete the artifacts: {exc}", delay=10) from exc
    logger.info("deleted %d objects under %s", count, api.parse_spec(raw["spec"]).model_uri)
