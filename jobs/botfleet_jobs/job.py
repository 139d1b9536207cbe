"""The training job's entrypoint: one BotRequest from posts to a published bot.

    python -m botfleet_jobs.job        # reads the BotRequest (JSON) from $BOTFLEET_REQUEST

This is what a KubeRay RayJob or a Ray job submission runs, and what `botfleet run` runs
locally. Stages: the data stage (reused when a complete dataset for the same settings
exists), training (resumes from the latest checkpoint), then the model card. Whatever
happens, ``<model>/result.json`` ends up saying succeeded or failed and why, so the
operator can report it; checkpoints are never deleted on failure.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from botfleet import api
from botfleet.artifacts import SUCCEEDED, Result, TrainingHistory, TrainingRecord
from botfleet.card import CardLinks, render_card
from botfleet.errors import one_line
from botfleet.layout import Layout, folder
from botfleet.reasons import STAGE_FAILURES, Reason
from botfleet.storage import JOB_OUTAGE_WAIT_S, NotFound, S3Config, Storage
from botfleet_jobs.base_model import BaseModelError, make_preset_gpt2
from botfleet_jobs.data_stage import prepare
from botfleet_jobs.dataset import NotEnoughText
from botfleet_jobs.loss_curve import render_loss_curve_png
from botfleet_jobs.posts import SourceError
from botfleet_jobs.thumbnail import render_predictions_png
from botfleet_jobs.tracking import Tracker
from botfleet_jobs.train_driver import TrainOptions, local_worker_defaults, train
from botfleet_jobs.train_errors import TrainingError


class ProgressDisplay:
    """Receives progress.json as the trainer's poller reads it: a progress bar and the tracker.

    Workers write that file (the one channel that also reaches the operator), so the
    local display shows exactly what `kubectl get` shows.
    """

    def __init__(self, tracker: Tracker, show: bool):
        self.tracker = tracker
        self.bar = tqdm(total=None, desc="training", unit="step", file=sys.stderr, disable=not show)

    def __call__(self, progress: dict) -> None:
        step = int(progress.get("step") or 0)
        self.bar.total = progress.get("total_steps")
        self.bar.n = step
        self.bar.set_postfix(loss=progress.get("loss"), eta=f"{progress.get('eta_seconds') or 0:.0f}s", refresh=False)
        self.bar.refresh()
        self.tracker.log_metrics(
            step, {k: progress[k] for k in ("loss", "tokens_per_second", "epoch") if progress.get(k) is not None}
        )

    def close(self) -> None:
        self.bar.close()


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


def publish_loss_curve(spec: api.BotSpec, storage: Storage, workdir: Path) -> str | None:
    """model/loss.png from model/history.json; its link relative to the card (None: no history)."""
    layout = Layout(spec.model_uri)
    try:
        history = TrainingHistory.from_dict(storage.read_json(layout.history))
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
    return next((reason for kind, reason in FAILURE_REASONS if isinstance(error, kind)), STAGE_FAILURES[stage])


def run_job(
    request: api.BotRequest, storage: Storage, *, ray_address: str | None = None, show_progress: bool = True
) -> dict:
    """Run every stage; return result.json's content (raises after recording a failure)."""
    # Once, here: training, tracking and the card all get the worker shape that ran.
    spec = local_worker_defaults().resolve(request.spec)
    layout = Layout(spec.model_uri)
    storage.delete(layout.result)  # a rerun starts without the last run's verdict
    stage = "data"
    tracker = None
    with tempfile.TemporaryDirectory(prefix="botfleet-job-") as tmp:
        workdir = Path(tmp)
        try:
            stats = prepare(spec, storage, show_progress=show_progress)
            tracker = Tracker.from_env(spec.tracking.wandb, workdir / "tracking", spec.model_id)
            log_preprocess(tracker, storage, spec, stats, workdir)
            stage = "training"
            tracker.start_training(asdict(spec.training))
            display = ProgressDisplay(tracker, show_progress)
            try:
                options = TrainOptions(ray_address=ray_address, max_failures=spec.training.max_failures)
                trained = train(spec, storage.config, options, on_progress=display)
            finally:
                display.close()
            stage = "publishing"
            model_dir = workdir / "model"
            if tracker.enabled:  # it logs the model as an artifact
                storage.download_dir(layout.model, model_dir)
            tracking = tracker.finish_training(model_dir, trained.samples)
            tracking_files = None
            if tracking.get("run_dir"):  # the local W&B files: offline runs are synced from these
                storage.upload_dir(workdir / "tracking", layout.tracking)
                tracking_files = folder(layout.tracking)
            card = publish_card(spec, storage, stats, trained.training, trained.samples, tracking, workdir)
        except BaseException as error:
            try:
                if tracker is not None:
                    tracker.fail()
            finally:  # a tracker that fails too must not hide the job's own error
                failed = Result.failed(stage, one_line(error), failure_reason(error, stage))
                storage.write_json(layout.result, failed.to_dict())
            raise
    result = Result(
        SUCCEEDED,
        model=folder(layout.model),
        card=card,
        tracking_run_url=tracking.get("run_url"),
        tracking_files=tracking_files,
        metrics=TrainingRecord.from_dict(trained.training).metrics(),
    ).to_dict()
    storage.write_json(layout.result, result)
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
    try:
        result = run_job(request, storage, ray_address=os.environ.get("RAY_ADDRESS"), show_progress=sys.stderr.isatty())
    except Exception as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
