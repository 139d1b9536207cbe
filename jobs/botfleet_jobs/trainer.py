"""The training job: fine-tune a causal LM on a bot's dataset with Ray Train + DeepSpeed.

    from botfleet.api import parse_spec
    from botfleet.storage import S3Config
    from botfleet_jobs.trainer import train

    result = train(parse_spec(spec_dict), S3Config.from_env(), on_progress=print)
    print(result.model_uri, result.valid_loss_after)

Inputs, under ``<model_uri>`` (``spec.model_uri``): ``data/train.txt`` (the ``epochs``
reshuffled copies already baked in: ONE pass is made over it), ``data/valid.txt``,
``data/stats.json``. Outputs:

* ``progress.json``: step, total_steps, epoch, loss, tokens_per_second, eta_seconds,
  status, updated_at... written by rank 0 every few seconds (the operator's status).
* ``checkpoints/<run name>/step-NNNNNNN/``: Ray Train checkpoints holding the DeepSpeed
  engine state (model, optimizer, LR schedule) of every rank plus ``botfleet_state.json``;
  the three newest are kept. The run name is deterministic (model id + a fingerprint of
  the settings and data), so running the same request again resumes from the newest one.
* ``model/``: the fine-tuned model (fp32, gathered from the ZeRO shards) and tokenizer in
  Hugging Face format, with the reference's generation settings in
  ``task_specific_params`` and, because transformers 5 pipelines ignore that, also in
  ``generation_config.json`` (do_sample, top_p...); ``model/samples.json``
  (seeded sample predictions) and ``model/training.json`` (hyperparameters and metrics).

Layout of this module: the driver (:func:`train`) checks the inputs, starts or joins Ray
and runs a ``TorchTrainer``; every worker runs :class:`_Worker`. The pure parts (the
DeepSpeed config, packing, the plan of steps, the LR schedule, the ETA) live in
:mod:`botfleet_jobs.train_plan`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

from botfleet.api import BotSpec, TrainingSpec, WorkerDefaults
from botfleet.layout import Layout
from botfleet.storage import S3Config, Storage, StorageError, join

from .base_model import BaseModelError, check_base_model, load_base_model
from .train_plan import (
    IGNORE_INDEX,
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
)

log = logging.getLogger("botfleet.trainer")

# The reference's generation settings, saved with the model.
GENERATION_SETTINGS = {
    "do_sample": True,
    "min_length": 10,
    "max_length": 160,
    "temperature": 1.0,
    "top_p": 0.95,
    "prefix": "<|endoftext|>",
}
TASK_SPECIFIC_PARAMS = {"text-generation": GENERATION_SETTINGS}
SAMPLE_PROMPTS = ("My dream is", "I think that", "The best thing about")
STATE_FILE = "botfleet_state.json"  # in every checkpoint, next to DeepSpeed's files
OOM_ADVICE = (
    "reduce batchSizePerWorker or blockSize (use gradientAccumulation to keep the batch),"
    " use zeroStage 3 or more workers, use bf16, or give the workers more memory"
)


def local_worker_defaults() -> WorkerDefaults:
    """The worker shape of a request run without the operator (``botfleet run``, the trainer
    CLI) that leaves it out: one worker, with a GPU when this machine has one. Under the
    operator the job receives a spec with its installation's defaults already filled in."""
    import torch

    return WorkerDefaults(gpus_per_worker=1 if torch.cuda.is_available() else 0)


class TrainingError(RuntimeError):
    """The training job failed; the message is one readable line (or a few) saying why."""


@dataclass
class TrainResult:
    model_uri: str  # <output>/<model-id>
    model_folder: str  # <model_uri>/model
    checkpoints: str  # <model_uri>/checkpoints/<run_name>
    run_name: str
    steps: int
    total_steps: int
    resumed_from_step: int
    tokens: int
    valid_loss_before: float | None
    valid_loss_after: float | None
    perplexity_before: float | None
    perplexity_after: float | None
    train_loss: float | None
    duration_seconds: float
    samples: list = field(default_factory=list)
    training: dict = field(default_factory=dict)  # model/training.json as written


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def one_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())


