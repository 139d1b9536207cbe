"""Training throughput: botfleet's trainer against a plain PyTorch loop, same run.

Both train the same randomly initialised GPT-2 small (124M) on the same packed blocks, the
same number of steps (about BOTFLEET_BENCH_STEPS, 24 by default), with the same precision,
batch, sequence length, optimizer and thread count. botfleet's figure is tokens / seconds
inside its step loop (from training.json); the plain loop's the same. The baseline runs
before and after botfleet and the two are averaged, so the machine's minute-to-minute swings
hit both sides. Start-up (seconds from calling `train` to its first step, by phase) is
reported too.

    python -m bench train            # fp32 (the CPU default)
    BOTFLEET_BENCH_PRECISION=bf16 python -m bench train
"""

from __future__ import annotations

import math
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.synthetic import tweet_text
from botfleet import api
from botfleet.embedded_s3 import EmbeddedS3
from botfleet.storage import Storage
from botfleet_jobs.dataset import TRAIN_FRACTION, build_dataset

PRESET = os.environ.get("BOTFLEET_BENCH_PRESET", "small")
PRECISION = os.environ.get("BOTFLEET_BENCH_PRECISION", "fp32")
BLOCK, BATCH, STEPS, THREADS = 128, 4, int(os.environ.get("BOTFLEET_BENCH_STEPS", "24")), 2


def make_dataset(storage: Storage, spec: api.BotSpec, chars_per_token: float) -> None:
    """A train.txt of about STEPS steps of BATCH x BLOCK tokens (botfleet trains one pass)."""
    rng = random.Random(0)
    needed = STEPS * BATCH * BLOCK * chars_per_token / TRAIN_FRACTION
    texts: list[str] = []
    while sum(map(len, texts)) < needed:
        texts.append(tweet_text(rng).replace("RT @", ""))
    dataset = build_dataset({"bench": texts}, epochs=1, seed=0)
    prefix = spec.model_uri + "/data"
    storage.write_text(prefix + "/train.txt", dataset.train)
    storage.write_text(prefix + "/valid.txt", dataset.valid[:4000])
    storage.write_json(prefix + "/stats.json", {"model_id": spec.model_id, "handles": {}, "epochs": 1, "seed": 0})


def chars_per_token(model_dir: str) -> float:
    from transformers import AutoTokenizer

    rng = random.Random(1)
    sample = " ".join(tweet_text(rng) for _ in range(200))
    return len(sample) / len(AutoTokenizer.from_pretrained(model_dir)(sample)["input_ids"])


def plain_loop(model_dir: str, text: str) -> tuple[float, int]:
    """Tokens per second of a textbook PyTorch loop (AdamW, clip 1.0, no DeepSpeed, no Ray)
    over the same blocks botfleet trains, wrapped round to whole batches as its plan does;
    and the number of steps."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from botfleet_jobs.train_plan import pack_blocks, tokenize

    torch.set_num_threads(THREADS)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.train()
    blocks, _ = pack_blocks(tokenize(tokenizer, text), BLOCK, tokenizer.eos_token_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1.372e-4, weight_decay=0.0)
    steps = math.ceil(len(blocks) / BATCH)
    data = torch.as_tensor(np.resize(blocks, (steps * BATCH, BLOCK))).view(steps, BATCH, BLOCK)

    def step(batch):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=PRECISION == "bf16"):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    # Every step timed, the first (which allocates the optimizer's state) too: botfleet's
    # figure covers its whole step loop as well.
    start = time.perf_counter()
    for batch in data:
        step(batch)
    return steps * BATCH * BLOCK / (time.perf_counter() - start), steps


def run() -> dict:
    from botfleet_jobs.base_model import make_preset_gpt2
    from botfleet_jobs.train_driver import TrainOptions, local_worker_defaults, train

    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    with tempfile.TemporaryDirectory() as tmp, EmbeddedS3() as server:
        storage = Storage(server.config)
        storage.ensure_bucket("bench")
        model_dir = make_preset_gpt2(Path(tmp) / "model", PRESET)
        storage.upload_dir(model_dir, "s3://bench/base")
        spec = api.parse_spec(
            {
                "handles": [{"handle": "bench", "source": {"bluesky": {}}}],
                "training": {
                    "baseModel": "s3://bench/base",
                    "epochs": 1,
                    "blockSize": BLOCK,
                    "batchSizePerWorker": BATCH,
                    "gpusPerWorker": 0,
                    "precision": PRECISION,
                    "zeroStage": 2,
                },
                "resources": {"cpusPerWorker": THREADS},
                "output": {"uri": "s3://bench/out"},
            }
        )
        spec = local_worker_defaults().resolve(spec)  # as a job does where it starts
        make_dataset(storage, spec, chars_per_token(model_dir))
        text = storage.read_text(spec.model_uri + "/data/train.txt")

        baseline = [plain_loop(model_dir, text)]
        result = train(spec, server.config, TrainOptions(num_cpus=THREADS, checkpoint_every_steps=10**6))
        record = result.training
        # Step-loop rate as the trainer last published it, before its end-of-epoch
        # checkpoint; the plain loop writes no checkpoint either.
        progress = storage.read_json(spec.model_uri + "/progress.json")
        baseline.append(plain_loop(model_dir, text))

    plain_steps = {steps for _, steps in baseline}
    assert plain_steps == {record["steps"]}, f"botfleet trained {record['steps']} steps, the plain loop {plain_steps}"
    botfleet_rate = progress["tokens_per_second"]
    baseline_rate = statistics.mean(rate for rate, _ in baseline)
    report = {
        "benchmark": (
            f"training throughput, GPT-2 {PRESET} random init, {PRECISION}, seq {BLOCK}, batch {BATCH},"
            f" {THREADS} threads, ZeRO-2 requested (one worker runs stage 0)"
        ),
        "tokens_per_second": {
            "botfleet": round(botfleet_rate, 1),
            "botfleet_with_final_checkpoint": round(record["tokens"] / record["train_seconds"], 1),
            "plain_pytorch": round(baseline_rate, 1),
            "plain_runs": [round(rate, 1) for rate, _ in baseline],
        },
        "ratio_botfleet_to_plain": round(botfleet_rate / baseline_rate, 3),
        "steps": record["steps"],
    }
    startup = record.get("startup_seconds")
    if startup:
        report["startup_seconds"] = startup
    return report
