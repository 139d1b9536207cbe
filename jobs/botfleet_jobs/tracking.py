"""Weights & Biases tracking, shaped like huggingtweets'.

The reference logged, per bot: a preprocess run with a raw-dataset artifact and a
train-dataset artifact; a train run that uses those and a pretrained-model artifact,
logs the metrics, a finetuned-model artifact and a table of sample predictions with
columns Input / Prediction. :class:`Tracker` does the same in three modes:

* ``online``: runs stream to W&B (needs an API key; the operator injects WANDB_API_KEY
  from the Secret named in ``spec.tracking.wandb.apiKeySecretRef``). This path cannot be
  exercised here (no network); it is the same code as offline plus lineage and URLs.
* ``offline``: runs are written under the output folder (``WANDB_DIR``), to be uploaded
  later with ``wandb sync <run_dir>``. W&B refuses ``use_artifact`` offline, so the train
  run records the names of its inputs in its config instead of as lineage.
* ``disabled``: nothing; wandb is not even imported.

An empty ``mode`` means online when there is a key, offline otherwise.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from botfleet.api import WandbSpec
from botfleet.card import base_model_url

PREDICTION_COLUMNS = ["Input", "Prediction"]


class TrackingError(RuntimeError):
    """Tracking cannot run as asked (e.g. online without an API key)."""


def resolve_mode(spec: WandbSpec, api_key: str | None) -> str:
    if spec.mode is None:
        return "online" if api_key else "offline"
    if spec.mode == "online" and not api_key:
        raise TrackingError(
            "tracking.wandb.mode is online but there is no W&B API key "
            "(set tracking.wandb.apiKeySecretRef, or use mode offline)"
        )
    return spec.mode


def wandb_env(out_dir: str | os.PathLike) -> dict[str, str]:
    """Variables that keep every file wandb writes (runs, staged artifact files, its cache
    and logs) inside the job's output folder instead of the home directory, so the offline
    runs travel with the outputs."""
    root = Path(out_dir).resolve()
    return {
        "WANDB_DIR": str(root),
        "WANDB_DATA_DIR": str(root / "wandb-data"),
        "WANDB_CACHE_DIR": str(root / "wandb-cache"),
    }


def artifact_name(text: str) -> str:
    """W&B artifact names allow letters, digits, '-', '_' and '.'; hub ids ("org/name") and
    URIs ("s3://b/k") become dashed."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "model"


