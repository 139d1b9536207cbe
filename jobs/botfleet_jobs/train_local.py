"""The training worker loop in this one process, without Ray: rank 0 of 1, with DeepSpeed
over plain ``torch.distributed``. For machines that have torch and DeepSpeed but no Ray
(the GPU check, ``bench/gpu``); jobs train through :mod:`botfleet_jobs.train_driver`.
"""

from __future__ import annotations

import shutil
import tempfile

from .train_session import LocalSession
from .train_worker import WorkerConfig, prepared_worker


def run_local(config: WorkerConfig, keep_checkpoints_in: str | None = None) -> None:
    """Train ``config`` to the end here: the same files as a job's worker writes (progress.json,
    the model folder, training.json); checkpoints are kept only in ``keep_checkpoints_in``."""
    workdir = tempfile.mkdtemp(prefix="botfleet-train-")
    try:
        prepared_worker(config, workdir, LocalSession(keep_checkpoints_in)).run()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        import torch.distributed as dist

        if dist.is_initialized():  # DeepSpeed made the process group: a later run makes its own
            dist.destroy_process_group()
