"""One reconcile of one BotRequest: read the world, compute the status, converge.

Blocking code (Kubernetes, S3 and Ray calls); the kopf handlers run it in threads. The
decisions are pure functions: :mod:`~botfleet_operator.status`, :mod:`~botfleet_operator.queue`.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import logging
import threading
import time
from dataclasses import dataclass, field

from botfleet import api
from botfleet.artifacts import FAILED as FAILED_PUBLISH
from botfleet.artifacts import History, Owner, Progress, Publication, Result, Stats, TrainingRecord, data_fingerprint
from botfleet.card import CardLinks, render_card
from botfleet.errors import one_line
from botfleet.layout import Layout, folder
from botfleet.publishing import hub_repo, publish_bot
from botfleet.reasons import Reason
from botfleet.storage import NotFound, Storage, StorageError
from botfleet.timestamps import now_iso, parse_time
from botfleet_operator import metrics
from botfleet_operator.executors import Executor
from botfleet_operator.failures import ExecutorUnavailable, Failure, failure_status
from botfleet_operator.lifecycle import (
    attempt,
    backoff_retries,
    requested_retry,
    retry_message,
    settled_suspended,
    with_attempts,
)
from botfleet_operator.limits import limits_for, overdue
from botfleet_operator.observation import JOB_FAILED, JOB_SUCCEEDED, JobObservation
from botfleet_operator.patch import merge_patch
from botfleet_operator.publish_status import awaiting_publish_retry, wants_publish_retry
from botfleet_operator.queue import QueueEntry, decide_admission, request_key
from botfleet_operator.rayjob import resolve_spec, worker_shape
from botfleet_operator.refresh import ScheduleError, refresh_due
from botfleet_operator.settings import Settings
from botfleet_operator.status import (
    FAILED,
    PENDING,
    SUSPENDED,
    TERMINAL,
    JobFiles,
    compute_status,
    is_terminal_for,
)

log = logging.getLogger("botfleet_operator")


@dataclass
class Outcome:
    """What a reconcile did: the status patch it applied and the events to post."""

    patch: dict | None = None
    events: list[tuple[str, str, str]] = field(default_factory=list)
    phase: str | None = None


def announced(events: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The events a reconcile posts. A job it created is announced once, by JobCreated: the
    Launching and JobStarting transitions on the way there would only repeat it (and each
    event is one more API write, paid once per request of a burst)."""
    if not any(reason == Reason.JOB_CREATED for _, reason, _ in events):
        return events
    return [event for event in events if event[1] not in (Reason.LAUNCHING, Reason.JOB_STARTING)]


def _fingerprint_ok(stats: Stats, spec: api.BotSpec) -> bool:
    """Whether stats.json describes this spec's data (data_stage's fingerprint)."""
    return stats.fingerprint in (None, data_fingerprint(spec))


def operator_card(spec: api.BotSpec, files: JobFiles, layout: Layout) -> str:
    """The model card of a successful job that left none, linking what the operator knows."""
    links = CardLinks(
        dataset_uri=folder(layout.data),
        checkpoints_uri=folder(layout.checkpoints),
        model_uri=folder(layout.model),
        thumbnail_url=None,  # the job draws it; the operator has no training stack
        model_for_pipeline=spec.model_id,
        tracking_run_url=files.result.tracking_run_url if files.result else None,
    )
    stats = files.stats.to_dict() if files.stats else {}
    training = files.training.to_dict() if files.training else {}
    return render_card(spec, stats, training, links)