def is_out_of_memory(error: BaseException) -> bool:
    """torch.OutOfMemoryError on accelerators; on CPU the allocator raises a RuntimeError."""
    try:
        import torch

        if isinstance(error, torch.OutOfMemoryError):
            return True
    except ImportError:  # pragma: no cover
        pass
    if isinstance(error, (RuntimeError, MemoryError)):
        text = str(error).lower()
        return isinstance(error, MemoryError) or "out of memory" in text or "can't allocate memory" in text
    return False


def oom_error(error: BaseException, where: str) -> TrainingError:
    return TrainingError(f"out of memory {where}: {one_line(error)[:300]}; {OOM_ADVICE}")


# =========================================================================== the driver


@dataclass(frozen=True)
class JobConfig:
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
    sample_prompts: tuple = SAMPLE_PROMPTS
    samples_per_prompt: int = 1
    started_at: str = ""
    # Wall-clock marks (time.time()) for the start-up breakdown in training.json.
    called_at: float = 0.0  # train() was called
    ray_ready_at: float = 0.0  # Ray was started or joined


def train(
    spec: BotSpec,
    storage_config: S3Config | None,
    *,
    on_progress: Callable[[dict], None] | None = None,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    cpus_per_worker: int | None = None,
    ray_temp_dir: str | None = None,
    include_dashboard: bool | None = None,
    checkpoint_every_steps: int = 50,
    progress_every_seconds: float = 5.0,
    poll_seconds: float = 2.0,
    max_failures: int = 0,
    sample_prompts: tuple = SAMPLE_PROMPTS,
    samples_per_prompt: int = 1,
) -> TrainResult:
    """Fine-tune ``spec.training.base_model`` on the dataset under ``spec.model_uri``.

    Ray: an already initialised Ray is used as is; otherwise ``ray_address`` (or
    ``RAY_ADDRESS``) is joined; otherwise a local Ray is started with ``num_cpus`` (default:
    all cores; ``ray_temp_dir`` keeps its files apart; ``include_dashboard`` as in
    ``ray.init``: without the dashboard Ray Train's placement-group cleaner warns every
    second that the state API is unavailable, harmlessly) and shut down at the end.
    ``cpus_per_worker`` defaults to ``spec.resources.cpus_per_worker``, capped on a local
    Ray to what fits; a worker shape the spec leaves out is :func:`local_worker_defaults`. ``on_progress(progress_dict)`` is called on this thread's behalf from
    a poller thread whenever progress.json changes. ``max_failures``: how many times Ray
    Train restarts the workers (from the newest checkpoint) after a failure.

    Raises :class:`TrainingError` (one readable message) on any failure; checkpoints
    already written stay.
    """
    started = time.time()
    spec = local_worker_defaults().resolve(spec)
    training = spec.training
    storage = Storage(storage_config)
    layout = Layout(spec.model_uri)

    # ---- pre-flight: fail before any worker starts
    data_digest, epochs = _check_dataset(storage, layout, training)
    try:
        check_base_model(training.base_model, storage)
    except BaseModelError as error:
        raise TrainingError(str(error)) from None
    fingerprint = run_fingerprint(training, training.workers, data_digest)
    name = run_name(spec.model_id, fingerprint)

    import ray

    started_ray = _ensure_ray(ray_address, num_cpus, ray_temp_dir, include_dashboard)
    ray_ready_at = time.time()
    poller = None
    try:
        on_gpu = training.gpus_per_worker > 0
        cpus = cpus_per_worker or spec.resources.cpus_per_worker
        if started_ray:  # a local Ray: fit the workers into it
            total = int(ray.cluster_resources().get("CPU", 1))
            cpus = max(1, min(cpus, total // training.workers))
        job = JobConfig(
            model_id=spec.model_id,
            model_uri=spec.model_uri,
            training=training,
            epochs=epochs,
            fingerprint=fingerprint,
            run_name=name,
            storage_config=storage_config,
            on_gpu=on_gpu,
            threads=cpus,
            checkpoint_every_steps=checkpoint_every_steps,
            progress_every_seconds=progress_every_seconds,
            sample_prompts=tuple(sample_prompts),
            samples_per_prompt=samples_per_prompt,
            started_at=now_iso(),
            called_at=started,
            ray_ready_at=ray_ready_at,
        )
        trainer = _make_trainer(job, storage, layout, cpus, max_failures)
        if on_progress is not None:
            poller = _ProgressPoller(storage, layout.progress, on_progress, poll_seconds, since=job.started_at)
            poller.start()
        try:
            trainer.fit()
        except Exception as error:  # noqa: BLE001 - Ray wraps everything; unwrap below
            message = describe_failure(error)
            _mark_failed(storage, layout, message)
            raise TrainingError(message) from None
    finally:
        if poller is not None:
            poller.stop()
        if started_ray:
            ray.shutdown()

    try:
        record = storage.read_json(layout.training)
        samples = storage.read_json(layout.samples).get("samples", [])
    except StorageError as error:
        raise TrainingError(f"training finished but its results cannot be read: {error}") from None
    return TrainResult(
        model_uri=spec.model_uri,
        model_folder=layout.model,
        checkpoints=join(layout.checkpoints, name),
        run_name=name,
        steps=record["steps"],
        total_steps=record["total_steps"],
        resumed_from_step=record["resumed_from_step"],
        tokens=record["tokens"],
        valid_loss_before=record["valid_loss_before"],
        valid_loss_after=record["valid_loss_after"],
        perplexity_before=record["perplexity_before"],
        perplexity_after=record["perplexity_after"],
        train_loss=record["train_loss"],
        duration_seconds=time.time() - started,
        samples=samples,
        training=record,
    )


def _check_dataset(storage: Storage, layout: Layout, training: TrainingSpec) -> tuple[str, int]:
    """(digest of the data, epochs baked in); TrainingError when the dataset is unusable."""
    digest = hashlib.sha256()
    for uri in (layout.train_txt, layout.valid_txt):
        try:
            data = storage.read_bytes(uri)
        except StorageError as error:
            raise TrainingError(f"dataset unreadable: {error} (has the data stage run for this bot?)") from None
        if uri == layout.train_txt and not data.replace(b"<|endoftext|>", b"").strip():
            raise TrainingError(f"dataset unusable: {uri} holds no text")
        digest.update(hashlib.sha256(data).digest())
    epochs = training.epochs
    try:
        stats = storage.read_json(layout.stats)
        epochs = int(stats.get("epochs") or epochs)
    except StorageError:
        log.warning("%s missing or unreadable: assuming %d epochs are baked into train.txt", layout.stats, epochs)
    return digest.hexdigest(), epochs


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


def _ensure_ray(address: str | None, num_cpus: int | None, temp_dir: str | None, include_dashboard: bool | None) -> bool:
    """Use, join or start Ray; True when this call started a local one."""
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        return False
    # Local workers must import botfleet and botfleet_jobs like this process does.
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    import botfleet

    paths = [here, os.path.dirname(os.path.dirname(os.path.abspath(botfleet.__file__)))]
    existing = [os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths + existing))}
    ray.init(
        num_cpus=num_cpus or os.cpu_count() or 1,
        include_dashboard=include_dashboard,
        _temp_dir=temp_dir,
        runtime_env={"env_vars": env},
        configure_logging=False,
    )
    return True


