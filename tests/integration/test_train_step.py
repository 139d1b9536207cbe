"""The step loop of a lone worker skips DeepSpeed's gradient all-reduce (``engine.no_sync``):
the weights it trains must be exactly those the all-reduce path trains, in fp32 and bf16.

Two workers in this process (rank 0 of 1, no Ray) train the tiny GPT-2 on the same file://
dataset, one with the all-reduce put back, and their weights are compared bit for bit.
"""

from __future__ import annotations

import os

import pytest

from botfleet.api import TrainingSpec
from botfleet.storage import Storage, file_uri
from botfleet_jobs.train_session import LocalSession
from botfleet_jobs.train_worker import Worker, WorkerConfig, prepared_worker
from tests.fixtures.training import write_dataset


def lone_worker(model_dir: str, model_uri: str, precision: str, workdir: str) -> Worker:
    training = TrainingSpec(
        base_model=file_uri(model_dir),
        precision=precision,
        gpus_per_worker=0,
        workers=1,
        block_size=32,
        batch_size_per_worker=2,
        gradient_accumulation=2,  # boundaries and the micro-steps between them
        learning_rate=5e-3,
    )
    config = WorkerConfig(
        model_id="alice",
        model_uri=model_uri,
        training=training,
        epochs=1,
        fingerprint="step-test",
        run_name="alice-step-test",
        storage_config=None,
        on_gpu=False,
        threads=1,
        progress_every_seconds=3600.0,
    )
    return prepared_worker(config, workdir, LocalSession())


RENDEZVOUS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")  # LocalSession sets them


@pytest.fixture(scope="module")
def process_group():
    """DeepSpeed makes the process group on its first engine and keeps its own groups from
    it: one for the module, removed at its end, and the rendezvous variables with it (a later
    test's subprocess would inherit a MASTER_PORT still bound here)."""
    before = {key: os.environ.get(key) for key in RENDEZVOUS}
    yield
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_no_sync_trains_the_same_weights_as_the_all_reduce(precision, tiny_model_dir, tmp_path, process_group):
    import torch

    model_uri = file_uri(tmp_path / "bots" / "alice")
    write_dataset(Storage(), model_uri, n_train=60, epochs=1)
    weights = {}
    for reduce in (False, True):
        workdir = tmp_path / f"work-{reduce}"
        workdir.mkdir()
        worker = lone_worker(tiny_model_dir, model_uri, precision, str(workdir))
        assert worker.reduce_gradients is False  # alone: the loop skips the all-reduce by itself
        worker.reduce_gradients = reduce
        worker.train()
        assert worker.state["step"] == worker.plan.total_steps >= 3
        weights[reduce] = {name: p.detach().clone() for name, p in worker.engine.module.named_parameters()}

    skipped, reduced = weights[False], weights[True]
    assert skipped.keys() == reduced.keys()
    different = [name for name in skipped if not torch.equal(skipped[name], reduced[name])]
    assert not different, different
    # ... and they trained: equal weights are not the untouched base model's
    from transformers import AutoModelForCausalLM

    base = dict(AutoModelForCausalLM.from_pretrained(tiny_model_dir).named_parameters())
    assert not torch.equal(base["transformer.h.0.mlp.c_fc.weight"], skipped["transformer.h.0.mlp.c_fc.weight"])
