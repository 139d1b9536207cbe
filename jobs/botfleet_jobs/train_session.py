"""Where a training worker's rank, world size and checkpoints come from.

In a job, Ray Train runs the workers (:class:`RayTrainSession`): it hands each worker the
newest checkpoint and keeps the ones it reports. :class:`LocalSession` runs the same
worker loop in one process with plain ``torch.distributed`` (rank 0 of 1) and no Ray: for
machines that have torch but no Ray, such as the GPU check (``bench/gpu``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from collections.abc import Iterator
from typing import Protocol


class Session(Protocol):
    rank: int
    world: int

    def newest_checkpoint(self) -> contextlib.AbstractContextManager[tuple[str, str] | None]:
        """(local folder, where it came from) of the checkpoint to resume from, or None."""
        ...

    def report(self, metrics: dict, folder: str | None, name: str) -> None:
        """Hand over a checkpoint (``folder``, removed by the caller afterwards) and its metrics."""
        ...


class RayTrainSession:
    """A Ray Train worker's session."""

    def __init__(self) -> None:
        import ray.train

        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()

    @contextlib.contextmanager
    def newest_checkpoint(self) -> Iterator[tuple[str, str] | None]:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as folder:
            yield folder, str(checkpoint.path)

    def report(self, metrics: dict, folder: str | None, name: str) -> None:
        import ray.train
        from ray.train import Checkpoint

        checkpoint = Checkpoint.from_directory(folder) if folder else None
        ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name)


class LocalSession:
    """One process, rank 0 of 1, no Ray: a fresh run every time; a reported checkpoint is
    copied to ``keep_in/<name>`` when given, else dropped."""

    rank, world = 0, 1

    def __init__(self, keep_in: str | None = None) -> None:
        self.keep_in = keep_in
        # What torch.distributed's env:// rendezvous (which DeepSpeed uses) needs for one process.
        for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}.items():
            os.environ.setdefault(key, value)
        os.environ.setdefault("MASTER_PORT", str(_free_port()))

    @contextlib.contextmanager
    def newest_checkpoint(self) -> Iterator[tuple[str, str] | None]:
        yield None

    def report(self, metrics: dict, folder: str | None, name: str) -> None:
        if folder and self.keep_in:
            shutil.copytree(folder, os.path.join(self.keep_in, name), dirs_exist_ok=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
