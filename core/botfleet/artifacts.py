"""The files the job writes and the operator reads: one definition both sides use.

Under ``<output>/<model-id>/`` (:class:`botfleet.layout.Layout` names the paths):
``data/stats.json`` (:class:`Stats`), ``progress.json`` (:class:`Progress`),
``model/training.json`` (:class:`TrainingRecord`), ``result.json`` (:class:`Result`),
``owner.json`` (:class:`Owner`) and ``history.json`` (:class:`History`). Each type's
``to_dict()`` is the file's JSON; its ``from_dict()`` reads what any botfleet version
wrote: a missing key is None (or empty), an unknown one is ignored.
``model/training.json`` (:class:`TrainingRecord`), ``model/loss_history.json``
(:class:`TrainingHistory`), ``result.json`` (:class:`Result`) and
``owner.json`` (:class:`Owner`). Each type's ``to_dict()`` is the file's JSON; its
``from_dict()`` reads what any botfleet version wrote: a missing key is None (or empty),
an unknown one is ignored.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from botfleet.api import BotSpec
from botfleet.reasons import Reason


def data_fingerprint(spec: BotSpec) -> str:
    """What decides the dataset: handles and sources, data settings, epochs baked in."""
    relevant = {
        "handles": [asdict(h) for h in spec.handles],
        "data": asdict(spec.data),
        "epochs": spec.training.epochs,
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def _known_fields(cls, data: Any) -> dict:
    """The entries of ``data`` that are fields of ``cls`` (nothing when it is no mapping)."""
    if not isinstance(data, Mapping):
        return {}
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _number(value: Any, kind: type) -> Any:
    """``value`` as an int or float, None when it is missing or no number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------- data/stats.json

COUNTS = ("downloaded", "retweets", "short", "kept")  # per handle, as the model card shows them


@dataclass(frozen=True)
class HandleStats:
    """One handle's posts in the data stage: the card's counts and what was found about it."""

    downloaded: int = 0
    retweets: int = 0
    short: int = 0  # dropped: fewer than three plain words once cleaned
    kept: int = 0
    characters: int = 0  # of kept text
    display_name: str | None = None
    source: str | None = None  # the source kind: archive, dataset, mastodon...

    @classmethod
    def from_dict(cls, data: Any) -> HandleStats:
        known = _known_fields(cls, data)
        for name in (*COUNTS, "characters"):
            known[name] = _number(known.get(name), int) or 0
        return cls(**known)

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTS}


@dataclass(frozen=True)
class Stats:
    """``data/stats.json``: written last by the data stage, so its presence means the dataset
    is complete; ``fingerprint`` (:func:`data_fingerprint`) says which settings made it and
    ``inputs`` from what (by handle: an object's version, or a hash of the posts fetched)."""

    model_id: str = ""
    handles: dict[str, HandleStats] = field(default_factory=dict)  # by the normalized handle
    epochs: int | None = None  # reshuffled copies baked into train.txt
    seed: int | None = None
    train_fraction: float | None = None
    train_characters: int = 0
    valid_characters: int = 0
    warnings: tuple[str, ...] = ()
    fingerprint: str | None = None
    seconds: float | None = None
    botfleet_version: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    new_posts: int | None = None  # a refresh's dataset: posts the one before it did not have

    @classmethod
    def from_dict(cls, data: Any) -> Stats:
        known = _known_fields(cls, data)
        inputs = known.get("inputs") if isinstance(known.get("inputs"), Mapping) else {}
        known["inputs"] = {str(h): str(v) for h, v in inputs.items()}
        handles = known.get("handles") if isinstance(known.get("handles"), Mapping) else {}
        known["handles"] = {str(h): HandleStats.from_dict(counts) for h, counts in handles.items()}
        known["warnings"] = tuple(known.get("warnings") or ())
        return cls(**known)

    def to_dict(self) -> dict:
        return {**asdict(self), "warnings": list(self.warnings)}

    @property
    def kept(self) -> int:
        """Posts kept, all handles together."""
        return sum(h.kept for h in self.handles.values())


# --------------------------------------------------------------------------- progress.json


@dataclass(frozen=True)
class Progress:
    """``progress.json``: the training's rank 0 rewrites it every few seconds; the operator
    shows it in ``status.progress``. A field not known yet is left out of the file."""

    status: str | None = None  # loading, evaluating, training, saving, succeeded, failed
    step: int | None = None
    total_steps: int | None = None
    epoch: float | None = None
    loss: float | None = None  # mean step loss since the last write
    learning_rate: float | None = None
    tokens_per_second: float | None = None
    eta_seconds: float | None = None
    model_id: str | None = None
    run_name: str | None = None
    epochs: int | None = None
    world_size: int | None = None
    block_size: int | None = None
    resumed_from_step: int | None = None
    last_checkpoint_step: int | None = None
    valid_loss_before: float | None = None
    valid_loss_after: float | None = None
    error: str | None = None  # status failed: why
    started_at: str | None = None
    updated_at: str | None = None

    @classmethod
    def from_dict(cls, data: Any) -> Progress:
        known = _known_fields(cls, data)
        for kind, names in ((int, _PROGRESS_INTS), (float, _PROGRESS_FLOATS)):
            for name in names & known.keys():
                known[name] = _number(known[name], kind)
        return cls(**known)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