class Reconciler:
    def __init__(
        self,
        settings: Settings,
        executor: Executor,
        storage: Storage | None,
        patch_status,
        request_uid,
        read_secret=None,
    ) -> None:
        self.settings = settings
        self.executor = executor
        self.storage = storage
        self.patch_status = patch_status  # (namespace, name, merge_patch) -> None
        self.request_uid = request_uid  # (namespace, name) -> the BotRequest's uid, None if there is none
        self.read_secret = read_secret  # (namespace, name, key) -> str | None: the Hub token, to retry a publish
        self._lock = threading.Lock()
        self._folder_locks: dict[str, threading.Lock] = {}  # output folder -> its claims, one at a time
        self._claimed: set[tuple[str, str]] = set()  # (owner.json, uid) this process wrote or found
        self._reserved: dict[str, int] = {}  # key -> generation started by this process
        self._superseding: set[str] = set()  # keys whose older generation's job is stopping
        self._key_locks: dict[str, threading.Lock] = {}
        # key -> (uid, status) last written: this operator is the status's only writer, so
        # its last write is newer than whatever a lagging watch delivered.
        self._written: dict[str, tuple[str, dict]] = {}

    # ----------------------------------------------------------------- queue

    def release(self, key: str) -> None:
        with self._lock:
            self._reserved.pop(key, None)

    def _admit(self, key: str, generation: int, entries: list[QueueEntry]):
        with self._lock:
            decision = decide_admission(key, entries, self.settings.max_concurrent, set(self._reserved))
            if decision.admit:
                self._reserved[key] = generation
            return decision

    def key_lock(self, key: str) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def forget(self, key: str) -> None:
        with self._lock:
            self._reserved.pop(key, None)
            self._key_locks.pop(key, None)
            self._written.pop(key, None)
            self._superseding.discard(key)

    def with_latest_status(self, body: dict) -> dict:
        """``body`` with the status this process last wrote, when it is newer than the body's."""
        with self._lock:
            written = self._written.get(request_key(body))
        if written is not None and written[0] == body["metadata"].get("uid"):
            return {**body, "status": copy.deepcopy(written[1])}
        return body

    # ----------------------------------------------------------------- files

    def _read(self, uri: str, artifact):
        """The file at ``uri`` as an ``artifact`` type (:mod:`botfleet.artifacts`), None when
        it is missing or unreadable."""
        try:
            value = self.storage.read_json(uri)
        except NotFound:
            return None
        except StorageError as exc:
            log.debug("cannot read %s: %s", uri, exc)
            return None
        return artifact.from_dict(value) if isinstance(value, dict) else None

    def _exists(self, uri: str) -> bool:
        try:
            return self.storage.exists(uri)
        except StorageError as exc:
            log.debug("cannot check %s: %s", uri, exc)
            return False

    def read_files(self, layout: Layout, spec: api.BotSpec, job: JobObservation) -> JobFiles:
        if self.storage is None:
            # Nothing to read: trust the job.
            done = job.state == JOB_SUCCEEDED
            return JobFiles(model_present=done, card_present=done)
        stats = self._read(layout.stats, Stats)
        if stats is not None and not _fingerprint_ok(stats, spec):
            stats = None
        result = self._read(layout.result, Result)
        progress = self._read(layout.progress, Progress) if stats is not None else None
        finished_ok = job.state == JOB_SUCCEEDED or (result is not None and result.succeeded)
        training = self._read(layout.training, TrainingRecord) if finished_ok else None
        model = self._exists(layout.model_config) if finished_ok else False
        named = result.card if result else None
        elsewhere = isinstance(named, str) and named.startswith(("s3://", "file://")) and named != layout.card
        card_uri = named if elsewhere else None
        card = self._exists(card_uri or layout.card) if finished_ok else False
        return JobFiles(
            stats=stats,
            progress=progress,
            result=result,
            training=training,
            model_present=model,
            card_present=card,
            card_uri=card_uri,
            publication=self._read(layout.publication, Publication) if finished_ok else None,
            history=self._read(layout.history, History),
        )

    def _stop_superseded(self, key: str, body: dict, job: str, generation: int, events: list) -> bool:
        """Stop an older generation's job; True once it is gone. Until then the status stays
        the old job's (its observedGeneration says which spec it shows) and a later reconcile
        asks again; the event is posted once."""
        try:
            gone = self.executor.delete(body, job)
        except ExecutorUnavailable:
            raise  # the cluster, not this job: a failed reconcile (failures.py)
        except Exception as exc:  # noqa: BLE001 - asked again next reconcile
            log.warning("%s: cannot stop superseded job %s: %s", key, job, exc)
            gone = False
        with self._lock:
            first = key not in self._superseding
            if gone:
                self._superseding.discard(key)
            else:
                self._superseding.add(key)
        if first:
            message = f"spec changed (generation {generation}): {'stopped' if gone else 'stopping'} job {job}"
            events.append(("Normal", Reason.SUPERSEDED, message))
        return gone

    def claim_output(self, body: dict, layout: Layout) -> str | None:
        """Make this request the owner of its output folder (``owner.json``), unless another
        BotRequest that still exists owns it; then say which. Two requests writing one folder
        would mix their runs, and deleting one (deletePolicy: Delete) would wipe the other's."""
        if self.storage is None:
            return None
        meta = body["metadata"]
        me = Owner(namespace=meta["namespace"], name=meta["name"], uid=meta["uid"])
        claim = (layout.owner, meta["uid"])
        with self._lock:
            if claim in self._claimed:  # a queued request is reconciled often: no I/O each time
                return None
            folder_lock = self._folder_locks.setdefault(layout.owner, threading.Lock())
        with folder_lock:  # two of this operator's requests with one folder, reconciled at once
            try:
                owner = self._owner(layout)
                if owner is not None and owner.uid != me.uid and self._exists_still(owner):
                    return (
                        f"{folder(layout.model_uri)} is the output of BotRequest {owner.namespace}/{owner.name}:"
                        " give this one another spec.output.uri, or delete that one"
                    )
                if owner != me:
                    self.storage.write_json(layout.owner, me.to_dict())
                with self._lock:
                    self._claimed.add(claim)
            except StorageError as exc:
                # The job cannot write there either: it starts and fails with the store's own
                # words, which say more than a claim that could not be made.
                log.warning("cannot record the owner of %s: %s", folder(layout.model_uri), exc)
        return None

    def _owner(self, layout: Layout) -> Owner | None:
        try:
            owner = self.storage.read_json(layout.owner)
        except NotFound:
            return None
        return Owner.from_dict(owner) if isinstance(owner, dict) else None

    def _exists_still(self, owner: Owner) -> bool:
        try:
            return self.request_uid(owner.namespace, owner.name) == owner.uid
        except Exception as exc:  # noqa: BLE001 - cannot tell (e.g. a namespace not granted): keep off it
            log.warning(
                "cannot look up BotRequest %s/%s, which owns an output folder: %s", owner.namespace, owner.name, exc
            )
            return True

    def clear_previous_run(self, layout: Layout, publishes: bool) -> None:
        """Remove the files of an earlier run that would be mistaken for this one's (its
        publish.json only matters to a request that publishes)."""
        if self.storage is None:
            return
        uris = (layout.result, layout.progress) + ((layout.publication,) if publishes else ())
        try:
            self.storage.delete_all(uris)
        except StorageError as exc:
            log.warning("cannot remove %s before a new run: %s", ", ".join(uris), exc)

    def _start_refresh(self, body: dict, events: list) -> dict:
        """A refresh that is due (:mod:`~botfleet_operator.refresh`) starts here: its status
        first (what was handled, Pending, the finished run's job and times cleared), so that a
        restarted operator neither loses nor repeats it; the usual path then starts its job."""
        old = body.get("status") or {}
        try:
            due = refresh_due(body)
        except ScheduleError as exc:
            if (old.get("refresh") or {}).get("error") != str(exc):
                self._apply(body, old, {**old, "refresh": {**(old.get("refresh") or {}), "error": str(exc)}})
                events.append(("Warning", Reason.INVALID_SPEC, str(exc)))
            return body
        if due is None:
            if "error" in (old.get("refresh") or {}):  # the schedule was fixed
                state = {k: v for k, v in old["refresh"].items() if k != "error"}
                self._apply(body, old, {**old, "refresh": state})
                return {**body, "status": {**old, "refresh": state}}
            return body
        new = {k: v for k, v in old.items() if k not in ("job", "startTime", "completionTime", "refresh")}
        new.update(refresh=due.state, phase=PENDING, reason=Reason.REFRESHING, message=due.message)
        self._apply(body, old, new)
        events.append(("Normal", Reason.REFRESHING, due.message))
        return {**body, "status": new}

    # ----------------------------------------------------------------- reconcile

    def reconcile(self, body: dict, entries: list[QueueEntry]) -> Outcome:
        key = request_key(body)
        with self.key_lock(key):
            return self._reconcile(body, entries)

    def _reconcile(self, body: dict, entries: list[QueueEntry]) -> Outcome:
        started = time.monotonic()
        try:
            return self._converge(self.with_latest_status(body), entries)
        finally:
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)

    def _apply(self, body: dict, old: dict, new: dict) -> dict | None:
        patch = merge_patch(old, new)
        if patch:
            meta = body["metadata"]
            self.patch_status(meta["namespace"], meta["name"], patch)
            with self._lock:
                self._written[request_key(body)] = (meta.get("uid"), copy.deepcopy(new))
        return patch

    def _wait(self, body: dict, old: dict, desired, events: list) -> Outcome:
        """Pending with no job started (queued, or the output folder taken)."""
        patch = self._apply(body, old, desired.status)
        return Outcome(patch, events + desired.events, desired.status["phase"])

    def _start_retry(self, body: dict, events: list, reason: Reason, message: str, **retry) -> dict:
        """A failed request back to Pending for its next attempt; ``body`` with that status
        (``retry``: what status.retry records besides the attempt).

        The new attempt has a job of its own (the failed one is no longer the request's), and
        starts as any run does: a training slot first, then the job, from the newest checkpoint."""
        old = body.get("status") or {}
        new = {k: v for k, v in old.items() if k not in ("job", "startTime", "completionTime")}
        recorded = {**(old.get("retry") or {}), "attempts": attempt(body) + 1, **retry}
        new.update(phase=PENDING, reason=reason, message=message, retry=recorded)
        self._apply(body, old, new)
        events.append(("Warning" if reason == Reason.RETRYING else "Normal", reason, message))
        return {**body, "status": new}

    def _retry_after_failure(self, body: dict, spec: api.BotSpec, job: JobObservation, failed: dict, events: list):
        """A failed job run again while spec.backoffLimit allows (KubeRay retries a RayJob
        itself); None when it does not, or when the same inputs would fail the same way."""
        used, limit = backoff_retries(body), limits_for(spec, self.settings).backoff_limit
        if self.executor.kind == "kuberay" or job.state != JOB_FAILED or used >= limit:
            return None
        if failed["reason"] in (Reason.NOT_ENOUGH_POSTS, Reason.SOURCE_FAILED):
            return None
        message = (
            f"the job failed ({failed['message']}); running it again from the newest checkpoint"
            f" (retry {used + 1} of {limit})"
        )
        self.release(request_key(body))
        body = self._start_retry(body, events, Reason.RETRYING, message, backoff=used + 1)
        return Outcome(None, events, PENDING)

    def _suspend(self, key: str, body: dict, layout: Layout, spec: api.BotSpec, status_of, events: list):
        """spec.suspend: stop the request's job and free its slot; the Suspended status once
        nothing of it runs. None when its job finished first (its verdict stands)."""
        old = body.get("status") or {}
        job_name = (old.get("job") or {}).get("name")
        job = self.executor.observe(body, job_name) if job_name else JobObservation(self.executor.kind, "")
        # A job that ended while being suspended was stopped by the suspension, unless it succeeded.
        if job.state == JOB_SUCCEEDED or (job.finished and old.get("reason") != Reason.SUSPENDING):
            return None
        stopped = not job.exists or self.executor.suspend(body, job.name)
        of = body
        if stopped:
            self.release(key)
            if job.exists and not self.executor.resumes_in_place:
                # The stopped job cannot go on: the resumed run is the next attempt's job.
                of = with_attempts(body, attempt(body) + 1)
                job = JobObservation(self.executor.kind, self.executor.name(of))
        files = self.read_files(layout, spec, job)
        desired = status_of(job, files, of=of, suspended=stopped)
        patch = self._apply(body, old, desired.status)
        return Outcome(patch, events + desired.events, SUSPENDED)

    def _overdue(self, body: dict, old: dict, spec: api.BotSpec, job: JobObservation, workers: str):
        """(reason, message) of a deadline the job has passed, after asking the executor to
        stop it; None while it is within its limits. KubeRay enforces a RayJob's active
        deadline itself."""
        labels = body["metadata"].get("labels") or {}
        found = overdue(
            job,
            limits_for(spec, self.settings),
            enforce_active=self.executor.kind != "kuberay",
            started=old.get("startTime"),
            now=datetime.datetime.now(datetime.UTC),
            workers=workers,
            queue=labels.get(api.QUEUE_LABEL),
        )
        if found is not None:
            try:
                self.executor.delete(body, job.name)
            except Exception as exc:  # noqa: BLE001 - the verdict stands; the job goes with its request
                log.warning("%s: cannot stop job %s past its deadline: %s", request_key(body), job.name, exc)
        return found

    def _converge(self, body: dict, entries: list[QueueEntry]) -> Outcome:
        meta = body["metadata"]
        key = request_key(body)
        generation = int(meta.get("generation") or 1)
        if meta.get("deletionTimestamp"):
            return Outcome()
        events: list[tuple[str, str, str]] = []
        body = self._start_refresh(body, events)
        old = body.get("status") or {}
        if (retry := requested_retry(body)) is not None:
            message = retry_message(retry, attempt(body) + 1)
            body = self._start_retry(body, events, Reason.RETRY_REQUESTED, message, handled=retry)
            old = body["status"]
        if is_terminal_for(body):
            self.release(key)
            return Outcome(events=events, phase=old.get("phase"))
        if settled_suspended(body):  # nothing runs, nothing to do until spec.suspend changes
            self.release(key)
            return Outcome(events=events, phase=SUSPENDED)

        try:
            job_spec = resolve_spec(body, self.settings)  # the one parse of this reconcile
            spec, invalid = job_spec.typed, None
        except api.ValidationError as exc:
            spec, invalid = None, str(exc)
        name = self.executor.name(body)
        empty_job = JobObservation(self.executor.kind, name)
        if invalid:
            handles = [h.get("handle", "") for h in (body.get("spec") or {}).get("handles", []) if isinstance(h, dict)]
            desired = compute_status(
                body, model_id="", handles=handles, layout=Layout(""), job=empty_job, files=JobFiles(), invalid=invalid
            )
            patch = self._apply(body, old, desired.status)
            self.release(key)
            return Outcome(patch, desired.events, FAILED)

        layout = Layout(spec.model_uri)
        handles = [h.name for h in spec.handles]
        kuberay = self.executor.kind == "kuberay"  # a Ray cluster's job API takes no memory size
        workers = worker_shape(spec, with_memory=kuberay)
        old_job = old.get("job") or {}
        hub = hub_repo(spec) if self.storage is not None else None  # without a store, nothing to publish from

        def status_of(job: JobObservation, files: JobFiles, of: dict | None = None, **kw):
            return compute_status(
                of or body,
                model_id=spec.model_id,
                handles=handles,
                layout=layout,
                job=job,
                files=files,
                workers=workers,
                publish_repo=hub.repo if hub else None,
                **kw,
            )

        if spec.suspend and (suspended := self._suspend(key, body, layout, spec, status_of, events)) is not None:
            return suspended

        # A spec change while an older generation's job runs: that job is superseded, and
        # must be gone before this generation clears the folder it still writes to.
        if old_job.get("name") and old_job.get("name") != name and old.get("phase") not in TERMINAL:
            if not self._stop_superseded(key, body, old_job["name"], generation, events):
                return Outcome(events=events, phase=old.get("phase"))

        # The name is the run's and attempt's: the same name, the same admitted job (unless
        # suspended since, which freed its slot).
        started_here = old_job.get("name") == name and old.get("phase") != SUSPENDED
        admitted_now = not started_here
        if admitted_now:
            # The folder first, then a training slot: a request that cannot write its output
            # must not hold (or wait in line for) a slot.
            in_use = self.claim_output(body, layout)
            if in_use:
                return self._wait(body, old, status_of(empty_job, JobFiles(), output_in_use=in_use), events)
            decision = self._admit(key, generation, entries)
            if not decision.admit:
                return self._wait(body, old, status_of(empty_job, JobFiles(), queue=decision), events)
            if old_job.get("name") == name:  # only a job this status names can be suspended in place
                self.executor.resume(body, name)
            self.clear_previous_run(layout, publishes=hub is not None)
            if self.settings.max_concurrent > 0:
                # Reserve the slot in status first (a restarted operator counts it), then start.
                # With no limit there is no slot: the one status patch after the job is made
                # names it, and a restart before that adopts the job by its name.
                desired = status_of(empty_job, JobFiles())
                self._apply(body, old, desired.status)
                events += desired.events
                old = desired.status
                body = {**body, "status": old}

        files = None
        if admitted_now:
            # No job of this generation was started here and the last run's result and
            # progress are gone: nothing to observe or read first (submit adopts a job that
            # exists), and a job created just now has written nothing yet.
            job = self._submit(body, job_spec, name, workers, events)
            files = JobFiles()
        else:
            job = self.executor.observe(body, name)
            if not job.exists and not job.message:
                files = self.read_files(layout, spec, job)
                result = files.result
                if result is not None and result.finished:
                    # The job is gone (TTL, a restarted Ray cluster) but finished: its result stands.
                    if result.succeeded:
                        job = dataclasses.replace(job, state=JOB_SUCCEEDED, reason=None)
                    else:
                        job = dataclasses.replace(job, state=JOB_FAILED, reason=Reason.JOB_FAILED)
                else:
                    job = self._submit(body, job_spec, name, workers, events)
                    files = None
        if files is None or job.finished:
            files = self.read_files(layout, spec, job)

        desired = status_of(job, files, overdue=self._overdue(body, old, spec, job, workers))
        if desired.status["phase"] == FAILED:
            retried = self._retry_after_failure(body, spec, job, desired.status, events)
            if retried is not None:
                return retried
        if desired.need_card and self.storage is not None:
            try:
                card = operator_card(spec, files, layout)
                self.storage.write_text(layout.card, card, content_type="text/markdown; charset=utf-8")
                events.append(("Normal", Reason.CARD_WRITTEN, f"the job left no model card: wrote {layout.card}"))
                files = dataclasses.replace(files, card_present=True)
                desired = status_of(job, files)
            except StorageError as exc:
                events.append(("Warning", Reason.CARD_FAILED, f"cannot write the model card: {exc}"))
        if hub is not None and self._publish_due(job, desired, files, hub):
            files = dataclasses.replace(files, publication=self.publish_again(body, spec, layout, files))
            desired = status_of(job, files)
        patch = self._apply(body, old, desired.status)
        phase = desired.status["phase"]
        if phase in TERMINAL:
            self.release(key)
            if patch and "phase" in patch:
                start = parse_time(desired.status.get("startTime"))
                end = parse_time(desired.status.get("completionTime"))
                if start and end:
                    metrics.JOB_SECONDS.labels(phase).observe(max(0.0, (end - start).total_seconds()))
                if phase == FAILED:
                    metrics.FAILURES.labels(desired.status.get("reason") or "Unknown").inc()
        return Outcome(patch, announced(events + desired.events), phase)

    def _submit(self, body: dict, job_spec, name: str, workers: str, events: list) -> JobObservation:
        """Start the generation's job (or adopt the one that exists); a created job gets its event."""
        job = self.executor.submit(body, job_spec)
        if job.exists:
            kuberay = self.executor.kind == "kuberay"
            metrics.JOBS_STARTED.labels(self.executor.kind).inc()
            events.append(
                ("Normal", Reason.JOB_CREATED, f"created {'RayJob' if kuberay else 'Ray job'} {name}: {workers}")
            )
        return job

    def report_failure(self, body: dict, failure: Failure) -> None:
        """Say in the request's status why its reconciles fail (failures.failure_status)."""
        with self.key_lock(request_key(body)):
            body = self.with_latest_status(body)
            if body["metadata"].get("deletionTimestamp"):
                return
            old = body.get("status") or {}
            generation = int(body["metadata"].get("generation") or 1)
            self._apply(body, old, failure_status(old, failure, generation, now_iso()))

    # ----------------------------------------------------------------- publishing

    def _publish_due(self, job: JobObservation, desired, files: JobFiles, hub) -> bool:
        """A model this generation's job trained that it did not publish (or whose publish
        failed a while ago); never the model of a failed run."""
        status = desired.status
        waiting = status["reason"] == Reason.PUBLISH_PENDING or awaiting_publish_retry(status)
        if self.storage is None or not waiting or job.state != JOB_SUCCEEDED or not files.model_present:
            return False
        return wants_publish_retry(files.publication, hub.repo, datetime.datetime.now(datetime.UTC))

    def publish_again(self, body: dict, spec: api.BotSpec, layout: Layout, files: JobFiles) -> Publication:
        """Publish the trained model from the object store, as the job would have (no
        training); publish.json records the outcome, never the token."""
        hub = hub_repo(spec)
        ref = spec.publish.hugging_face.token_secret_ref
        namespace = body["metadata"]["namespace"]
        try:
            token = self.read_secret(namespace, ref.name, ref.key) if self.read_secret else None
            missing = f"no Hub token: Secret {namespace}/{ref.name} has no key {ref.key!r}"
        except Exception as exc:  # noqa: BLE001 - said in the status, tried again later
            token, missing = None, f"cannot read the Hub token's Secret {namespace}/{ref.name}: {one_line(exc, 200)}"
        if not token:
            publication = Publication(
                FAILED_PUBLISH, hub.repo, hub.url, reason=Reason.PUBLISH_FAILED, error=missing, attempted_at=now_iso()
            )
        else:
            tracking = files.result.tracking_run_url if files.result else None
            publication = publish_bot(
                spec, self.storage, hub, token, allow_parrot=spec.publish.allow_parrot, tracking_run_url=tracking
            )
        try:
            self.storage.write_json(layout.publication, publication.to_dict())
        except StorageError as exc:  # the status still says what happened; tried again later
            log.warning("cannot record the publish of %s: %s", folder(layout.model_uri), exc)
        return publication

    # ----------------------------------------------------------------- deletion

    def delete_artifacts(self, body: dict) -> int:
        """Remove the request's outputs (deletePolicy: Delete), unless the folder belongs to
        another BotRequest (this one waited in OutputInUse): then nothing is removed."""
        spec = api.parse_spec(body.get("spec"))
        if self.storage is None:
            raise StorageError("the operator has no object store configured: cannot delete artifacts")
        owner = self._owner(Layout(spec.model_uri))
        if owner is not None and owner.uid != body["metadata"].get("uid"):
            log.info(
                "%s: not deleting %s, which belongs to BotRequest %s/%s",
                request_key(body),
                folder(spec.model_uri),
                owner.namespace,
                owner.name,
            )
            return 0
        return self.storage.delete_prefix(spec.model_uri)


__all__ = ["Reconciler", "Outcome", "operator_card"]
