"""The training job's driver: fine-tune a causal LM on a bot's dataset with Ray Train +
DeepSpeed. :func:`train` checks the inputs, starts or joins Ray, runs a ``TorchTrainer``
whose workers run :func:`botfleet_jobs.train_worker.train_loop`, relays progress.json to
``on_progress`` and returns what the workers wrote.

    from botfleet.api import parse_spec
    from botfleet.storage import S3Config
    from botfleet_jobs.train_driver import TrainOptions, local_worker_defaults, train

    spec = local_worker_defaults().resolve(parse_spec(spec_dict))  # once, where the job starts
    result = train(spec, S3Config.from_env(), TrainOptions(), on_progress=print)
    print(result.model_uri, result.valid_loss_after)

Inputs, under ``<model_uri>`` (``spec.model_uri``): ``data/train.txt`` (the ``epochs``
reshuffled copies already baked in: ONE pass is made over it), ``data/valid.txt``,
``data/stats.json``. Outputs:

* ``progress.json``: step, total_steps, epoch, loss, tokens_per_second, eta_seconds,
  status, updated_at... written by rank 0 every few seconds (the operator's status).
* ``checkpoints/<run name>/step-NNNNNNN/``: see :mod:`botfleet_jobs.train_checkpoint`;
  the three newest are kept. The run name is deterministic (model id + a fingerprint of
  the settings and data), so running the same request again resumes from the newest one.
* ``model/``: the fine-tuned model and tokenizer (:mod:`botfleet_jobs.final_model`),
  ``model/samples.json`` (seeded sample predictions) and ``model/training.json``
  (hyperparameters and metrics).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from botfleet.api import BotSpec, TrainingSpec, WorkerDefaults
from botfleet.layout import Layout
from botfleet.storage import JOB_OUTAGE_WAIT_S, S3Config, Storage, StorageError, join
from botfleet.timestamps import now_iso

from .base_model import BaseModelError, check_base_model
from .train_errors import TrainingError, UnusableInput, describe_failure
from .train_plan import run_fingerprint, run_name
from .train_progress import ProgressPoller, mark_failed
from .train_worker import WorkerConfig, train_loop

log = logging.getLogger("botfleet_jobs.train")


def local_worker_defaults() -> WorkerDefaults:
    """The worker shape of a request run without the operator (``botfleet run``, the trainer
    CLI) that leaves it out: one worker, with a GPU when this machine has one. Under the
    operator the job receives a spec with its installation's defaults already filled in."""
    import torch

    return WorkerDefaults(gpus_per_worker=1 if torch.cuda.is_available() else 0)


@dataclass(frozen=True)
class TrainOptions:
    """How :func:`train` runs: where (Ray) and how often it checkpoints, reports and retries.

    Ray: an already initialised Ray is used as is; otherwise ``ray_address`` (or
    ``RAY_ADDRESS``) is joined; otherwise a local Ray is started with ``num_cpus`` (default:
    all cores; ``ray_temp_dir`` keeps its files apart) and shut down at the end.
    """

    ray_address: str | None = None
    num_cpus: int | None = None
    ray_temp_dir: str | None = None
    cpus_per_worker: int | None = None  # default: spec.resources.cpus_per_worker, capped on a local Ray
    checkpoint_every_steps: int = 50  # and at the end of every epoch; 0: only there
    progress_every_seconds: float = 5.0  # how often rank 0 rewrites progress.json
    poll_seconds: float = 2.0  # how often on_progress's poller reads it
    max_failures: int = 0  # how many times Ray Train restarts the workers (from the newest checkpoint)
    samples_per_prompt: int = 1


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