def _make_trainer(job: JobConfig, storage: Storage, layout: Layout, cpus: int, max_failures: int):
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    filesystem, path = storage.pyarrow_target(layout.checkpoints)
    resources = {"CPU": cpus}
    if job.on_gpu:
        resources["GPU"] = job.training.gpus_per_worker
    return TorchTrainer(
        _train_loop,
        train_loop_config={"job": job},
        scaling_config=ScalingConfig(
            num_workers=job.training.workers, use_gpu=job.on_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=job.run_name,
            storage_path=path,
            storage_filesystem=filesystem,
            checkpoint_config=CheckpointConfig(num_to_keep=3),
            failure_config=FailureConfig(max_failures=max_failures),
        ),
    )


def describe_failure(error: BaseException) -> str:
    """A readable message for what ``trainer.fit()`` raised (Ray wraps worker errors)."""
    failures = getattr(error, "worker_failures", None)
    if failures:
        parts = []
        for rank in sorted(failures):
            cause = failures[rank]
            cause = getattr(cause, "_base_exc", cause)  # UserExceptionWithTraceback
            parts.append((rank, cause))
        # Ranks usually fail the same way (or the others fail *because* one did): show
        # the first TrainingError, else rank 0's error.
        ours = [p for p in parts if isinstance(p[1], TrainingError)]
        rank, cause = (ours or parts)[0]
        if isinstance(cause, TrainingError):
            return str(cause)
        if is_out_of_memory(cause):
            return str(oom_error(cause, f"on training worker {rank}"))
        return f"training worker {rank} failed: {_describe_cause(cause)}"
    controller = getattr(error, "controller_failure", None)
    if controller is not None:
        return f"training failed in Ray Train's controller: {_describe_cause(controller)}"
    return f"training failed: {_describe_cause(error)}"