# Numbers as whatever wrote the file gave them; a reader needs them as numbers.
_PROGRESS_INTS = {
    "step",
    "total_steps",
    "epochs",
    "world_size",
    "block_size",
    "resumed_from_step",
    "last_checkpoint_step",
}
_PROGRESS_FLOATS = {
    "epoch",
    "loss",
    "learning_rate",
    "tokens_per_second",
    "eta_seconds",
    "valid_loss_before",
    "valid_loss_after",
}


# --------------------------------------------------------------------------- model/training.json

METRICS = ("valid_loss_before", "valid_loss_after", "perplexity_before", "perplexity_after", "train_loss")


@dataclass(frozen=True)
class TrainingRecord:
    """``model/training.json``: what the training used and reached; written after the model
    files, so its presence means the model is complete."""

    model_id: str = ""
    base_model: str | None = None
    hyperparameters: dict = field(default_factory=dict)
    deepspeed: dict = field(default_factory=dict)  # the DeepSpeed config
    plan: dict = field(default_factory=dict)  # the plan of steps
    run_name: str | None = None
    fingerprint: str | None = None
    steps: int | None = None
    total_steps: int | None = None
    resumed_from_step: int | None = None
    tokens: int | None = None
    valid_loss_before: float | None = None
    valid_loss_after: float | None = None
    perplexity_before: float | None = None
    perplexity_after: float | None = None
    train_loss: float | None = None  # mean over all steps
    final_loss: float | None = None
    train_seconds: float | None = None  # optimizer steps only, all attempts
    duration_seconds: float | None = None  # this attempt's worker time
    started_at: str | None = None
    finished_at: str | None = None
    startup_seconds: dict = field(default_factory=dict)  # this attempt: train() call to first step
    parrot: dict = field(default_factory=dict)  # botfleet.parrot.ParrotReport, added by the job after training

    @classmethod
    def from_dict(cls, data: Any) -> TrainingRecord:
        return cls(**_known_fields(cls, data))

    def to_dict(self) -> dict:
        return asdict(self)

    def metrics(self) -> dict:
        """The numbers result.json and the status report."""
        return {name: getattr(self, name) for name in METRICS}


# --------------------------------------------------------------------------- model/loss_history.json


@dataclass(frozen=True)
class HistoryPoint:
    """One step of the training: its training loss (mean over the ranks), and the validation
    loss where it was measured (before training, at step 0 of a fresh run, and after it)."""

    step: int
    train_loss: float | None = None
    valid_loss: float | None = None


@dataclass(frozen=True)
class TrainingHistory:
    """``model/loss_history.json``: the losses step by step, for the loss curve (``model/loss.png``)."""

    model_id: str = ""
    points: tuple[HistoryPoint, ...] = ()  # by step

    @classmethod
    def of(cls, model_id: str, train: list, valid: dict) -> TrainingHistory:
        """From ``train``, [step, loss] pairs, and ``valid``, {step: loss} (None: not measured)."""
        losses = {int(step): [float(loss), None] for step, loss in train}
        for step, loss in valid.items():
            if loss is not None:
                losses.setdefault(int(step), [None, None])[1] = float(loss)
        return cls(model_id, tuple(HistoryPoint(s, t, v) for s, (t, v) in sorted(losses.items())))

    @classmethod
    def from_dict(cls, data: Any) -> TrainingHistory:
        known = _known_fields(cls, data)
        points = []
        for point in known.get("points") or ():
            step = _number(point.get("step"), int) if isinstance(point, Mapping) else None
            if step is not None:
                loss = (_number(point.get(name), float) for name in ("train_loss", "valid_loss"))
                points.append(HistoryPoint(step, *loss))
        return cls(str(known.get("model_id") or ""), tuple(points))

    def to_dict(self) -> dict:
        return {"model_id": self.model_id, "points": [asdict(p) for p in self.points]}

    def train_losses(self) -> list[tuple[int, float]]:
        return [(p.step, p.train_loss) for p in self.points if p.train_loss is not None]

    def valid_losses(self) -> list[tuple[int, float]]:
        return [(p.step, p.valid_loss) for p in self.points if p.valid_loss is not None]


# --------------------------------------------------------------------------- result.json

SUCCEEDED, FAILED = "succeeded", "failed"


