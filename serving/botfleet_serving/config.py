"""The serving application's arguments (``build_app(args)``), checked before anything starts.
Torch-free and pure."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from botfleet_serving.protocol import Limits


class ConfigError(ValueError):
    """Arguments the application cannot start with; the message names them."""


@dataclass(frozen=True)
class ServingConfig:
    output: tuple[str, ...] = ()  # bot folders are found under these URIs
    catalog: str | None = None  # or: exactly the bots this JSON file names
    models_per_replica: int = 4  # bots kept loaded per replica (LRU)
    max_tokens: int = 256  # new tokens per choice a request may ask for
    max_n: int = 8  # choices per request
    max_prompt_chars: int = 4000
    max_generation_s: float = 30.0  # generation stops after this long (finish_reason "length")
    request_timeout_s: float = 120.0  # a request's whole time, loading the bot included
    refresh_s: float = 15.0  # how often the fleet (or catalog) is read again
    retry_after_s: float = 30.0  # a bot that failed to load is answered 503 this long before a retry
    min_replicas: int = 1  # autoscaling of the generating replicas
    max_replicas: int = 4
    target_ongoing_requests: float = 2.0
    max_ongoing_requests: int = 4  # per generating replica
    max_queued_requests: int = 64  # beyond this, 503 "busy" instead of an ever longer queue
    replica_cpus: float = 1.0
    replica_gpus: float = 0.0

    @property
    def limits(self) -> Limits:
        return Limits(max_tokens=self.max_tokens, max_n=self.max_n, max_prompt_chars=self.max_prompt_chars)

    @property
    def autoscaling(self) -> dict:
        return {
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
        }

    def to_args(self) -> dict:
        """The arguments that rebuild this config (what travels to the replicas)."""
        args = {name: getattr(self, name) for name in _options()}
        args["output"] = list(self.output)
        if self.catalog:
            args["catalog"] = self.catalog
        return args


def parse_args(args: dict | None) -> ServingConfig:
    """The config ``args`` describe, or :class:`ConfigError` naming what is wrong."""
    args = dict(args or {})
    unknown = sorted(set(args) - set(_options()) - {"output", "catalog"})
    if unknown:
        raise ConfigError(f"unknown serving argument(s) {', '.join(unknown)}; known: {', '.join(_known())}")
    output = args.pop("output", None)
    catalog = args.pop("catalog", None)
    outputs = (output,) if isinstance(output, str) else tuple(output or ())
    if not all(isinstance(uri, str) and uri for uri in outputs):
        raise ConfigError("'output' is a URI or a list of URIs")
    if bool(outputs) == bool(catalog):
        raise ConfigError("give exactly one of 'output' (URIs of bot folders) or 'catalog' (URI of a catalog file)")
    if catalog is not None and not (isinstance(catalog, str) and catalog):
        raise ConfigError("'catalog' is the URI of a JSON file")
    values = {name: _option(name, value) for name, value in args.items()}
    config = ServingConfig(output=tuple(outputs), catalog=catalog, **values)
    if config.min_replicas > config.max_replicas:
        raise ConfigError(f"min_replicas ({config.min_replicas}) is above max_replicas ({config.max_replicas})")
    return config


def _option(name: str, value: Any) -> Any:
    kind = int if _options()[name] == "int" else float
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if not numeric or (kind is int and not isinstance(value, int)):
        raise ConfigError(f"'{name}' must be {'an integer' if kind is int else 'a number'}, not {value!r}")
    zero_ok = name in ("min_replicas", "replica_gpus")  # scale to zero; no GPU
    if value < 0 or (value == 0 and not zero_ok):
        raise ConfigError(f"'{name}' must be {'0 or more' if zero_ok else 'positive'}, not {value!r}")
    return kind(value)


def _options() -> dict[str, str]:
    """The numeric options and their type's name (the annotations are strings here)."""
    return {f.name: f.type for f in fields(ServingConfig) if f.name not in ("output", "catalog")}


def _known() -> list[str]:
    return ["output", "catalog", *_options()]
