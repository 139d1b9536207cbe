"""The trainer's old import path, kept for one release (it goes in the next one): the
trainer is now :mod:`botfleet_jobs.train_driver` (``train``, ``TrainOptions``) and
:mod:`botfleet_jobs.train_worker`, with :mod:`botfleet_jobs.train_errors`."""

from __future__ import annotations

from botfleet.api import BotSpec
from botfleet.storage import S3Config

from .train_driver import TrainOptions, TrainResult, local_worker_defaults
from .train_driver import train as _train
from .train_errors import TrainingError, describe_failure, is_out_of_memory
from .train_plan import startup_breakdown, tokenize

__all__ = [
    "TrainOptions",
    "TrainResult",
    "TrainingError",
    "describe_failure",
    "is_out_of_memory",
    "local_worker_defaults",
    "startup_breakdown",
    "tokenize",
    "train",
]


def train(spec: BotSpec, storage_config: S3Config | None, *, on_progress=None, **options) -> TrainResult:
    """The old signature: the options as keywords (see TrainOptions), the worker shape resolved here."""
    spec = local_worker_defaults().resolve(spec)
    return _train(spec, storage_config, TrainOptions(**options), on_progress=on_progress)