def _describe_cause(cause: BaseException) -> str:
    name = type(cause).__name__
    text = one_line(cause)
    inner = getattr(cause, "health_check_failure", None)  # WorkerHealthCheckFailedError
    if inner is not None:
        text = one_line(inner)
    died = inner is not None or "ActorDied" in name or "ActorUnavailable" in name
    if died or "died unexpectedly" in text:
        # Ray's text is a page (actor ids, namespaces...): keep its exit detail.
        detail = re.search(r"Worker exit detail: ([^.]*\.?)", text)
        reason = detail.group(1).rstrip(".") if detail else text[:300]
        return f"the worker process died ({reason}); if the OS killed it for memory, {OOM_ADVICE}"
    return f"{name}: {text[:600]}"


def _mark_failed(storage: Storage, layout: Layout, message: str) -> None:
    """Record the failure in progress.json (best effort: the error itself matters more)."""
    try:
        try:
            progress = storage.read_json(layout.progress)
        except StorageError:
            progress = {}
        progress.update(status="failed", error=message, updated_at=now_iso())
        storage.write_json(layout.progress, progress)
    except Exception:  # noqa: BLE001
        log.warning("could not record the failure in %s", layout.progress, exc_info=True)


class _ProgressPoller:
    """Calls ``callback(progress)`` whenever progress.json changes, from a daemon thread.
    A file last updated before ``since`` (an earlier attempt's) is not reported."""

    def __init__(self, storage: Storage, uri: str, callback: Callable[[dict], None], seconds: float, since: str = ""):
        self.storage, self.uri, self.callback, self.seconds = storage, uri, callback, seconds
        self.since = since
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="botfleet-progress", daemon=True)
        self._last = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._poll()  # the final state

    def _run(self) -> None:
        while not self._stop.wait(self.seconds):
            self._poll()

    def _poll(self) -> None:
        try:
            progress = self.storage.read_json(self.uri)
        except StorageError:
            return
        if str(progress.get("updated_at", "")) < self.since:
            return
        key = json.dumps(progress, sort_keys=True)
        if key != self._last:
            self._last = key
            try:
                self.callback(progress)
            except Exception:  # noqa: BLE001 - a broken callback must not stop training
                log.warning("on_progress callback failed", exc_info=True)


# =========================================================================== the workers


def _train_loop(config: dict) -> None:
    """Ray Train's entry point on every worker."""
    _Worker(config["job"]).run()