@dataclass(frozen=True)
class Result:
    """``result.json``: the job's verdict, written last. A failed job says in which stage
    (data, training, publishing), with what error, and the :class:`Reason` the status shows."""

    status: str  # SUCCEEDED or FAILED
    stage: str | None = None
    error: str | None = None
    reason: str | None = None  # a Reason; None in the result of a job older than reasons
    model: str | None = None
    card: str | None = None
    tracking_run_url: str | None = None
    tracking_files: str | None = None  # the local W&B files, uploaded for offline runs
    metrics: dict = field(default_factory=dict)  # METRICS
    version: int | None = None  # the version this training made (history.json)
    new_posts: int | None = None  # a refresh: posts gathered that were not stored; 0: nothing trained
    log: str | None = None  # the job's full log (logs/job-<time>.log)

    @classmethod
    def failed(cls, stage: str, error: str, reason: Reason, log: str | None = None) -> Result:
        return cls(FAILED, stage=stage, error=error, reason=reason, log=log)

    @classmethod
    def from_dict(cls, data: Any) -> Result:
        known = _known_fields(cls, data)
        known.setdefault("status", None)
        known["metrics"] = known.get("metrics") if isinstance(known.get("metrics"), Mapping) else {}
        return cls(**known)

    @property
    def succeeded(self) -> bool:
        return self.status == SUCCEEDED

    @property
    def finished(self) -> bool:
        """Whether the job got to its verdict (a file without one is no result)."""
        return self.status in (SUCCEEDED, FAILED)

    def to_dict(self) -> dict:
        if self.status == FAILED:
            verdict = {"status": FAILED, "stage": self.stage, "error": self.error, "reason": self.reason}
        else:
            verdict = {
                "status": self.status,
                "model": self.model,
                "card": self.card,
                "tracking_run_url": self.tracking_run_url,
                "tracking_files": self.tracking_files,
                "metrics": dict(self.metrics),
                "version": self.version,
                "new_posts": self.new_posts,
            }
        return verdict | ({"log": self.log} if self.log else {})


# --------------------------------------------------------------------------- owner.json


@dataclass(frozen=True)
class Owner:
    """``owner.json``: the BotRequest whose output folder this is (the operator's claim)."""

    namespace: str = ""
    name: str = ""
    uid: str = ""

    @classmethod
    def from_dict(cls, data: Any) -> Owner:
        return cls(**{k: str(v) for k, v in _known_fields(cls, data).items() if v is not None})

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- publish.json

PUBLISHED, REFUSED = "published", "refused"  # and FAILED


@dataclass(frozen=True)
class Publication:
    """``publish.json``: what the last publish to the Hub did (the job's, or the operator's
    retry). Never holds the token. ``reason`` is a :class:`Reason` when it did not publish."""

    status: str | None = None  # PUBLISHED, FAILED or REFUSED
    repo: str | None = None
    url: str | None = None  # the repository's page
    commit: str | None = None
    reason: str | None = None
    error: str | None = None
    attempted_at: str | None = None

    @classmethod
    def from_dict(cls, data: Any) -> Publication:
        return cls(**{k: str(v) for k, v in _known_fields(cls, data).items() if v is not None})

    @property
    def published(self) -> bool:
        return self.status == PUBLISHED

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


# --------------------------------------------------------------------------- history.json


@dataclass(frozen=True)
class Version:
    """One successful training. ``archived``: where its copy of model/ is kept under
    versions/ (None for the latest, which is model/ itself, and for a pruned one)."""

    version: int = 0
    finished_at: str | None = None
    posts: int | None = None  # kept posts it was trained on
    new_posts: int | None = None  # posts its data had that the previous version's did not
    perplexity: float | None = None  # validation perplexity after fine-tuning
    run_name: str | None = None  # the training run: the same run again is no new version
    archived: str | None = None

    @classmethod
    def from_dict(cls, data: Any) -> Version:
        known = _known_fields(cls, data)
        known["version"] = _number(known.get("version"), int) or 0
        for name, kind in (("posts", int), ("new_posts", int), ("perplexity", float)):
            known[name] = _number(known.get(name), kind)
        return cls(**known)


@dataclass(frozen=True)
class History:
    """``history.json``: every version of the bot, oldest first; the job appends one after
    each successful training."""

    versions: tuple[Version, ...] = ()

    @classmethod
    def from_dict(cls, data: Any) -> History:
        versions = _known_fields(cls, data).get("versions")
        items = versions if isinstance(versions, list) else []
        return cls(tuple(v for v in map(Version.from_dict, items) if v.version > 0))

    def to_dict(self) -> dict:
        return {"versions": [asdict(v) for v in self.versions]}

    @property
    def latest(self) -> Version | None:
        return self.versions[-1] if self.versions else None
