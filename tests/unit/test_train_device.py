"""The step loop's device-side parts (jobs/botfleet_jobs/train_device.py), on CPU tensors."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from botfleet_jobs.train_device import DeviceBatches, StepLosses  # noqa: E402
from botfleet_jobs.train_plan import IGNORE_INDEX  # noqa: E402


def test_a_batch_is_its_rows_with_padding_masked_out_of_attention_and_loss():
    ids = np.arange(12, dtype=np.int64).reshape(3, 4)
    lengths = np.array([4, 2, 3])
    batches = DeviceBatches(ids, lengths, np.array([[2, 1], [0, 2]]), "cpu")
    assert len(batches) == 2
    batch_ids, mask, labels = batches[0]
    assert batch_ids.tolist() == [[8, 9, 10, 11], [4, 5, 6, 7]]
    assert mask.tolist() == [[1, 1, 1, 0], [1, 1, 0, 0]]
    assert labels.tolist() == [[8, 9, 10, IGNORE_INDEX], [4, 5, IGNORE_INDEX, IGNORE_INDEX]]


def test_step_losses_are_micro_batch_means_read_back_only_when_settled():
    losses = StepLosses("cpu", accumulation=2, world=1)
    assert losses.settle() is None
    for micro in (1.0, 3.0, 5.0, 7.0):  # steps of 2 micro-batches: 2.0 and 6.0
        losses.add(torch.tensor(micro))
        if micro in (3.0, 7.0):
            losses.end_step()
    assert losses.settle() == (8.0, 2, 6.0)
    assert losses.settle() is None  # the window starts again
    losses.add(torch.tensor(2.0))
    losses.add(torch.tensor(4.0))
    losses.end_step()
    assert losses.settle() == (3.0, 1, 3.0)