class _Worker:
    """One Ray Train worker: load, (resume), evaluate, train, checkpoint, save."""

    def __init__(self, job: JobConfig) -> None:
        import ray.train

        self.job = job
        context = ray.train.get_context()
        self.rank = context.get_world_rank()
        self.world = context.get_world_size()
        self.storage = Storage(job.storage_config)
        self.layout = Layout(job.model_uri)
        self.workdir = tempfile.mkdtemp(prefix="botfleet-train-")
        self.progress: dict = {}
        self._last_progress_write = 0.0
        self.engine = self.plan = self.block_size = None  # set while running

    # ------------------------------------------------------------------ main flow

    def run(self) -> None:
        try:
            self._run()
        except TrainingError:
            raise
        except Exception as error:
            if is_out_of_memory(error):
                raise oom_error(error, f"on training worker {self.rank}") from error
            raise
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _run(self) -> None:
        self._setup_runtime()
        started = time.time()
        marks = [("worker_group_start", started)]
        self._write_progress(status="loading", force=True)
        model, tokenizer = self._load_model()
        marks.append(("model_load", time.time()))
        self._load_data(tokenizer)
        marks.append(("data_load", time.time()))
        engine = self.engine = self._deepspeed(model)
        marks.append(("deepspeed_init", time.time()))
        state = self._resume(engine)
        marks.append(("checkpoint_resume", time.time()))
        self.progress.update(
            model_id=self.job.model_id,
            run_name=self.job.run_name,
            total_steps=self.plan.total_steps,
            epochs=self.plan.epochs,
            world_size=self.world,
            block_size=self.block_size,
            resumed_from_step=state["step"],
            last_checkpoint_step=state["step"] or None,
        )
        if "valid_loss_before" not in state:  # a resumed run has it from its checkpoint
            self._write_progress(status="evaluating", step=state["step"], force=True)
            state["valid_loss_before"] = self._evaluate(engine)
        marks.append(("evaluation_before", time.time()))
        self.startup_seconds = startup_breakdown(self.job.called_at, self.job.ray_ready_at, marks)
        start_step = state["step"]
        self._train(engine, state)
        self._finish(engine, model, tokenizer, state, start_step, started)

    def _load_model(self):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            folder = load_base_model(self.job.training.base_model, self.storage, self.workdir)
        except BaseModelError as error:
            raise TrainingError(str(error)) from None
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        config = model.config
        n_positions = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
        self.block_size = effective_block_size(self.job.training.block_size, n_positions)
        return model, tokenizer

    def _load_data(self, tokenizer) -> None:
        """Every rank tokenizes the whole text (a person's posts: small) and makes the same
        plan; each then trains on its own slots of it."""
        training = self.job.training
        try:
            train_text = self.storage.read_text(self.layout.train_txt)
            valid_text = self.storage.read_text(self.layout.valid_txt)
        except StorageError as error:
            raise TrainingError(f"dataset unreadable: {error}") from None
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.train_blocks, self.train_lengths = pack_blocks(tokenize(tokenizer, train_text), self.block_size, pad_id)
        self.valid_blocks, self.valid_lengths = pack_blocks(tokenize(tokenizer, valid_text), self.block_size, pad_id)
        if len(self.train_blocks) == 0:
            raise TrainingError(f"dataset unusable: {self.layout.train_txt} makes no training sequence")
        self.plan = TrainPlan(
            n_blocks=len(self.train_blocks),
            world_size=self.world,
            micro_batch=training.batch_size_per_worker,
            gradient_accumulation=training.gradient_accumulation,
            epochs=self.job.epochs,
            seed=training.seed,
            checkpoint_every_steps=self.job.checkpoint_every_steps,
        )
        # tokens_done[s]: real (unpadded) tokens trained in the first s steps, all ranks
        per_step = self.train_lengths[self.plan.order()].reshape(self.plan.total_steps, -1).sum(axis=1)
        self.tokens_done = [0] + [int(n) for n in per_step.cumsum()]

    def _train(self, engine, state: dict) -> None:
        """The optimizer steps left after ``state["step"]``; updates ``state`` in place."""
        import torch

        job, plan = self.job, self.plan
        batches = plan.rank_batches(self.rank)
        start_step = step = state["step"]
        torch.manual_seed(job.training.seed + start_step)  # dropout
        prior_seconds = state.get("train_seconds", 0.0)
        run_start = time.time()
        window: list[float] = []  # step losses since progress.json was last written
        micro_losses: list[float] = []
        engine.train()
        self._write_progress(status="training", step=step, loss=None, force=True, run=(0, run_start))
        for micro in range(start_step * plan.gradient_accumulation, plan.micro_steps):
            ids, mask, labels = self._batch(batches[micro])
            loss = engine(input_ids=ids, attention_mask=mask, labels=labels).loss
            engine.backward(loss)
            engine.step()
            micro_losses.append(float(loss.detach()))
            if (micro + 1) % plan.gradient_accumulation:
                continue
            step += 1
            step_loss = self._mean_over_ranks(sum(micro_losses) / len(micro_losses))
            micro_losses.clear()
            window.append(step_loss)
            state["train_loss_sum"] = state.get("train_loss_sum", 0.0) + step_loss
            state["train_loss_steps"] = state.get("train_loss_steps", 0) + 1
            state["last_loss"] = step_loss
            lr = engine.get_lr()[0]
            checkpoint = plan.is_checkpoint_step(step)
            if self._write_progress(
                status="training", step=step, loss=sum(window) / len(window), learning_rate=lr,
                force=checkpoint, run=(step - start_step, run_start),
            ):
                window.clear()
            if checkpoint:
                state["step"] = step
                state["train_seconds"] = prior_seconds + (time.time() - run_start)
                self._checkpoint(engine, state)
        state["step"] = step
        state["train_seconds"] = prior_seconds + (time.time() - run_start)

    def _finish(self, engine, model, tokenizer, state: dict, start_step: int, started: float) -> None:
        """Validation after, the final model (all ranks gather it), then rank 0 writes
        the samples, training.json and the last progress."""
        job, training, step = self.job, self.job.training, state["step"]
        self._write_progress(status="evaluating", step=step, force=True)
        loss_before, loss_after = state["valid_loss_before"], self._evaluate(engine)
        self._write_progress(status="saving", step=step, force=True)
        model_dir = os.path.join(self.workdir, "final")
        self._save_final_model(engine, model, tokenizer, model_dir)
        if self.rank != 0:
            return
        samples = self._samples(model_dir)
        steps_counted = state.get("train_loss_steps")
        record = {
            "model_id": job.model_id,
            "base_model": training.base_model,
            "hyperparameters": self._hyperparameters(),
            "deepspeed": deepspeed_config(training, self.world, job.on_gpu),
            "plan": self.plan.to_dict(),
            "run_name": job.run_name,
            "fingerprint": job.fingerprint,
            "steps": step,
            "total_steps": self.plan.total_steps,
            "resumed_from_step": start_step,
            "tokens": self.tokens_done[step],
            "valid_loss_before": loss_before,
            "valid_loss_after": loss_after,
            "perplexity_before": perplexity(loss_before),
            "perplexity_after": perplexity(loss_after),
            "train_loss": state["train_loss_sum"] / steps_counted if steps_counted else None,  # mean over all steps
            "final_loss": state.get("last_loss"),
            "train_seconds": state["train_seconds"],  # optimizer steps only, all attempts
            "duration_seconds": time.time() - started,  # this attempt's worker time
            "started_at": job.started_at,
            "finished_at": now_iso(),
            "startup_seconds": self.startup_seconds,  # this attempt: train() call to first step
        }
        # Model files first, training.json last: its presence means the model is complete.
        self.storage.upload_dir(model_dir, self.layout.model)
        self.storage.write_json(self.layout.samples, {"seed": training.seed, "settings": GENERATION_SETTINGS, "samples": samples})
        self.storage.write_json(self.layout.training, record)
        self._write_progress(
            status="succeeded", step=step, loss=state.get("last_loss"), eta_seconds=0.0,
            valid_loss_before=loss_before, valid_loss_after=loss_after, force=True,
        )

    def _mean_over_ranks(self, value: float) -> float:
        if self.world == 1:
            return value
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([value], dtype=torch.float64, device=self.engine.device)
        dist.all_reduce(tensor)
        return float(tensor[0]) / self.world

    # ------------------------------------------------------------------ pieces

    def _setup_runtime(self) -> None:
        job = self.job
        if not job.on_gpu:
            os.environ.setdefault("DS_ACCELERATOR", "cpu")  # skips probing for GPUs (and its warning)
        import torch

        if not job.on_gpu:
            # One intra-op thread per CPU Ray gave this worker: Ray sets OMP_NUM_THREADS,
            # but torch may already have sized its pool; more threads than CPUs thrash.
            torch.set_num_threads(max(1, job.threads))
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
        if not job.on_gpu:
            # DeepSpeed's CPU backend JIT-compiles its shared-memory all-reduce op on first
            # use (21 s on a fresh machine, i.e. every new pod). Only inference_all_reduce
            # uses it; training collectives go through torch.distributed (gloo). DeepSpeed
            # keeps this dict for the process, so marking the op incompatible skips the build.
            try:
                import deepspeed.ops

                deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
            except Exception:  # noqa: BLE001 - an older/newer DeepSpeed: just pay the compile
                pass

    def _deepspeed(self, model):
        import deepspeed
        import torch

        config = deepspeed_config(self.job.training, self.world, self.job.on_gpu)
        total = self.plan.total_steps

        def schedule(optimizer):
            return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: cosine_factor(step, total))

        engine, _optimizer, _loader, _scheduler = deepspeed.initialize(
            model=model, model_parameters=model.parameters(), config=config, lr_scheduler=schedule
        )
        return engine

    def _resume(self, engine) -> dict:
        """Load the newest checkpoint Ray Train hands us (if any); return the run state."""
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return {"step": 0}
        with checkpoint.as_directory() as folder:
            state_path = os.path.join(folder, STATE_FILE)
            with open(state_path, encoding="utf-8") as f:
                state = json.load(f)
            if state.get("fingerprint") != self.job.fingerprint:
                raise TrainingError(
                    f"checkpoint {checkpoint.path} was made with other settings or data"
                    f" ({state.get('fingerprint')} != {self.job.fingerprint})"
                )
            load_path, _client = engine.load_checkpoint(folder, tag=state["tag"])
            if load_path is None:
                raise TrainingError(f"checkpoint {checkpoint.path}: DeepSpeed could not load tag {state['tag']}")
        log.info("rank %d resumed from step %d (%s)", self.rank, state["step"], checkpoint.path)
        return state

    def _checkpoint(self, engine, state: dict) -> None:
        import ray.train
        from ray.train import Checkpoint

        step = state["step"]
        tag = f"step{step}"
        folder = tempfile.mkdtemp(prefix=f"ckpt-r{self.rank}-", dir=self.workdir)
        try:
            state = {**state, "tag": tag, "fingerprint": self.job.fingerprint, "saved_at": now_iso()}
            engine.save_checkpoint(folder, tag=tag, client_state={"botfleet": state})
            if self.rank == 0:
                with open(os.path.join(folder, STATE_FILE), "w", encoding="utf-8") as f:
                    json.dump(state, f, indent=2)
            has_files = any(files for _d, _s, files in os.walk(folder))
            metrics = {
                "step": step,
                "epoch": self.plan.epoch_at(step),
                "loss": state.get("last_loss"),
                "valid_loss_before": state.get("valid_loss_before"),
            }
            metrics = {k: v for k, v in metrics.items() if v is not None}
            ray.train.report(
                metrics,
                checkpoint=Checkpoint.from_directory(folder) if has_files else None,
                checkpoint_dir_name=f"step-{step:07d}",
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.progress["last_checkpoint_step"] = step
        self._write_progress(force=True)

    def _batch(self, indices):
        import torch

        ids = torch.from_numpy(self.train_blocks[indices])
        lengths = torch.from_numpy(self.train_lengths[indices])
        mask = (torch.arange(ids.shape[1])[None, :] < lengths[:, None]).long()
        labels = ids.masked_fill(mask == 0, IGNORE_INDEX)
        device = self.engine.device
        return ids.to(device), mask.to(device), labels.to(device)

    def _evaluate(self, engine) -> float | None:
        """Mean validation loss per predicted token, all ranks together (None: no data)."""
        import torch
        import torch.distributed as dist
        import torch.nn.functional as F

        n = len(self.valid_blocks)
        batch = max(1, self.job.training.batch_size_per_worker)
        totals = torch.zeros(2, dtype=torch.float64, device=engine.device)
        engine.eval()
        with torch.no_grad():
            for indices, weights in eval_batches(n, self.world, self.rank, batch):
                ids = torch.from_numpy(self.valid_blocks[indices]).to(engine.device)
                lengths = torch.from_numpy(self.valid_lengths[indices]).to(engine.device)
                mask = (torch.arange(ids.shape[1], device=engine.device)[None, :] < lengths[:, None]).long()
                logits = engine.module(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
                losses = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
                keep = mask[:, 1:].to(torch.float64) * torch.tensor(weights, dtype=torch.float64, device=engine.device)[:, None]
                totals[0] += (losses.to(torch.float64) * keep).sum()
                totals[1] += keep.sum()
        engine.train()
        if self.world > 1:
            dist.all_reduce(totals)
        return float(totals[0] / totals[1]) if totals[1] > 0 else None

    def _save_final_model(self, engine, model, tokenizer, folder: str) -> None:
        """The trained weights in fp32, gathered from the ZeRO shards (every rank takes
        part: the gathers are collective), saved by rank 0 in Hugging Face format."""
        import torch
        from deepspeed.utils import safe_get_full_fp32_param
        from transformers import AutoModelForCausalLM

        state = {}
        for name, param in engine.module.named_parameters():
            full = safe_get_full_fp32_param(param)  # ZeRO-1/2/3 and bf16: the fp32 master
            if full is None:  # plain fp32 parameters (no ZeRO partitioning of them)
                full = param.detach()
            if self.rank == 0:
                state[name] = full.detach().to("cpu", torch.float32).clone()
        if self.rank != 0:
            return
        config = model.config
        config.task_specific_params = TASK_SPECIFIC_PARAMS
        final = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = final.load_state_dict(state, strict=False)
        missing = [k for k in missing if not _is_tied(final, k)]
        if missing or unexpected:
            raise TrainingError(f"final model assembly failed: missing {missing[:5]}, unexpected {unexpected[:5]}")
        final.tie_weights()
        generation = final.generation_config
        for key in ("do_sample", "min_length", "max_length", "temperature", "top_p"):
            setattr(generation, key, GENERATION_SETTINGS[key])
        if generation.max_length and getattr(config, "n_positions", None):
            generation.max_length = min(generation.max_length, config.n_positions)
        if generation.pad_token_id is None:
            generation.pad_token_id = tokenizer.eos_token_id
        final.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    def _samples(self, folder: str) -> list[dict]:
        """Seeded sample predictions with the saved settings (what the pipeline would show)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder)
        if self.job.on_gpu:
            model = model.to(self.engine.device)
        model.eval()
        limit = getattr(model.config, "n_positions", None) or GENERATION_SETTINGS["max_length"]
        prefix_ids = tokenizer(GENERATION_SETTINGS["prefix"], add_special_tokens=False)["input_ids"]
        samples = []
        for i, prompt in enumerate(self.job.sample_prompts):
            ids = tokenizer(GENERATION_SETTINGS["prefix"] + prompt, return_tensors="pt", add_special_tokens=False)
            ids = {k: v.to(model.device) for k, v in ids.items()}
            torch.manual_seed(self.job.training.seed + i)
            with torch.no_grad():
                out = model.generate(
                    **ids,
                    do_sample=True,
                    top_p=GENERATION_SETTINGS["top_p"],
                    temperature=GENERATION_SETTINGS["temperature"],
                    min_length=GENERATION_SETTINGS["min_length"],
                    max_length=min(GENERATION_SETTINGS["max_length"], limit),
                    num_return_sequences=self.job.samples_per_prompt,
                    pad_token_id=tokenizer.eos_token_id,
                )
            for row in out:
                text = tokenizer.decode(row[len(prefix_ids):], skip_special_tokens=True)
                samples.append({"prompt": prompt, "prediction": text})
        return samples

    def _hyperparameters(self) -> dict:
        t, plan, block_size = self.job.training, self.plan, self.block_size
        return {
            "base_model": t.base_model,
            "learning_rate": t.learning_rate,
            "lr_schedule": "cosine, no warm-up",
            "epochs": plan.epochs,
            "block_size": block_size,
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
            "threads_per_worker": self.job.threads if not self.job.on_gpu else None,
        }

    # ------------------------------------------------------------------ progress

    def _write_progress(self, *, force: bool = False, run: tuple[int, float] | None = None, **fields) -> bool:
        """Rank 0 writes progress.json: at most every progress_every_seconds unless forced.
        Returns whether it wrote."""
        if self.rank != 0:
            return False
        self.progress.update({k: v for k, v in fields.items()})
        if "step" in fields:
            step = fields["step"]
            total = self.progress.get("total_steps") or 0
            self.progress["epoch"] = self.plan.epoch_at(step) if total else 0.0
            if run is not None:
                run_steps, run_start = run
                seconds = time.time() - run_start
                start = step - run_steps
                tokens = self.tokens_done[step] - self.tokens_done[start]
                self.progress["tokens_per_second"] = tokens / seconds if run_steps and seconds > 0 else None
                self.progress["eta_seconds"] = eta_seconds(run_steps, seconds, total - step)
        now = time.time()
        if not force and now - self._last_progress_write < self.job.progress_every_seconds:
            return False
        document = dict(self.progress)
        document["updated_at"] = now_iso()
        document["started_at"] = self.job.started_at
        try:
            self.storage.write_json(self.layout.progress, document)
        except StorageError as error:  # progress is advisory: never fail training for it
            log.warning("progress not written: %s", error)
            return False
        self._last_progress_write = now
        return True


def _is_tied(model, key: str) -> bool:
    """Whether ``key`` is a weight tied to another (e.g. GPT-2's lm_head to the embeddings)."""
    tied = getattr(model, "_tied_weights_keys", None) or {}
    if isinstance(tied, dict):
        return key in tied
    return key in tied or key.startswith("lm_head.")


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
