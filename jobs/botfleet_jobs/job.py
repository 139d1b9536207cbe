"""The training job's entrypoint: one BotRequest from posts to a published bot.

    python -m botfleet_jobs.job        # reads the BotRequest (JSON) from $BOTFLEET_REQUEST

This is what a KubeRay RayJob or a Ray job submission runs, and what `botfleet run` runs
locally. Stages: the data stage (reused when a complete dataset for the same settings
and inputs exists, or while its training is unfinished), training (resumes from the
latest checkpoint), then the model card. Whatever happens, ``<model>/result.json`` ends
up saying succeeded or failed and why, so the operator can report it; checkpoints are never deleted on failure.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from botfleet import api
from botfleet.artifacts import SUCCEEDED, Result, TrainingHistory, TrainingRecord
from botfleet.card import CardLinks, render_card
from botfleet.errors import one_line, with_notes
from botfleet.layout import Layout, folder
from botfleet.reasons import STAGE_FAILURES, Reason
from botfleet.storage import JOB_OUTAGE_WAIT_S, NotFound, S3Config, Storage
from botfleet.timestamps import now_iso
from botfleet_jobs.base_model import BaseModelError, make_preset_gpt2
from botfleet_jobs.data_stage import format_table
from botfleet_jobs.dataset import NotEnoughText
from botfleet_jobs.job_log import JobLog
from botfleet_jobs.loss_curve import render_loss_curve_png
from botfleet_jobs.posts import SourceError
from botfleet_jobs.publish import publish_if_asked, record_parrot_check
from botfleet_jobs.refresh import gather_data, record_nothing_new, starting_point
from botfleet_jobs.thumbnail import render_predictions_png
from botfleet_jobs.tracking import Tracker
from botfleet_jobs.train_driver import TrainOptions, local_worker_defaults, train
from botfleet_jobs.train_errors import TrainingError
from botfleet_jobs.versions import archive_latest, record_version


class ProgressDisplay:
    """Receives progress.json as the trainer's poller reads it: a progress bar and the tracker.

    Workers write that file (the one channel that also reaches the operator), so the
    local display shows exactly what `kubectl get` shows: the step, the loss and the
    trainer's own ETA (not tqdm's, which would count Ray's start-up as training).
    """

    BAR = "training: {percentage:3.0f}%|{bar:24}| {n_fmt}/{total_fmt} steps{postfix}"

    def __init__(self, tracker: Tracker, show: bool, console: TextIO = sys.stderr):
        self.tracker = tracker
        self.show = show
        self.console = console
        self.bar = None  # made once the trainer knows its total steps
        if show:
            print("training: starting Ray and the workers", file=console)

    def __call__(self, progress: dict) -> None:
        step = int(progress.get("step") or 0)
        if self.show and progress.get("total_steps"):
            if self.bar is None:
                self.bar = tqdm(total=progress["total_steps"], file=self.console, bar_format=self.BAR)
            self.bar.n = step
            self.bar.set_postfix_str(progress_postfix(progress), refresh=False)
            self.bar.refresh()
        self.tracker.log_metrics(
            step, {k: progress[k] for k in ("loss", "tokens_per_second", "epoch") if progress.get(k) is not None}
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def progress_postfix(progress: dict) -> str:
    """ "loss 3.21, ETA 4:05" from progress.json (what it does not know yet is left out)."""
    parts = []
    if isinstance(progress.get("loss"), (int, float)):
        parts.append(f"loss {progress['loss']:.3g}")
    if isinstance(progress.get("eta_seconds"), (int, float)):
        parts.append(f"ETA {tqdm.format_interval(progress['eta_seconds'])}")
    return ", ".join(parts)


def publish_random_base_model(storage: Storage, preset: str, uri: str) -> str:
    """Save a randomly initialised GPT-2 preset (real tokenizer) into the object store."""
    with tempfile.TemporaryDirectory(prefix="botfleet-base-") as folder:
        make_preset_gpt2(folder, preset)
        storage.upload_dir(folder, uri)
    return uri


def publish_card(
    spec: api.BotSpec, storage: Storage, stats: dict, training: dict, samples: list, tracking: dict, workdir: Path
) -> str:
    layout = Layout(spec.model_uri)
    png = workdir / "predictions.png"
    render_predictions_png(samples, f"@{spec.model_id} bot", png)
    storage.upload_file(png, layout.thumbnail, content_type="image/png")
    links = CardLinks(
        dataset_uri=folder(layout.data),
        checkpoints_uri=folder(layout.checkpoints),
        model_uri=folder(layout.model),
        thumbnail_url="predictions.png",  # next to the card, wherever the folder is copied
        loss_curve_url=publish_loss_curve(spec, storage, workdir),
        model_for_pipeline=spec.model_id,
        tracking_run_url=tracking.get("run_url"),
    )
    storage.write_text(layout.card, render_card(spec, stats, training, links), content_type="text/markdown")
    return layout.card


class JobStopped(BaseException):
    """The job was told to stop (SIGTERM: a suspend, a deletion, its pod going away). Not an
    Exception, so that no stage's error handling mistakes it for that stage's failure."""


STOPPED = "the job was stopped (a signal) before it finished"


def stop_on_sigterm(signum, frame) -> None:
    raise JobStopped(STOPPED)


def was_stopped(error: BaseException) -> bool:
    """Whether ``error`` is the job being stopped: by this module's SIGTERM handler, or as
    Ray does it in a driver (ray.init installs a SIGTERM handler that calls sys.exit, and a
    signal inside ray.get surfaces as a SystemExit whose code is not the signal's)."""
    return isinstance(error, (JobStopped, SystemExit))


def publish_loss_curve(spec: api.BotSpec, storage: Storage, workdir: Path) -> str | None:
    """model/loss.png from model/loss_history.json; its link relative to the card (None: no history)."""
    layout = Layout(spec.model_uri)
    try:
        history = TrainingHistory.from_dict(storage.read_json(layout.loss_history))
    except NotFound:
        return None
    png = workdir / "loss.png"
    render_loss_curve_png(history, f"@{spec.model_id} bot: loss by step", png)
    storage.upload_file(png, layout.loss_curve, content_type="image/png")
    return "loss.png"


# Failures whose exception says what went wrong; any other failure is its stage's.
FAILURE_REASONS = (
    (NotEnoughText, Reason.NOT_ENOUGH_POSTS),
    (SourceError, Reason.SOURCE_FAILED),
    (BaseModelError, Reason.TRAINING_FAILED),
    (TrainingError, Reason.TRAINING_FAILED),
)


def failure_reason(error: BaseException, stage: str) -> Reason:
    """The reason result.json gives (and the status shows) for ``error``, raised in ``stage``."""
    if was_stopped(error):
        return Reason.JOB_STOPPED
    return next((reason for kind, reason in FAILURE_REASONS if isinstance(error, kind)), STAGE_FAILURES[stage])


def run_job(
    request: api.BotRequest,
    storage: Storage,
    *,
    ray_address: str | None = None,
    show_progress: bool = True,
    refresh: bool = False,
) -> dict:
    """Run every stage; return result.json's content (raises after recording a failure).
    ``refresh``: gather only what is new (:mod:`botfleet_jobs.refresh`); nothing new, no training.

    Everything the job and Ray write goes to its full log (``logs/job-<time>.log``, see
    :class:`JobLog`); stderr gets botfleet's own lines: the data counts, the training bar
    (with ``show_progress``) and, on failure, the error (its note says where the log is)."""
    # Once, here: training, tracking and the card all get the worker shape that ran.
    spec = local_worker_defaults().resolve(request.spec)
    layout = Layout(spec.model_uri)
    storage.delete(layout.result)  # a rerun starts without the last run's verdict
    storage.delete(layout.publication)
    storage.write_json(layout.request, api.spec_document(spec))  # what a later publish renders the card from
    log_uri = layout.job_log(now_iso())
    try:
        with JobLog(storage, log_uri) as job_log:
            print(f"botfleet job {spec.model_id}: full log at {log_uri}", file=job_log.console)
            return run_stages(spec, storage, ray_address, job_log.console, show_progress, log_uri, refresh)
    except BaseException as error:
        error.add_note(f"full log: {log_uri}")
        raise


def run_stages(
    spec: api.BotSpec,
    storage: Storage,
    ray_address: str | None,
    console: TextIO,
    show_progress: bool,
    log_uri: str,
    refresh: bool,
) -> dict:
    layout = Layout(spec.model_uri)
    stage = "data"
    tracker = None
    with tempfile.TemporaryDirectory(prefix="botfleet-job-") as tmp:
        workdir = Path(tmp)
        try:
            print(f"data: gathering the posts of {', '.join('@' + h.name for h in spec.handles)}", file=console)
            gathered = gather_data(spec, storage, refresh=refresh, show_progress=False)  # bars would clutter the log
            stats = gathered.stats
            print(format_table(stats), end="", file=console)
            print(f"dataset: {folder(layout.data)}", file=console)
            if refresh and gathered.new_posts == 0 and storage.exists(layout.training):
                return record_nothing_new(storage, layout)
            tracker = Tracker.from_env(spec.tracking.wandb, workdir / "tracking", spec.model_id)
            log_preprocess(tracker, storage, spec, stats, workdir)
            stage = "training"
            history = archive_latest(storage, layout)  # before the training replaces model/
            spec = starting_point(spec, layout, history) if refresh else spec
            tracker.start_training(asdict(spec.training))
            display = ProgressDisplay(tracker, show_progress, console)
            try:
                options = TrainOptions(ray_address=ray_address, max_failures=spec.training.max_failures)
                trained = train(spec, storage.config, options, on_progress=display)
            finally:
                display.close()
            stage = "publishing"
            model_dir = workdir / "model"
            storage.download_dir(layout.model, model_dir)  # the parrot check and the tracker read it
            trained.training = record_parrot_check(spec, storage, model_dir)
            tracking = tracker.finish_training(model_dir, trained.samples)
            tracking_files = None
            if tracking.get("run_dir"):  # the local W&B files: offline runs are synced from these
                storage.upload_dir(workdir / "tracking", layout.tracking)
                tracking_files = folder(layout.tracking)
            card = publish_card(spec, storage, stats, trained.training, trained.samples, tracking, workdir)
            version = record_version(storage, layout, history, trained.training, stats, spec.output.keep_versions)
            new_posts = gathered.new_posts if refresh else None
            publication = publish_if_asked(spec, storage, tracking.get("run_url"))
        except BaseException as error:
            try:
                if tracker is not None:
                    tracker.fail()
            finally:  # a tracker that fails too must not hide the job's own error
                message = STOPPED if was_stopped(error) else one_line(error)
                failed = Result.failed(stage, message, failure_reason(error, stage), log=log_uri)
                storage.write_json(layout.result, failed.to_dict())
            raise
    result = Result(
        SUCCEEDED,
        model=folder(layout.model),
        card=card,
        tracking_run_url=tracking.get("run_url"),
        tracking_files=tracking_files,
        metrics=TrainingRecord.from_dict(trained.training).metrics(),
        version=version.version,
        new_posts=new_posts,
        log=log_uri,
    ).to_dict()
    storage.write_json(layout.result, result)
    if publication is not None:  # for `botfleet run` to print (publish.json has it)
        result = {**result, "publication": publication.to_dict()}
    return result


def log_preprocess(tracker: Tracker, storage: Storage, spec: api.BotSpec, stats: dict, workdir: Path) -> None:
    if not tracker.enabled:
        return
    data_dir = workdir / "data"
    storage.download_dir(Layout(spec.model_uri).data, data_dir)
    raw = {handle: data_dir / "raw" / f"{handle}.jsonl" for handle in stats["handles"]}
    tracker.log_preprocess(raw, data_dir / "train.txt", data_dir / "valid.txt", stats)


def main() -> int:
    try:
        request = api.parse_request(json.loads(os.environ["BOTFLEET_REQUEST"]))
    except KeyError:
        print("error: set BOTFLEET_REQUEST to the BotRequest as JSON", file=sys.stderr)
        return 2
    except (ValueError, api.ValidationError) as error:
        print(f"error: BOTFLEET_REQUEST: {one_line(error)}", file=sys.stderr)
        return 2
    storage = Storage(S3Config.from_env(), outage_wait_s=JOB_OUTAGE_WAIT_S)
    # Stopped, the job still records why and copies its full log (Ray waits a few seconds
    # before it kills a stopped job's driver).
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        result = run_job(
            request,
            storage,
            ray_address=os.environ.get("RAY_ADDRESS"),
            show_progress=sys.stderr.isatty(),
            refresh=os.environ.get("BOTFLEET_REFRESH") == "1",  # set by the operator for a refresh's job
        )
    except (Exception, JobStopped) as error:
        print(f"error: {with_notes(error)}", file=sys.stderr)
        return 143 if isinstance(error, JobStopped) else 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
