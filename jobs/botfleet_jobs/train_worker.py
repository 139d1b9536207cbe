"""What every Ray Train worker runs (:func:`train_loop`), top to bottom: set up (the base
model, the data and the plan of steps, the DeepSpeed engine, the newest checkpoint), then
the validation loss before, the step loop, the validation loss after, and the outputs.

Every rank tokenizes the whole text (a person's posts: small) and makes the same plan
(:mod:`botfleet_jobs.train_plan`), then trains on its own slots of it. Rank 0 alone
writes progress.json, the model folder, samples.json and training.json.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from botfleet.api import TrainingSpec
from botfleet.artifacts import TrainingHistory, TrainingRecord
from botfleet.layout import Layout
from botfleet.storage import JOB_OUTAGE_WAIT_S, S3Config, Storage, StorageError
from botfleet.timestamps import now_iso

from . import train_checkpoint
from .base_model import BaseModelError, BaseModelLoad
from .final_model import GENERATION_SETTINGS, sample_predictions, save_final_model
from .train_device import DeviceBatches, StepLosses
from .train_errors import TrainingError, is_out_of_memory, oom_error
from .train_plan import (
    TrainPlan,
    cosine_factor,
    deepspeed_config,
    effective_block_size,
    eta_seconds,
    eval_batches,
    pack_blocks,
    perplexity,
    startup_breakdown,
    tokenize,
)
from .train_progress import ProgressWriter
from .train_session import RayTrainSession, Session

log = logging.getLogger("botfleet_jobs.train")


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker needs (pickled into the workers by Ray). ``storage_config``
    carries the S3 keys: its repr hides the secret, which matters because Ray Train shows
    the train loop config (as text) in its state API."""

    model_id: str
    model_uri: str
    training: TrainingSpec
    epochs: int  # the copies really baked into train.txt (stats.json), else the spec's
    fingerprint: str
    run_name: str
    storage_config: S3Config | None
    on_gpu: bool
    threads: int  # torch threads per worker (CPU)
    checkpoint_every_steps: int = 0
    progress_every_seconds: float = 5.0
    samples_per_prompt: int = 1
    started_at: str = ""
    # Wall-clock marks (time.time()) for the start-up breakdown in training.json.
    called_at: float = 0.0  # train() was called
    ray_ready_at: float = 0.0  # Ray was started or joined


class Blocks(NamedTuple):
    """Token ids packed into fixed-size sequences, and how many of each row are real."""

    ids: np.ndarray
    lengths: np.ndarray


def train_loop(loop_config: dict) -> None:
    """Ray Train's entry point on every worker."""
    config: WorkerConfig = loop_config["config"]
    workdir = tempfile.mkdtemp(prefix="botfleet-train-")
    try:
        prepared_worker(config, workdir, RayTrainSession()).run()
    except TrainingError:
        raise
    except Exception as error:
        if is_out_of_memory(error):
            import ray.train

            raise oom_error(error, f"on training worker {ray.train.get_context().get_world_rank()}") from error
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def prepared_worker(config: WorkerConfig, workdir: str, session: Session) -> Worker:
    """:func:`setup_runtime`, then the :class:`Worker`, the base model downloading meanwhile
    (with the worker's own object-store client)."""
    storage = Storage(config.storage_config, outage_wait_s=JOB_OUTAGE_WAIT_S)
    base_model = BaseModelLoad(config.training.base_model, storage, workdir)
    setup_runtime(config)
    return Worker(config, workdir, session, storage, base_model)


