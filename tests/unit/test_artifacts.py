"""The files the job writes and the operator reads: their types, and result.json's reason."""

import pytest

from botfleet.artifacts import SUCCEEDED, History, Owner, Progress, Publication, Result, Stats, TrainingRecord
from botfleet.reasons import Reason
from botfleet.storage import NotFound, StorageError
from botfleet_jobs.base_model import BaseModelError
from botfleet_jobs.dataset import NotEnoughText
from botfleet_jobs.job import failure_reason
from botfleet_jobs.posts import SourceError
from botfleet_jobs.train_errors import TrainingError

STATS = {
    "model_id": "alice",
    "handles": {
        "alice": {
            "downloaded": 100,
            "retweets": 10,
            "short": 5,
            "kept": 85,
            "characters": 4321,
            "display_name": "Alice",
            "source": "archive",
        }
    },
    "epochs": 4,
    "seed": 42,
    "train_fraction": 0.9,
    "train_characters": 4000,
    "valid_characters": 400,
    "warnings": ["@alice: only 4,321 characters of kept text (under 40,000); the bot may be weak"],
    "fingerprint": "0123456789abcdef",
    "seconds": 1.25,
    "botfleet_version": "0.1.0",
    "inputs": {"alice": "object etag 9b2cf535f27731c974343645a3985328"},
    "new_posts": 12,
}
PROGRESS = {
    "status": "training",
    "step": 30,
    "total_steps": 120,
    "epoch": 1.0,
    "loss": 3.2,
    "learning_rate": 1e-4,
    "tokens_per_second": 250.5,
    "eta_seconds": 90.0,
    "model_id": "alice",
    "run_name": "alice-1234",
    "epochs": 4,
    "world_size": 2,
    "block_size": 256,
    "resumed_from_step": 0,
    "last_checkpoint_step": None,
    "started_at": "2025-01-01T00:00:00Z",
    "updated_at": "2025-01-01T00:01:00Z",
}
TRAINING = {
    "model_id": "alice",
    "base_model": "gpt2",
    "hyperparameters": {"learning_rate": 1e-4},
    "deepspeed": {"zero": 2},
    "plan": {"total_steps": 120},
    "run_name": "alice-1234",
    "fingerprint": "f",
    "steps": 120,
    "total_steps": 120,
    "resumed_from_step": 0,
    "tokens": 30000,
    "valid_loss_before": 5.0,
    "valid_loss_after": 3.0,
    "perplexity_before": 148.4,
    "perplexity_after": 20.1,
    "train_loss": 2.9,
    "final_loss": 2.8,
    "train_seconds": 60.0,
    "duration_seconds": 90.0,
    "started_at": "2025-01-01T00:00:00Z",
    "finished_at": "2025-01-01T00:02:00Z",
    "startup_seconds": {"model_load": 2.0},
    "parrot": {"samples": 32, "copying": 1, "run_tokens": 8, "longest_run": 9, "threshold": 0.25, "share": 0.03125},
}


def test_every_file_reads_back_as_written():
    assert Stats.from_dict(STATS).to_dict() == STATS
    assert Progress.from_dict(PROGRESS).to_dict() == {k: v for k, v in PROGRESS.items() if v is not None}
    assert TrainingRecord.from_dict(TRAINING).to_dict() == TRAINING
    owner = {"namespace": "ns", "name": "alice", "uid": "0123"}
    assert Owner.from_dict(owner).to_dict() == owner
    failed = {"status": "failed", "stage": "data", "error": "@alice: not enough posts", "reason": "NotEnoughPosts"}
    assert Result.from_dict(failed).to_dict() == failed
    succeeded = {
        "status": "succeeded",
        "model": "s3://bots/alice/model/",
        "card": "s3://bots/alice/model/README.md",
        "tracking_run_url": None,
        "tracking_files": None,
        "metrics": {"train_loss": 2.9},
        "version": 2,
        "new_posts": 14,
    }
    assert Result.from_dict(succeeded).to_dict() == succeeded
    published = {"status": "published", "repo": "org/alice", "url": "https://hub/org/alice", "commit": "c0ffee"}
    assert Publication.from_dict(published).to_dict() == published
    history = {
        "versions": [
            {
                "version": 1,
                "finished_at": "2025-01-01T00:02:00Z",
                "posts": 85,
                "new_posts": None,
                "perplexity": 20.1,
                "run_name": "alice-1234",
                "archived": "s3://bots/alice/versions/v1/",
            }
        ]
    }
    assert History.from_dict(history).to_dict() == history
    assert History.from_dict({"versions": [{"version": "x"}, "junk"]}).versions == ()


