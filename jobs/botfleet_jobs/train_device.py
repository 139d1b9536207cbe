"""What the step loop keeps on the device, so that it never waits for it between steps.

Two things made a GPU wait for Python on every micro-step: copying each batch from host
memory (torch synchronises a copy from pageable memory) and reading each loss back
(``float(loss)``). :class:`DeviceBatches` copies the rank's blocks once and builds every
batch there; :class:`StepLosses` sums the losses there and reads them back only when
progress.json or a checkpoint needs them (:meth:`StepLosses.settle`).
"""

from __future__ import annotations

import numpy as np

from .train_plan import IGNORE_INDEX


class DeviceBatches:
    """Micro-batch ``m`` of one rank: (input ids, attention mask, labels) on ``device``."""

    def __init__(self, ids: np.ndarray, lengths: np.ndarray, rank_batches: np.ndarray, device) -> None:
        import torch

        self.ids = torch.from_numpy(ids).to(device)
        self.lengths = torch.from_numpy(lengths).to(device)
        self.rows = torch.from_numpy(np.ascontiguousarray(rank_batches)).to(device)
        self.positions = torch.arange(ids.shape[1], device=device)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, micro: int):
        rows = self.rows[micro]
        ids = self.ids.index_select(0, rows)
        mask = (self.positions[None, :] < self.lengths.index_select(0, rows)[:, None]).long()
        return ids, mask, ids.masked_fill(mask == 0, IGNORE_INDEX)


class StepLosses:
    """The loop's losses, summed on the device: each step's is the mean of its micro-batches'
    and, with several ranks, of all ranks' (an all-reduce every step on every rank, so the
    ranks' collectives always match; nothing is read back for it)."""

    def __init__(self, device, accumulation: int, world: int) -> None:
        import torch

        self.accumulation, self.world = accumulation, world
        self._micro = torch.zeros((), dtype=torch.float64, device=device)  # this step's so far
        self._window = torch.zeros((), dtype=torch.float64, device=device)  # steps since the last settle
        self._last = None  # the last step's loss
        self.steps = 0  # steps since the last settle

    def add(self, loss) -> None:
        """A micro-batch's loss."""
        import torch

        self._micro += loss.detach().to(torch.float64)

    def end_step(self) -> None:
        step_loss = self._micro / self.accumulation
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(step_loss)
            step_loss /= self.world
        self._micro.zero_()
        self._window += step_loss
        self._last = step_loss
        self.steps += 1

    def settle(self) -> tuple[float, int, float] | None:
        """(sum of the step losses since the last settle, how many steps, the last step's
        loss), read back once; None when no step ended since."""
        import torch

        if not self.steps:
            return None
        total, last = torch.stack([self._window, self._last]).tolist()
        steps, self.steps = self.steps, 0
        self._window.zero_()
        return total, steps, last