class Worker:
    """One worker's run: ``__init__`` sets everything up, :meth:`run` trains and saves."""

    def __init__(
        self, config: WorkerConfig, workdir: str, session: Session, storage: Storage, base_model: BaseModelLoad
    ) -> None:
        self.config = config
        self.session = session
        self.rank, self.world = session.rank, session.world
        self.storage = storage
        self.layout = Layout(config.model_uri)
        self.workdir = workdir
        self.started = time.time()
        self.marks = [("worker_group_start", self.started)]  # start-up phases: (name, ended at)
        self.progress = ProgressWriter(
            self.storage,
            self.layout.progress,
            enabled=self.rank == 0,
            every_seconds=config.progress_every_seconds,
            started_at=config.started_at,
        )
        self.progress.write(status="loading", force=True)

        model, self.tokenizer, self.block_size = load_model(config.training, base_model)
        self.marks.append(("model_load", time.time()))

        self.train_data, self.valid_data = load_data(self.storage, self.layout, self.tokenizer, self.block_size)
        self.plan = TrainPlan(
            n_blocks=len(self.train_data.ids),
            world_size=self.world,
            micro_batch=config.training.batch_size_per_worker,
            gradient_accumulation=config.training.gradient_accumulation,
            epochs=config.epochs,
            seed=config.training.seed,
            checkpoint_every_steps=config.checkpoint_every_steps,
        )
        # tokens_done[s]: real (unpadded) tokens trained in the first s steps, all ranks
        per_step = self.train_data.lengths[self.plan.order()].reshape(self.plan.total_steps, -1).sum(axis=1)
        self.tokens_done = [0] + [int(n) for n in per_step.cumsum()]
        self.marks.append(("data_load", time.time()))

        self.engine = deepspeed_engine(model, config, self.world, self.plan.total_steps)
        # Alone, a worker's gradient all-reduce only copies the gradients through a buffer
        # (about 8% of a CPU step); DeepSpeed's no_sync skips it where ZeRO does not partition
        # gradients (one worker always runs stage 0: train_plan.deepspeed_config).
        self.reduce_gradients = self.world > 1 or self.engine.zero_optimization_partition_gradients()
        self.marks.append(("deepspeed_init", time.time()))

        # The run's state, saved with every checkpoint: step, losses, seconds trained.
        self.state = train_checkpoint.resume(self.engine, config.fingerprint, session)
        self.start_step = self.state["step"]
        self.marks.append(("checkpoint_resume", time.time()))

        self.progress.update(
            model_id=config.model_id,
            run_name=config.run_name,
            total_steps=self.plan.total_steps,
            epochs=self.plan.epochs,
            world_size=self.world,
            block_size=self.block_size,
            resumed_from_step=self.start_step,
            last_checkpoint_step=self.start_step or None,
        )

    def run(self) -> None:
        """The validation loss before, the step loop, the outputs."""
        if "valid_loss_before" not in self.state:  # a resumed run has it from its checkpoint
            self._progress("evaluating", self.start_step, force=True)
            self.state["valid_loss_before"] = self.evaluate()
        self.marks.append(("evaluation_before", time.time()))
        self.train()
        self.finish()

    def train(self) -> None:
        """The optimizer steps left after the resumed one: per micro-batch forward, backward
        and step; per optimizer step progress.json (when due) and checkpoints (the plan's).
        Nothing here waits for the device except a progress write or a checkpoint."""
        import torch

        engine, plan, state = self.engine, self.plan, self.state
        batches = DeviceBatches(
            self.train_data.ids, self.train_data.lengths, plan.rank_batches(self.rank), engine.device
        )
        losses = StepLosses(engine.device, plan.gradient_accumulation, self.world)
        step = self.start_step
        torch.manual_seed(self.config.training.seed + step)  # dropout
        prior_seconds = state.get("train_seconds", 0.0)  # earlier attempts'
        run_start = time.time()
        engine.train()
        self._progress("training", step, loss=None, force=True, run_start=run_start)
        for micro in range(step * plan.gradient_accumulation, plan.micro_steps):
            ids, mask, labels = batches[micro]
            loss = engine(input_ids=ids, attention_mask=mask, labels=labels).loss
            with contextlib.nullcontext() if self.reduce_gradients else engine.no_sync():
                engine.backward(loss)
            engine.step()  # DeepSpeed steps the optimizer every gradient_accumulation micro-steps
            losses.add(loss)
            if (micro + 1) % plan.gradient_accumulation:
                continue
            step += 1
            losses.end_step()
            checkpoint = plan.is_checkpoint_step(step)
            if checkpoint or self.progress.due():
                self._progress(
                    "training",
                    step,
                    loss=self._settle(losses, step),
                    learning_rate=engine.get_lr()[0],
                    force=True,
                    run_start=run_start,
                )
            if checkpoint:
                state.update(step=step, train_seconds=prior_seconds + (time.time() - run_start))
                self._checkpoint()
        self._settle(losses, step)  # waits for the last step
        state.update(step=step, train_seconds=prior_seconds + (time.time() - run_start))

    def _settle(self, losses: StepLosses, step: int) -> float | None:
        """Read the step losses back into the run state; their mean since the last time,
        which the loss curve records at ``step`` (reading each step's loss would make every
        step wait for the device)."""
        settled = losses.settle()
        if settled is None:
            return None
        total, steps, last = settled
        state = self.state
        state["train_loss_sum"] = state.get("train_loss_sum", 0.0) + total
        state["train_loss_steps"] = state.get("train_loss_steps", 0) + steps
        state["last_loss"] = last
        state.setdefault("history", []).append([step, total / steps])  # checkpointed: survives a resume
        return total / steps

    def finish(self) -> None:
        """Validation after, the final model (all ranks gather it), then rank 0 writes the
        model folder, samples.json, training.json and the last progress."""
        config, training, state, step = self.config, self.config.training, self.state, self.state["step"]
        self._progress("evaluating", step, force=True)
        loss_before, loss_after = state["valid_loss_before"], self.evaluate()
        self._progress("saving", step, force=True)
        model_dir = os.path.join(self.workdir, "final")
        save_final_model(self.engine, self.tokenizer, model_dir, self.rank)
        if self.rank != 0:
            return
        samples = sample_predictions(
            model_dir,
            seed=training.seed,
            per_prompt=config.samples_per_prompt,
            device=self.engine.device if config.on_gpu else None,
        )
        steps_counted = state.get("train_loss_steps")
        record = TrainingRecord(
            model_id=config.model_id,
            base_model=training.base_model,
            hyperparameters=self._hyperparameters(),
            deepspeed=deepspeed_config(training, self.world, config.on_gpu),
            plan=self.plan.to_dict(),
            run_name=config.run_name,
            fingerprint=config.fingerprint,
            steps=step,
            total_steps=self.plan.total_steps,
            resumed_from_step=self.start_step,
            tokens=self.tokens_done[step],
            valid_loss_before=loss_before,
            valid_loss_after=loss_after,
            perplexity_before=perplexity(loss_before),
            perplexity_after=perplexity(loss_after),
            train_loss=state["train_loss_sum"] / steps_counted if steps_counted else None,  # mean over all steps
            final_loss=state.get("last_loss"),
            train_seconds=state["train_seconds"],  # optimizer steps only, all attempts
            duration_seconds=time.time() - self.started,  # this attempt's worker time
            started_at=config.started_at,
            finished_at=now_iso(),
            # this attempt: train() call to first step
            startup_seconds=startup_breakdown(config.called_at, config.ray_ready_at, self.marks),
        )
        # Model files first, training.json last: its presence means the model is complete.
        self.storage.upload_dir(model_dir, self.layout.model)
        samples_json = {"seed": training.seed, "settings": GENERATION_SETTINGS, "samples": samples}
        self.storage.write_json(self.layout.samples, samples_json)
        valid = {0: loss_before, step: loss_after}  # "before" is measured before the first step
        history = TrainingHistory.of(config.model_id, state.get("history", []), valid)
        self.storage.write_json(self.layout.loss_history, history.to_dict())
        self.storage.write_json(self.layout.training, record.to_dict())
        self._progress(
            "succeeded",
            step,
            loss=state.get("last_loss"),
            eta_seconds=0.0,
            valid_loss_before=loss_before,
            valid_loss_after=loss_after,
            force=True,
        )

    # ------------------------------------------------------------------ the loop's parts

    def evaluate(self) -> float | None:
        """Mean validation loss per predicted token, all ranks together (None: no data)."""
        import torch
        import torch.distributed as dist
        import torch.nn.functional as F

        engine, valid = self.engine, self.valid_data
        batch = max(1, self.config.training.batch_size_per_worker)
        totals = torch.zeros(2, dtype=torch.float64, device=engine.device)
        engine.eval()
        with torch.no_grad():
            for indices, weights in eval_batches(len(valid.ids), self.world, self.rank, batch):
                ids = torch.from_numpy(valid.ids[indices]).to(engine.device)
                lengths = torch.from_numpy(valid.lengths[indices]).to(engine.device)
                mask = (torch.arange(ids.shape[1], device=engine.device)[None, :] < lengths[:, None]).long()
                logits = engine.module(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
                losses = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
                weight = torch.tensor(weights, dtype=torch.float64, device=engine.device)[:, None]
                keep = mask[:, 1:].to(torch.float64) * weight
                totals[0] += (losses.to(torch.float64) * keep).sum()
                totals[1] += keep.sum()
        engine.train()
        if self.world > 1:
            dist.all_reduce(totals)
        return float(totals[0] / totals[1]) if totals[1] > 0 else None

    def _checkpoint(self) -> None:
        step = self.state["step"]
        metrics = {
            "step": step,
            "epoch": self.plan.epoch_at(step),
            "loss": self.state.get("last_loss"),
            "valid_loss_before": self.state.get("valid_loss_before"),
        }
        train_checkpoint.save(
            self.engine,
            self.state,
            metrics,
            fingerprint=self.config.fingerprint,
            session=self.session,
            workdir=self.workdir,
        )
        self.progress.write(last_checkpoint_step=step, force=True)

    def _progress(self, status: str, step: int, *, force=False, run_start: float | None = None, **fields) -> bool:
        """progress.json at ``step``: ``fields``, the epoch and, given when this attempt's
        steps started, its tokens per second and the ETA. Returns whether it was written."""
        fields = {"status": status, "step": step, **fields, "epoch": self.plan.epoch_at(step)}
        if run_start is not None:
            steps, seconds = step - self.start_step, time.time() - run_start
            tokens = self.tokens_done[step] - self.tokens_done[self.start_step]
            fields["tokens_per_second"] = tokens / seconds if steps and seconds > 0 else None
            fields["eta_seconds"] = eta_seconds(steps, seconds, self.plan.total_steps - step)
        return self.progress.write(force=force, **fields)

    def _hyperparameters(self) -> dict:
        t, plan, config = self.config.training, self.plan, self.config
        return {
            "base_model": t.base_model,
            "learning_rate": t.learning_rate,
            "lr_schedule": "cosine, no warm-up",
            "epochs": plan.epochs,
            "block_size": self.block_size,
            "block_size_requested": t.block_size,
            "batch_size_per_worker": t.batch_size_per_worker,
            "gradient_accumulation": t.gradient_accumulation,
            "global_batch": plan.global_batch,
            "workers": self.world,
            "gpus_per_worker": t.gpus_per_worker,
            "zero_stage": t.zero_stage,
            "precision": t.resolved_precision(),
            "optimizer": "AdamW (torch), betas 0.9/0.999, eps 1e-8, weight decay 0",
            "gradient_clipping": 1.0,
            "seed": t.seed,
            "threads_per_worker": config.threads if not config.on_gpu else None,
        }


# --------------------------------------------------------------------------- set-up


def setup_runtime(config: WorkerConfig) -> None:
    """Threads, logging and DeepSpeed's CPU quirks, before anything builds a model."""
    if not config.on_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # skips probing for GPUs (and its warning)
    import torch

    if not config.on_gpu:
        # One intra-op thread per CPU Ray gave this worker: Ray sets OMP_NUM_THREADS,
        # but torch may already have sized its pool; more threads than CPUs thrash.
        torch.set_num_threads(max(1, config.threads))
    if not log.handlers:  # worker processes: show our info lines in the job's logs
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    # torch.distributed deprecation notices DeepSpeed triggers on every collective.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.distributed")
    import deepspeed  # noqa: F401
    from deepspeed.utils import logger as ds_logger

    ds_logger.setLevel(logging.WARNING)
    if not config.on_gpu:
        # DeepSpeed's CPU backend JIT-compiles its shared-memory all-reduce op on first
        # use (21 s on a fresh machine, i.e. every new pod). Only inference_all_reduce
        # uses it; training collectives go through torch.distributed (gloo). DeepSpeed
        # keeps this dict for the process, so marking the op incompatible skips the build.
        try:
            import deepspeed.ops

            deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
        except Exception:  # noqa: BLE001 - an older/newer DeepSpeed: just pay the compile
            pass


def load_model(training: TrainingSpec, base_model: BaseModelLoad):
    """(the base model in fp32, its tokenizer, the block size trained: the request's,
    capped to the model's context)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        folder = base_model.folder()
    except BaseModelError as error:
        raise TrainingError(str(error)) from None
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    config = model.config
    n_positions = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    return model, tokenizer, effective_block_size(training.block_size, n_positions)


def load_data(storage: Storage, layout: Layout, tokenizer, block_size: int) -> tuple[Blocks, Blocks]:
    """The training and validation text, tokenized and packed into blocks."""
    try:
        train_text = storage.read_text(layout.train_txt)
        valid_text = storage.read_text(layout.valid_txt)
    except StorageError as error:
        raise TrainingError(f"dataset unreadable: {error}") from None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    train = Blocks(*pack_blocks(tokenize(tokenizer, train_text), block_size, pad_id))
    valid = Blocks(*pack_blocks(tokenize(tokenizer, valid_text), block_size, pad_id))
    if len(train.ids) == 0:
        raise TrainingError(f"dataset unusable: {layout.train_txt} makes no training sequence")
    return train, valid


def deepspeed_engine(model, config: WorkerConfig, world: int, total_steps: int):
    """The DeepSpeed engine around ``model``, with the cosine LR schedule over ``total_steps``."""
    import deepspeed
    import torch

    def schedule(optimizer):
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: cosine_factor(step, total_steps))

    engine, _optimizer, _loader, _scheduler = deepspeed.initialize(
        model=model,
        model_parameters=model.parameters(),
        config=deepspeed_config(config.training, world, config.on_gpu),
        lr_scheduler=schedule,
    )
    return engine