def test_stats_give_the_counts_and_total_kept():
    stats = Stats.from_dict(STATS)
    assert stats.handles["alice"].counts() == {"downloaded": 100, "retweets": 10, "short": 5, "kept": 85}
    assert stats.kept == 85 and stats.fingerprint == "0123456789abcdef"


def test_older_and_partial_files_still_read():
    # result.json of a job older than reasons: no "reason"
    old = Result.from_dict({"status": "failed", "stage": "training", "error": "boom"})
    assert (old.reason, old.stage, old.finished, old.succeeded) == (None, "training", True, False)
    assert Result.from_dict({"status": "succeeded", "tracking_run_url": None}).succeeded
    assert not Result.from_dict({}).finished
    stats = Stats.from_dict({"handles": {"alice": {"kept": 3}}, "unknown": 1})
    assert stats.handles["alice"].counts() == {"downloaded": 0, "retweets": 0, "short": 0, "kept": 3}
    assert (stats.fingerprint, stats.warnings, stats.kept) == (None, (), 3)
    assert Stats.from_dict({"handles": ["not", "a", "mapping"]}).handles == {}
    assert Stats.from_dict(None) == Stats()
    # numbers as their writer gave them; what is no number is not shown
    progress = Progress.from_dict({"step": "30", "total_steps": 120.0, "loss": "n/a", "eta_seconds": 90})
    assert (progress.step, progress.total_steps, progress.loss, progress.eta_seconds) == (30, 120, None, 90.0)
    record = TrainingRecord.from_dict({"valid_loss_after": 3.0})
    assert record.metrics() == {
        "valid_loss_before": None,
        "valid_loss_after": 3.0,
        "perplexity_before": None,
        "perplexity_after": None,
        "train_loss": None,
    }
    assert Owner.from_dict({"name": "alice"}) == Owner(name="alice")


def test_result_constructors():
    failed = Result.failed("data", "no posts", Reason.SOURCE_FAILED)
    assert failed.to_dict() == {"status": "failed", "stage": "data", "error": "no posts", "reason": "SourceFailed"}
    assert Result(SUCCEEDED, metrics={"train_loss": 1.0}).to_dict()["metrics"] == {"train_loss": 1.0}


@pytest.mark.parametrize(
    "error, stage, reason",
    [
        (NotEnoughText("not enough posts to train on"), "data", "NotEnoughPosts"),
        (SourceError("@nobody (mastodon ...): account not found (HTTP 404)"), "data", "SourceFailed"),
        (BaseModelError("base model s3://m/x: not found"), "training", "TrainingFailed"),
        (TrainingError("dataset unreadable"), "training", "TrainingFailed"),
        (NotFound("s3://bots/alice/data/train.txt: not found"), "data", "DataFailed"),
        (StorageError("s3://bots: access denied"), "training", "TrainingFailed"),
        (StorageError("s3://bots: access denied"), "publishing", "PublishingFailed"),
        (RuntimeError("anything else"), "publishing", "PublishingFailed"),
        (KeyboardInterrupt(), "data", "DataFailed"),
    ],
)
def test_the_job_names_the_reason_from_the_exception(error, stage, reason):
    assert failure_reason(error, stage) == reason
