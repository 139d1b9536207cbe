"""The pure half of the trainer: no Ray, no DeepSpeed, no I/O.

Everything here is a function of the request and the data sizes, so it is unit-tested
directly and every worker (and a resumed run) computes exactly the same plan:

* :func:`deepspeed_config`: the DeepSpeed config for a TrainingSpec.
* :func:`tokenize`, :func:`pack_blocks`: text -> token ids -> fixed-size training sequences.
* :class:`TrainPlan`: steps, epochs, checkpoint steps, and which blocks each rank trains
  on at each micro-step (so a resumed run skips exactly the batches already done).
* :func:`eval_batches`: the validation blocks, split evenly over the ranks.
* :func:`cosine_factor`, :func:`eta_seconds`, :func:`perplexity`, :func:`startup_breakdown`,
  :func:`run_fingerprint`, :func:`run_name`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from botfleet.api import TrainingSpec

IGNORE_INDEX = -100  # label of padding: no loss
STEPS_PER_PRINT = 10**9  # DeepSpeed's own step logging off: the trainer reports progress itself


# --------------------------------------------------------------------------- DeepSpeed


def deepspeed_config(training: TrainingSpec, world_size: int, on_gpu: bool) -> dict:
    """The DeepSpeed config for ``training`` on ``world_size`` workers.

    The learning-rate schedule is not in it: DeepSpeed's WarmupCosineLR insists on at
    least 2 warm-up steps, and the reference (HF Trainer ``cosine``, no warm-up) starts at
    the full rate, so the trainer passes a ``LambdaLR`` over :func:`cosine_factor`.

    Optimizer: torch's AdamW (``torch_adam``) with ``fused=True``, and the HF Trainer
    defaults the reference used (betas 0.9/0.999, eps 1e-8, no weight decay). Why, as
    measured on this kind of CPU machine: DeepSpeed's own AdamW is ``fused_adam``, a 39 s
    JIT compile on a fresh machine (so on every new pod), and the ZeRO CPU optimizer is
    ``cpu_adam`` (another 39 s); ``zero_force_ds_cpu_optimizer: false`` stops DeepSpeed
    from swapping torch's AdamW for ``cpu_adam``. torch's fused AdamW has kernels for CPU
    (since torch 2.4) and CUDA: on 124M parameters an optimizer step took 0.05 s against
    0.25 s for the default for-each/loop versions, about +10-25% tokens/s end to end.
    Precision is the request's (``resolved_precision``: fp32 on CPU unless asked); on
    CPUs with AMX, bf16 trained about 2x faster (ZeRO-2, 124M: 336 vs 155 tokens/s).
    """
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, got {world_size}")
    precision = training.resolved_precision()
    micro = training.batch_size_per_worker
    accumulation = training.gradient_accumulation
    optimizer_params: dict = {
        "lr": training.learning_rate,
        "betas": [0.9, 0.999],
        "eps": 1e-8,
        "weight_decay": 0.0,
        "torch_adam": True,
        "fused": True,
    }
    # ZeRO partitions optimizer state, gradients and parameters across data-parallel
    # ranks; with one rank there is nothing to partition and stages 1-3 only add bucket
    # copies (measured about 20% slower on CPU), so a single worker runs stage 0.
    stage = training.zero_stage if world_size > 1 else 0
    zero: dict = {"stage": stage}
    if stage == 3:
        # The final model is gathered from the shards with GatheredParameters; this also
        # lets engine.save_16bit_model work for anyone who wants it.
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    if stage >= 1:
        # Overlapping communication needs CUDA streams; on CPU it only adds copies.
        zero["overlap_comm"] = bool(on_gpu)
    return {
        "train_batch_size": micro * accumulation * world_size,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": accumulation,
        "gradient_clipping": 1.0,
        "steps_per_print": STEPS_PER_PRINT,
        "wall_clock_breakdown": False,
        "optimizer": {"type": "AdamW", "params": optimizer_params},
        "zero_force_ds_cpu_optimizer": False,
        "zero_optimization": zero,
        "bf16": {"enabled": precision == "bf16"},
        "fp16": {"enabled": False},
    }


def cosine_factor(step: int, total_steps: int) -> float:
    """Learning-rate multiplier after ``step`` optimizer steps: cosine from 1 to 0, no warm-up
    (HF's ``get_cosine_schedule_with_warmup`` with 0 warm-up steps)."""
    if total_steps <= 0:
        return 1.0
    progress = min(max(step, 0), total_steps) / total_steps
    return 0.5 * (1.0 + math.cos(math.pi * progress))


# --------------------------------------------------------------------------- data


def effective_block_size(requested: int, n_positions: int | None) -> int:
    """The block size actually trained: the request's, capped to the model's context."""
    return min(requested, n_positions) if n_positions else requested


def tokenize(tokenizer, text: str) -> list[int]:
    """Token ids of the whole text. Split on the end-of-text marker and encoded in a batch
    (same ids as one call: special tokens are split out first anyway, and no sequence-length
    warning), with the marker's id put back between the pieces."""
    eos_text, eos_id = tokenizer.eos_token, tokenizer.eos_token_id
    pieces = text.split(eos_text)
    encoded = tokenizer(pieces, add_special_tokens=False, verbose=False)["input_ids"] if pieces else []
    ids: list[int] = []
    for i, piece in enumerate(encoded):
        if i:
            ids.append(eos_id)
        ids.extend(piece)
    return ids


def pack_blocks(token_ids: Sequence[int], block_size: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut one long token stream into ``block_size`` sequences.

    Returns ``(blocks, lengths)``: ``blocks`` is an int64 array [n, block_size],
    ``lengths[i]`` how many of row i's tokens are real. Full blocks first, like the
    reference's ``group_texts``; unlike it, the tail is not thrown away: it becomes one
    last block padded with ``pad_id`` (masked out of attention and loss), because a
    person's posts are a small dataset. A tail of a single token is dropped (nothing to
    predict), as is everything when there are fewer than 2 tokens.
    """
    if block_size < 2:
        raise ValueError(f"block_size must be at least 2, got {block_size}")
    ids = np.asarray(token_ids, dtype=np.int64)
    full = len(ids) // block_size
    tail = len(ids) - full * block_size
    rows = full + (1 if tail >= 2 else 0)
    blocks = np.full((rows, block_size), pad_id, dtype=np.int64)
    lengths = np.full(rows, block_size, dtype=np.int64)
    if full:
        blocks[:full] = ids[: full * block_size].reshape(full, block_size)
    if tail >= 2:
        blocks[full, :tail] = ids[full * block_size :]
        lengths[full] = tail
    return blocks, lengths


@dataclass(frozen=True)
class TrainPlan:
    """How one pass over the training blocks is split into steps, ranks and epochs.

    ``n_blocks`` sequences are shuffled once with ``seed`` and padded (by wrapping around,
    like ``DistributedSampler``) to a whole number of optimizer steps, so every rank does
    the same number of micro-steps (DeepSpeed's collectives need that). The "epochs" of
    the plan are the ``epochs`` reshuffled copies the data stage baked into train.txt: an
    epoch is 1/epochs of the pass.
    """

    n_blocks: int
    world_size: int = 1
    micro_batch: int = 1
    gradient_accumulation: int = 1
    epochs: int = 1
    seed: int = 42
    checkpoint_every_steps: int = 0  # 0: only at the end of each epoch

    def __post_init__(self) -> None:
        if self.n_blocks < 1:
            raise ValueError("no training data: the training text makes no block of tokens")
        for name in ("world_size", "micro_batch", "gradient_accumulation", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    @property
    def global_batch(self) -> int:
        """Sequences per optimizer step, all ranks together."""
        return self.micro_batch * self.gradient_accumulation * self.world_size

    @property
    def total_steps(self) -> int:
        return math.ceil(self.n_blocks / self.global_batch)

    @property
    def micro_steps(self) -> int:
        """Micro-batches per rank."""
        return self.total_steps * self.gradient_accumulation

    def epoch_at(self, step: int) -> float:
        """Epochs done after ``step`` optimizer steps (fractional)."""
        return self.epochs * min(step, self.total_steps) / self.total_steps

    @property
    def epoch_end_steps(self) -> list[int]:
        """The step that ends each epoch (the first step at or past k/epochs of the pass)."""
        return sorted({math.ceil(k * self.total_steps / self.epochs) for k in range(1, self.epochs + 1)})

    def checkpoint_steps(self) -> list[int]:
        steps = set(self.epoch_end_steps)
        if self.checkpoint_every_steps > 0:
            steps.update(range(self.checkpoint_every_steps, self.total_steps + 1, self.checkpoint_every_steps))
        return sorted(steps)

    def is_checkpoint_step(self, step: int) -> bool:
        if step in self.epoch_end_steps:
            return True
        return self.checkpoint_every_steps > 0 and step % self.checkpoint_every_steps == 0

    def order(self) -> np.ndarray:
        """The block index of every global sequence slot, shuffled and wrapped."""
        permutation = np.random.default_rng(self.seed).permutation(self.n_blocks)
        slots = self.total_steps * self.global_batch
        return np.resize(permutation, slots)  # np.resize repeats from the start

    def rank_batches(self, rank: int) -> np.ndarray:
        """[micro_steps, micro_batch] block indices for ``rank``: micro-step m of rank r is
        slots ((m * world + r) * micro) .. + micro, so ranks interleave over the order."""
        if not 0 <= rank < self.world_size:
            raise ValueError(f"rank {rank} outside world of {self.world_size}")
        grid = self.order().reshape(self.micro_steps, self.world_size, self.micro_batch)
        return grid[:, rank, :]

    def to_dict(self) -> dict:
        return {
            **dataclasses.asdict(self),
            "global_batch": self.global_batch,
            "total_steps": self.total_steps,
            "epoch_end_steps": self.epoch_end_steps,
        }


def eval_batches(n_blocks: int, world_size: int, rank: int, batch: int) -> list[tuple[list[int], list[float]]]:
    """Validation batches of ``rank``: (block indices, weights).

    Blocks are dealt round-robin; every rank gets the same number of batches (ZeRO-3
    gathers parameters collectively, so all ranks must run the same forwards). Filler
    slots repeat block 0 with weight 0.
    """
    mine = list(range(rank, n_blocks, world_size))
    per_rank = math.ceil(n_blocks / world_size) if n_blocks else 0
    n_batches = math.ceil(per_rank / batch) if per_rank else 0
    out = []
    for b in range(n_batches):
        chunk = mine[b * batch : (b + 1) * batch]
        weights = [1.0] * len(chunk)
        while len(chunk) < batch:
            chunk.append(0)
            weights.append(0.0)
        out.append((chunk, weights))
    return out


# --------------------------------------------------------------------------- metrics


def perplexity(loss: float | None) -> float | None:
    if loss is None or loss != loss:
        return None
    try:
        return math.exp(loss)
    except OverflowError:
        return float("inf")


def eta_seconds(steps_done: int, seconds: float, steps_left: int) -> float | None:
    """Seconds left at the pace of this run so far (None before the first step)."""
    if steps_done <= 0 or seconds <= 0:
        return None
    return max(0.0, steps_left * seconds / steps_done)


def startup_breakdown(called_at: float, ray_ready_at: float, marks: list[tuple[str, float]]) -> dict:
    """Seconds spent in each start-up phase, from train() being called to the first step.

    ``marks`` are (phase, time it ended) in order; the first phase starts when Ray was
    ready. A worker restarted by Ray Train reports its own attempt.
    """
    breakdown = {"ray_start": round(ray_ready_at - called_at, 2)}
    previous = ray_ready_at
    for phase, ended in marks:
        breakdown[phase] = round(ended - previous, 2)
        previous = ended
    breakdown["total"] = round(previous - called_at, 2)
    return breakdown


# --------------------------------------------------------------------------- identity


def run_fingerprint(training: TrainingSpec, world_size: int, data_digest: str) -> str:
    """What makes two runs' checkpoints interchangeable: every setting that changes the
    trajectory or the shard layout, and the training data. 12 hex digits."""
    settings = dataclasses.asdict(training)
    settings["precision"] = training.resolved_precision()
    settings.pop("gpus_per_worker")  # only matters through the precision
    settings.pop("max_failures")  # how often to retry, not what is trained
    settings["world_size"] = world_size
    blob = json.dumps({"training": settings, "data": data_digest}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def run_name(model_id: str, fingerprint: str) -> str:
    """The Ray Train run name: deterministic, so a re-run finds its checkpoints and resumes;
    different settings or data get a fresh run (old checkpoints stay where they are)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", model_id).strip("-")[:80] or "bot"
    return f"{slug}-{fingerprint}"
