"""What a command names a bot by (``botfleet generate TARGET``, publishing): a BotRequest
YAML (its bot in the store), an ``s3://`` or ``file://`` folder, or a local folder. The
folder is a bot's (``<output>/<model id>``, with ``model/`` in it) or a saved model's own
(with ``config.json``). :func:`resolve_target` finds the saved model's files."""

from __future__ import annotations

import os
from dataclasses import dataclass

from botfleet import api
from botfleet.errors import UserError
from botfleet.fleet import read_bot
from botfleet.layout import Layout
from botfleet.storage import Storage, file_uri, join

_REQUEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class TargetPlace:
    """Where a target points, before anything is read from the store."""

    uri: str  # a bot folder or a saved model's folder
    model_id: str | None = None  # known from a request; else the folder's name


@dataclass(frozen=True)
class ModelTarget:
    model_id: str
    files_uri: str  # the saved model's folder: config.json, weights, tokenizer


def target_place(target: str) -> TargetPlace:
    """Where ``target`` points; reads a request file, nothing from the store."""
    if target.startswith(("s3://", "file://")):
        return TargetPlace(target.rstrip("/"))
    if os.path.isfile(target) and target.endswith(_REQUEST_SUFFIXES):
        spec = api.load_request(target).spec
        return TargetPlace(spec.model_uri, spec.model_id)
    if os.path.isdir(target):
        return TargetPlace(file_uri(target))
    raise UserError(
        f"{target}: not a BotRequest file, an s3:// or file:// URI, or a local folder of a bot or a saved model"
    )


def resolve_target(target: str, storage: Storage) -> ModelTarget:
    """The saved model ``target`` names; a :class:`UserError` saying why when there is none
    (an unfinished or failed bot, a folder without a model)."""
    place = target_place(target)
    name = place.uri.rsplit("/", 1)[-1]
    if storage.exists(join(place.uri, "config.json")):  # a saved model's own folder
        parent = place.uri.rsplit("/", 2)[-2] if name == "model" else name
        return ModelTarget(place.model_id or parent, place.uri)
    bot = read_bot(storage, place.uri)
    model_id = place.model_id or name
    if bot is not None and not bot.finished:
        why = bot.result.error if bot.result is not None and bot.result.error else f"it is {bot.state}"
        raise UserError(f"{target}: the bot {model_id} has no model yet ({why})")
    files = Layout(place.uri).model
    if not storage.exists(join(files, "config.json")):
        raise UserError(f"{target}: no saved model at {place.uri} (neither config.json nor model/config.json)")
    return ModelTarget(model_id, files)
