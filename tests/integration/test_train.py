"""The training job: its pure parts, its errors, and real tiny trainings (Ray Train +
DeepSpeed on CPU) against the embedded S3 server.

Shared with test_train_resume.py: tests/fixtures/training.py.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from botfleet.api import TrainingSpec, parse_spec
from botfleet.storage import Storage, file_uri, join
from botfleet_jobs.base_model import BaseModelError, check_base_model, load_base_model
from botfleet_jobs.train_driver import TrainOptions, train
from botfleet_jobs.train_errors import TrainingError, describe_failure, is_out_of_memory
from botfleet_jobs.train_plan import (
    TrainPlan,
    cosine_factor,
    deepspeed_config,
    effective_block_size,
    eta_seconds,
    eval_batches,
    pack_blocks,
    perplexity,
    run_fingerprint,
    run_name,
    startup_breakdown,
    tokenize,
)
from tests.fixtures.training import EOT, spec_dict, upload_tiny_model, write_dataset

# --------------------------------------------------------------------------- pure parts


def test_deepspeed_config_cpu_zero2_fp32():
    cfg = deepspeed_config(
        TrainingSpec(
            zero_stage=2, batch_size_per_worker=4, gradient_accumulation=3, learning_rate=2e-4, gpus_per_worker=0
        ),
        world_size=2,
        on_gpu=False,
    )
    assert cfg["train_micro_batch_size_per_gpu"] == 4
    assert cfg["gradient_accumulation_steps"] == 3
    assert cfg["train_batch_size"] == 4 * 3 * 2
    assert cfg["zero_optimization"]["stage"] == 2
    assert cfg["zero_optimization"]["overlap_comm"] is False
    assert cfg["bf16"]["enabled"] is False
    assert cfg["gradient_clipping"] == 1.0
    assert cfg["steps_per_print"] >= 10**6
    opt = cfg["optimizer"]
    assert opt["type"] == "AdamW" and opt["params"]["lr"] == 2e-4
    # torch's AdamW, not DeepSpeed's JIT-compiled fused_adam/cpu_adam
    assert opt["params"]["torch_adam"] is True and cfg["zero_force_ds_cpu_optimizer"] is False
    assert opt["params"]["fused"] is True  # torch's fused CPU kernel: 5x faster steps
    assert "scheduler" not in cfg  # the cosine schedule is a LambdaLR passed in
    json.dumps(cfg)


def test_deepspeed_config_gpu_zero3_bf16():
    spec = TrainingSpec(zero_stage=3, gpus_per_worker=1)  # precision "" -> bf16 on GPUs
    cfg = deepspeed_config(spec, world_size=4, on_gpu=True)
    assert cfg["bf16"]["enabled"] is True
    assert cfg["zero_optimization"]["stage"] == 3
    assert cfg["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert cfg["optimizer"]["params"]["fused"] is True
    assert cfg["train_batch_size"] == 4
    assert deepspeed_config(TrainingSpec(precision="fp32", zero_stage=0), 1, True)["bf16"]["enabled"] is False
    assert deepspeed_config(TrainingSpec(precision="bf16", gpus_per_worker=0), 1, False)["bf16"]["enabled"] is True
    with pytest.raises(ValueError):
        deepspeed_config(spec, world_size=0, on_gpu=True)


def test_cosine_schedule_and_eta():
    assert cosine_factor(0, 10) == 1.0
    assert cosine_factor(5, 10) == pytest.approx(0.5)
    assert cosine_factor(10, 10) == pytest.approx(0.0)
    assert cosine_factor(12, 10) == pytest.approx(0.0)
    assert all(cosine_factor(s, 10) >= cosine_factor(s + 1, 10) for s in range(10))
    assert eta_seconds(0, 5.0, 10) is None
    assert eta_seconds(4, 2.0, 6) == pytest.approx(3.0)
    assert perplexity(0.0) == 1.0 and perplexity(None) is None and perplexity(1e6) == math.inf


def test_pack_blocks_pads_the_tail():
    blocks, lengths = pack_blocks(list(range(10)), 4, pad_id=99)
    assert blocks.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 99, 99]]
    assert lengths.tolist() == [4, 4, 2]
    blocks, lengths = pack_blocks(list(range(9)), 4, pad_id=99)  # a 1-token tail predicts nothing
    assert blocks.shape == (2, 4) and lengths.tolist() == [4, 4]
    assert pack_blocks([1], 4, 0)[0].shape == (0, 4)
    assert effective_block_size(1024, 256) == 256 and effective_block_size(64, 1024) == 64


def test_plan_steps_epochs_and_shards():
    plan = TrainPlan(
        n_blocks=50, world_size=2, micro_batch=3, gradient_accumulation=2, epochs=4, seed=7, checkpoint_every_steps=2
    )
    assert plan.global_batch == 12
    assert plan.total_steps == 5  # ceil(50 / 12)
    assert plan.micro_steps == 10
    assert plan.epoch_end_steps == [2, 3, 4, 5]
    assert plan.checkpoint_steps() == [2, 3, 4, 5]
    assert plan.epoch_at(5) == 4.0 and plan.epoch_at(0) == 0.0
    shards = [plan.rank_batches(r) for r in range(2)]
    assert all(s.shape == (10, 3) for s in shards)
    seen = np.concatenate([s.ravel() for s in shards])
    assert set(seen.tolist()) == set(range(50))  # every block trains; 10 wrapped repeats
    assert len(seen) == 60
    # deterministic: a resumed run gets the same batches
    again = TrainPlan(n_blocks=50, world_size=2, micro_batch=3, gradient_accumulation=2, epochs=4, seed=7)
    assert (again.rank_batches(1) == shards[1]).all()
    assert not (
        TrainPlan(n_blocks=50, world_size=2, micro_batch=3, gradient_accumulation=2, seed=8).rank_batches(1)
        == shards[1]
    ).all()
    one = TrainPlan(n_blocks=3, epochs=4)
    assert one.total_steps == 3 and one.epoch_end_steps == [1, 2, 3]
    assert TrainPlan(n_blocks=100, checkpoint_every_steps=30).checkpoint_steps() == [30, 60, 90, 100]
    with pytest.raises(ValueError, match="no training data"):
        TrainPlan(n_blocks=0)


def test_eval_batches_even_over_ranks():
    batches = [eval_batches(5, 2, r, batch=2) for r in range(2)]
    assert len(batches[0]) == len(batches[1]) == 2
    real = sorted(i for b in batches for idx, w in b for i, wt in zip(idx, w, strict=True) if wt)
    assert real == [0, 1, 2, 3, 4]
    assert eval_batches(0, 2, 0, 1) == []


def test_fingerprint_and_run_name():
    base = TrainingSpec(gpus_per_worker=0)
    fp = run_fingerprint(base, 1, "data")
    assert fp == run_fingerprint(base, 1, "data")
    assert fp != run_fingerprint(base, 2, "data")
    assert fp != run_fingerprint(base, 1, "other data")
    assert fp != run_fingerprint(TrainingSpec(gpus_per_worker=0, learning_rate=1e-3), 1, "data")
    # precision is what counts, not the GPU count behind it
    assert run_fingerprint(TrainingSpec(gpus_per_worker=1), 1, "d") == run_fingerprint(
        TrainingSpec(gpus_per_worker=2), 1, "d"
    )
    assert run_name("dril-gnome", fp) == f"dril-gnome-{fp}"


def test_tokenize_keeps_end_of_text(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = EOT + "Hello world" + EOT + "My dream is" + EOT
    assert tokenize(tok, text) == tok(text)["input_ids"]
    assert tokenize(tok, text)[:3] == [50256, 15496, 995]


def test_failure_messages():
    from ray.train import WorkerGroupError
    from ray.train.v2._internal.exceptions import UserExceptionWithTraceback

    oom = RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 99999999999 bytes")
    assert is_out_of_memory(oom)
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_out_of_memory(RuntimeError("size mismatch"))
    error = WorkerGroupError("boom", {0: UserExceptionWithTraceback(oom, "Traceback ...")})
    message = describe_failure(error)
    assert message.startswith("out of memory on training worker 0") and "batchSizePerWorker" in message
    error = WorkerGroupError("boom", {1: ValueError("bad\nthing"), 0: TrainingError("dataset unreadable: x")})
    assert describe_failure(error) == "dataset unreadable: x"
    error = WorkerGroupError("boom", {1: KeyError("w")})
    assert describe_failure(error) == "training worker 1 failed: KeyError: 'w'"
    # a killed worker: Ray's page of actor details shrinks to its exit detail
    from ray.train.v2._internal.exceptions import WorkerHealthCheckFailedError

    died = RuntimeError(
        "The actor died unexpectedly before finishing this task.\n\tclass_name: RayTrainWorker\n\tpid: 879\n"
        "The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR Worker exit detail:"
        " Worker unexpectedly exits with a connection error code 2. End of file. Some common causes include: ..."
    )
    error = WorkerGroupError(
        "boom", {0: WorkerHealthCheckFailedError("A worker health check failed. Worker info: ...", died)}
    )
    message = describe_failure(error)
    assert message.startswith(
        "training worker 0 failed: the worker process died (Worker unexpectedly exits with a connection error code 2);"
        " if the OS killed it for memory, reduce batchSizePerWorker"
    ), message


# --------------------------------------------------------------------------- errors


def test_unknown_base_model_fails_fast(storage, tmp_path):
    """Offline, a hub id cannot load: a one-line error before any Ray worker starts."""
    spec = parse_spec(spec_dict(storage.uri("bots"), "gpt2"))
    write_dataset(storage, spec.model_uri, n_train=20)
    with pytest.raises(TrainingError) as info:
        train(spec, storage.config)
    message = str(info.value)
    assert message.startswith("base model 'gpt2' could not be loaded: ")
    assert "use an s3:// folder of a saved model" in message and "\n" not in message
    with pytest.raises(BaseModelError, match="could not be loaded"):
        load_base_model("gpt2", storage, tmp_path)
    with pytest.raises(BaseModelError, match="not a saved model"):
        check_base_model(storage.uri("models", "nothing-here"), storage)


def test_missing_dataset_fails_fast(storage, tiny_model_dir):
    base = upload_tiny_model(storage, tiny_model_dir)
    spec = parse_spec(spec_dict(storage.uri("bots"), base))
    with pytest.raises(TrainingError, match=r"dataset unreadable: .*data/train.txt: not found"):
        train(spec, storage.config)


def test_base_model_from_file_folder(tiny_model_dir, tmp_path):
    folder = load_base_model(file_uri(tiny_model_dir), Storage(), tmp_path)
    assert sorted(os.listdir(folder)) == sorted(os.listdir(tiny_model_dir))


# --------------------------------------------------------------------------- real trainings


def test_train_zero2_one_worker(storage, tiny_model_dir, ray_cluster, tmp_path):
    base = upload_tiny_model(storage, tiny_model_dir)
    spec = parse_spec(spec_dict(storage.uri("bots"), base, zeroStage=2, workers=1))
    write_dataset(storage, spec.model_uri, n_train=220)
    seen = []
    options = TrainOptions(checkpoint_every_steps=4, progress_every_seconds=0.5, poll_seconds=0.5)
    result = train(spec, storage.config, options, on_progress=seen.append)

    # ---- the numbers
    assert result.resumed_from_step == 0
    assert result.steps == result.total_steps > 8
    assert result.valid_loss_after < result.valid_loss_before - 0.5, result
    assert result.perplexity_after < result.perplexity_before
    assert result.tokens > 0 and result.train_loss is not None

    # ---- progress.json
    progress = storage.read_json(join(spec.model_uri, "progress.json"))
    assert progress["status"] == "succeeded"
    assert progress["step"] == progress["total_steps"] == result.total_steps
    assert progress["epoch"] == 2.0 and progress["eta_seconds"] == 0.0
    assert progress["tokens_per_second"] > 0
    assert seen and seen[-1]["status"] == "succeeded"

    # ---- checkpoints: at least one per epoch, the newest 3 kept
    kept = {u.split("/")[-2] for u in storage.list(result.checkpoints) if u.endswith("/botfleet_state.json")}
    assert len(kept) == 3 and f"step-{result.total_steps:07d}" in kept

    # ---- the model folder
    training = storage.read_json(join(result.model_folder, "training.json"))
    for key in (
        "valid_loss_before",
        "valid_loss_after",
        "perplexity_before",
        "perplexity_after",
        "train_loss",
        "steps",
        "tokens",
        "duration_seconds",
    ):
        assert training[key] is not None, key
    assert training["hyperparameters"]["zero_stage"] == 2 and training["hyperparameters"]["precision"] == "fp32"
    startup = training["startup_seconds"]
    assert list(startup) == [
        "ray_start",
        "worker_group_start",
        "model_load",
        "data_load",
        "deepspeed_init",
        "checkpoint_resume",
        "evaluation_before",
        "total",
    ]
    assert all(v >= 0 for v in startup.values()) and startup["total"] >= startup["deepspeed_init"]
    samples = storage.read_json(join(result.model_folder, "samples.json"))["samples"]
    assert [s["prompt"] for s in samples][:1] == ["My dream is"]
    assert all(s["prediction"].startswith(s["prompt"]) for s in samples)

    local = str(tmp_path / "model")
    storage.download_dir(result.model_folder, local)
    config = json.load(open(os.path.join(local, "config.json")))
    assert config["task_specific_params"]["text-generation"] == {
        "do_sample": True,
        "min_length": 10,
        "max_length": 160,
        "temperature": 1.0,
        "top_p": 0.95,
        "prefix": "<|endoftext|>",
    }
    from transformers import pipeline

    generator = pipeline("text-generation", model=local)
    out = generator("My dream is", num_return_sequences=2, max_new_tokens=8)
    assert len(out) == 2 and all(o["generated_text"].startswith("My dream is") for o in out)


def test_train_zero3_two_workers_bf16(storage, tiny_model_dir, ray_cluster, tmp_path):
    base = upload_tiny_model(storage, tiny_model_dir)
    spec = parse_spec(spec_dict(storage.uri("bots"), base, zeroStage=3, workers=2, precision="bf16"))
    write_dataset(storage, spec.model_uri, n_train=200)
    result = train(spec, storage.config, TrainOptions(checkpoint_every_steps=0, samples_per_prompt=1))
    assert result.steps == result.total_steps and result.training["hyperparameters"]["workers"] == 2
    assert result.training["deepspeed"]["zero_optimization"]["stage"] == 3
    assert result.valid_loss_after < result.valid_loss_before - 0.3, result
    # ZeRO-3 rank files of both workers land in the same checkpoint
    files = storage.list(result.checkpoints)
    assert any("zero_pp_rank_1_" in f for f in files) and any("zero_pp_rank_0_" in f for f in files)
    local = str(tmp_path / "model")
    storage.download_dir(result.model_folder, local)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(local)
    import torch

    assert model.dtype == torch.float32  # gathered fp32 master weights, not bf16 shards


def test_startup_breakdown_adds_up():
    breakdown = startup_breakdown(
        100.0, 103.0, [("worker_group_start", 110.0), ("model_load", 111.5), ("evaluation_before", 112.0)]
    )
    assert breakdown == {
        "ray_start": 3.0,
        "worker_group_start": 7.0,
        "model_load": 1.5,
        "evaluation_before": 0.5,
        "total": 12.0,
    }


def test_a_single_worker_runs_zero_stage_0():
    # Nothing to partition across one rank: stages 1-3 would only add copies.
    for stage in (1, 2, 3):
        assert (
            deepspeed_config(TrainingSpec(zero_stage=stage, gpus_per_worker=0), world_size=1, on_gpu=False)[
                "zero_optimization"
            ]["stage"]
            == 0
        )