def train(
    spec: BotSpec,
    storage_config: S3Config | None,
    options: TrainOptions = TrainOptions(),
    *,
    on_progress: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Fine-tune ``spec.training.base_model`` on the dataset under ``spec.model_uri``.

    The spec's worker shape must be resolved (by the operator's defaults, or by
    :func:`local_worker_defaults` where the job starts). ``on_progress(progress_dict)`` is
    called from a poller thread whenever progress.json changes. Raises
    :class:`TrainingError` (one readable message) on any failure; checkpoints already
    written stay.
    """
    called_at = time.time()
    _check_resolved(spec)
    training = spec.training
    storage = Storage(storage_config, outage_wait_s=JOB_OUTAGE_WAIT_S)
    layout = Layout(spec.model_uri)

    # ---- pre-flight: fail before any worker starts
    data_digest, epochs = _check_dataset(storage, layout, training)
    try:
        check_base_model(training.base_model, storage)
    except BaseModelError as error:
        raise UnusableInput(str(error)) from None
    fingerprint = run_fingerprint(training, training.workers, data_digest)
    name = run_name(spec.model_id, fingerprint)

    import ray

    started_ray = _ensure_ray(options)
    ray_ready_at = time.time()
    try:
        config = WorkerConfig(
            model_id=spec.model_id,
            model_uri=spec.model_uri,
            training=training,
            epochs=epochs,
            fingerprint=fingerprint,
            run_name=name,
            storage_config=storage_config,
            on_gpu=training.gpus_per_worker > 0,
            threads=_cpus_per_worker(spec, options, started_ray),
            checkpoint_every_steps=options.checkpoint_every_steps,
            progress_every_seconds=options.progress_every_seconds,
            samples_per_prompt=options.samples_per_prompt,
            started_at=now_iso(),
            called_at=called_at,
            ray_ready_at=ray_ready_at,
        )
        _fit(config, storage, layout, options, on_progress)
    finally:
        if started_ray:
            ray.shutdown()
    return _result(storage, layout, spec, name, called_at)


def _check_resolved(spec: BotSpec) -> None:
    shape = {
        "training.workers": spec.training.workers,
        "training.gpus_per_worker": spec.training.gpus_per_worker,
        "resources.cpus_per_worker": spec.resources.cpus_per_worker,
    }
    missing = [name for name, value in shape.items() if value is None]
    if missing:
        raise ValueError(f"worker shape not resolved ({', '.join(missing)}): apply the WorkerDefaults first")


def _check_dataset(storage: Storage, layout: Layout, training: TrainingSpec) -> tuple[str, int]:
    """(digest of the data, epochs baked in); UnusableInput when the dataset is unusable."""
    digest = hashlib.sha256()
    for uri in (layout.train_txt, layout.valid_txt):
        try:
            data = storage.read_bytes(uri)
        except StorageError as error:
            raise UnusableInput(f"dataset unreadable: {error} (has the data stage run for this bot?)") from None
        if uri == layout.train_txt and not data.replace(b"<|endoftext|>", b"").strip():
            raise UnusableInput(f"dataset unusable: {uri} holds no text")
        digest.update(hashlib.sha256(data).digest())
    epochs = training.epochs
    try:
        stats = storage.read_json(layout.stats)
        epochs = int(stats.get("epochs") or epochs)
    except StorageError:
        log.warning("%s missing or unreadable: assuming %d epochs are baked into train.txt", layout.stats, epochs)
    return digest.hexdigest(), epochs


def _ensure_ray(options: TrainOptions) -> bool:
    """Use, join or start Ray; True when this call started a local one."""
    import ray

    if ray.is_initialized():
        return False
    address = options.ray_address or os.environ.get("RAY_ADDRESS")
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
        num_cpus=options.num_cpus or os.cpu_count() or 1,
        _temp_dir=options.ray_temp_dir,
        runtime_env={"env_vars": env},
        configure_logging=False,
    )
    return True


def _cpus_per_worker(spec: BotSpec, options: TrainOptions, local_ray: bool) -> int:
    cpus = options.cpus_per_worker or spec.resources.cpus_per_worker
    if local_ray:  # fit the workers into it
        import ray

        total = int(ray.cluster_resources().get("CPU", 1))
        cpus = max(1, min(cpus, total // spec.training.workers))
    return cpus


def _fit(
    config: WorkerConfig,
    storage: Storage,
    layout: Layout,
    options: TrainOptions,
    on_progress: Callable[[dict], None] | None,
) -> None:
    """Run the workers to the end; on failure record it in progress.json and raise TrainingError."""
    trainer = _make_trainer(config, storage, layout, options.max_failures)
    poller = None
    if on_progress is not None:
        poller = ProgressPoller(storage, layout.progress, on_progress, options.poll_seconds, since=config.started_at)
        poller.start()
    try:
        trainer.fit()
    except Exception as error:  # noqa: BLE001 - Ray wraps everything; unwrap below
        message = describe_failure(error)
        mark_failed(storage, layout.progress, message)
        raise TrainingError(message) from None
    finally:
        if poller is not None:
            poller.stop()


def _make_trainer(config: WorkerConfig, storage: Storage, layout: Layout, max_failures: int):
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    filesystem, path = storage.pyarrow_target(layout.checkpoints)
    resources = {"CPU": config.threads}
    if config.on_gpu:
        resources["GPU"] = config.training.gpus_per_worker
    return TorchTrainer(
        train_loop,
        train_loop_config={"config": config},
        scaling_config=ScalingConfig(
            num_workers=config.training.workers, use_gpu=config.on_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=config.run_name,
            storage_path=path,
            storage_filesystem=filesystem,
            checkpoint_config=CheckpointConfig(num_to_keep=3),
            failure_config=FailureConfig(max_failures=max_failures),
        ),
    )


def _result(storage: Storage, layout: Layout, spec: BotSpec, name: str, called_at: float) -> TrainResult:
    """What the workers wrote (training.json, samples.json) as a TrainResult."""
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
        duration_seconds=time.time() - called_at,
        samples=samples,
        training=record,
    )