class Tracker:
    """Tracking for one bot (``model_id``), writing under ``out_dir``."""

    def __init__(
        self,
        spec: WandbSpec,
        out_dir: str | os.PathLike,
        model_id: str,
        api_key: str | None = None,
    ) -> None:
        self.spec = spec
        self.mode = resolve_mode(spec, api_key)
        self.out_dir = Path(out_dir)
        self.model_id = model_id
        self.api_key = api_key
        self.run = None
        self.dataset_artifacts: list[Any] = []
        if self.enabled:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            # Process-wide on purpose: wandb reads these both at init and when it stages
            # artifact files, and a job process does nothing else.
            os.environ.update(wandb_env(self.out_dir))

    @classmethod
    def from_env(
        cls, spec: WandbSpec, out_dir: str | os.PathLike, model_id: str, env: Mapping[str, str] | None = None
    ) -> Tracker:
        env = os.environ if env is None else env
        return cls(spec, out_dir, model_id, api_key=env.get("WANDB_API_KEY") or None)

    @property
    def enabled(self) -> bool:
        return self.mode != "disabled"

    @property
    def online(self) -> bool:
        return self.mode == "online"

    # ----------------------------------------------------------------------- names

    @property
    def raw_name(self) -> str:
        return artifact_name(f"raw-dataset-{self.model_id}")

    @property
    def train_name(self) -> str:
        return artifact_name(f"train-dataset-{self.model_id}")

    @property
    def model_name(self) -> str:
        return artifact_name(self.model_id)

    # ----------------------------------------------------------------------- wandb

    def _wandb(self):
        import wandb  # here, not at module level: disabled mode must not import it

        return wandb

    def _init(self, job_type: str, config: dict):
        wandb = self._wandb()
        settings = wandb.Settings(api_key=self.api_key) if self.online else wandb.Settings()
        return wandb.init(
            mode=self.mode,
            project=self.spec.project,
            entity=self.spec.entity or None,
            group=self.model_id,
            name=f"{self.model_id}-{job_type}",
            job_type=job_type,
            config=config,
            dir=str(self.out_dir),
            settings=settings,
        )

    def _artifact(self, name: str, kind: str, metadata: dict | None = None):
        return self._wandb().Artifact(name, type=kind, metadata=metadata or {})

    def _file_policy(self) -> str:
        # Offline, files must be copied into the run's staging area ("mutable") so the run
        # folder can be synced after the job's scratch space is gone. Online they are
        # uploaded before finish() returns, so a big model need not be copied first.
        return "immutable" if self.online else "mutable"

    def run_info(self, run) -> dict:
        if run is None:
            return {"mode": self.mode, "run_url": None, "run_dir": None, "project": self.spec.project, "run_id": None}
        return {
            "mode": self.mode,
            "run_url": run.url if self.online else None,
            "run_dir": str(Path(run.dir).parent),  # run.dir is the run folder's files/
            "project": self.spec.project,
            "run_id": run.id,
        }

    # ----------------------------------------------------------------------- stages

    def log_preprocess(
        self,
        raw_files: Mapping[str, str | os.PathLike],
        train_path: str | os.PathLike,
        valid_path: str | os.PathLike,
        stats: dict,
    ) -> dict:
        """A preprocess run: the raw posts of each handle, then the training text."""
        if not self.enabled:
            return self.run_info(None)
        run = self._init("preprocess", {"model_id": self.model_id, "handles": list(raw_files)})
        raw = self._artifact(self.raw_name, "raw-dataset", {"handles": stats.get("handles", {})})
        for handle, path in raw_files.items():
            raw.add_file(str(path), name=f"{handle}/{Path(path).name}", policy=self._file_policy())
        train = self._artifact(self.train_name, "train-dataset", {k: v for k, v in stats.items() if k != "handles"})
        train.add_file(str(train_path), name=Path(train_path).name, policy=self._file_policy())
        train.add_file(str(valid_path), name=Path(valid_path).name, policy=self._file_policy())
        run.log_artifact(raw)
        run.log_artifact(train)
        run.summary.update(summary_counts(stats))
        if self.online:
            # The train run uses these by version: wait until W&B has committed them.
            raw.wait()
            train.wait()
        self.dataset_artifacts = [raw, train]
        info = self.run_info(run)
        run.finish()
        return info

    def start_training(self, config: dict) -> None:
        """The train run: its config, and its inputs (datasets, pretrained model)."""
        if not self.enabled:
            return
        base = str(config.get("base_model", "base-model"))
        inputs = [f"{self.raw_name}:latest", f"{self.train_name}:latest", f"{artifact_name(base)}:latest"]
        self.run = self._init("train", {**config, "input_artifacts": inputs})
        if self.online:
            self._use_inputs(base)
        # Offline: W&B refuses use_artifact ("Cannot use artifact when in offline mode"), so
        # the inputs stay as names in the config (input_artifacts) and lineage is lost.

    def _use_inputs(self, base: str) -> None:
        """Online only: link the datasets and the pretrained model as the run's inputs."""
        # Logged by this process: use those exact versions. Logged by another process (the
        # data stage ran elsewhere): the latest version of the bot's datasets.
        datasets = self.dataset_artifacts or [f"{self.raw_name}:latest", f"{self.train_name}:latest"]
        for artifact in datasets:
            self.run.use_artifact(artifact)
        if "://" in base:
            return  # an s3:// folder: referencing it needs boto3 and S3 credentials in wandb
        # A hub id: referenced by its hub page (the tracker runs in the job's driver, which
        # never holds the weights).
        pretrained = self._artifact(artifact_name(base), "pretrained-model", {"base_model": base})
        pretrained.add_reference(base_model_url(base), name=base, checksum=False)
        self.run.use_artifact(pretrained)

    def log_metrics(self, step: int, metrics: dict) -> None:
        if self.run is not None:
            self.run.log(dict(metrics), step=step)

    def finish_training(self, model_dir: str | os.PathLike, samples: list[dict]) -> dict:
        """Log the fine-tuned model and the sample predictions; end the train run."""
        if self.run is None:
            return self.run_info(None)
        model = self._artifact(self.model_name, "finetuned-model", {"model_id": self.model_id})
        model.add_dir(str(model_dir), policy=self._file_policy())
        self.run.log_artifact(model)
        table = self._wandb().Table(columns=PREDICTION_COLUMNS, data=prediction_rows(samples))
        self.run.log({"predictions": table})
        info = self.run_info(self.run)
        self._end_run()
        return info

    def fail(self) -> None:
        """End an open run as failed (the job hit an error before finish_training)."""
        if self.run is not None:
            self._end_run(exit_code=1)

    def _end_run(self, exit_code: int | None = None) -> None:
        self.run.finish(exit_code=exit_code)
        self.run = None
        # finish() only tells W&B's service process that the run is over; the service
        # writes the rest of the run's .wandb file (and, online, uploads) after that.
        # teardown() waits for the service to exit, so the run folder is complete before
        # the job copies it to the store. The next wandb.init starts a new service.
        self._wandb().teardown()


def prediction_rows(samples: list[dict]) -> list[list[str]]:
    return [[sample.get("prompt", ""), sample.get("prediction", "")] for sample in samples]


def summary_counts(stats: dict) -> dict:
    """Per-handle card counts as flat summary keys (e.g. "dril/kept")."""
    return {
        f"{handle}/{key}": value
        for handle, counts in stats.get("handles", {}).items()
        for key, value in counts.items()
        if isinstance(value, (int, float))
    }
