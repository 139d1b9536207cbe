"""Which bots the server knows, and in what state: every bot under the output URIs
(:func:`botfleet.fleet.scan_fleet`), or exactly those a catalog file names (the operator
writes it on a cluster). Torch-free: the ingress holds it and re-reads it periodically.

A catalog is ``{"bots": {"<model id>": "<bot folder uri>"}}``; the folder is a bot's
(``<output>/<model id>``, holding result.json and model/) or a saved model's own folder
(holding config.json).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from botfleet.errors import one_line
from botfleet.fleet import BotFolder, read_bot, scan_fleet
from botfleet.storage import NotFound, Storage, StorageError

log = logging.getLogger("botfleet.serving")

READY = "ready"  # finished: served
UNAVAILABLE = "unavailable"  # finished, but its files could not be loaded (the reason says why)


@dataclass(frozen=True)
class Bot:
    model_id: str
    files_uri: str  # the saved model's folder: config.json, weights, tokenizer
    state: str  # READY, UNAVAILABLE, or the fleet's state of an unfinished bot (training, failed...)
    reason: str | None = None  # why it is not READY
    created: int = 0  # unix time the bot was listed first
    version: str = ""  # changes when the bot is made again (its result.json)

    @property
    def ready(self) -> bool:
        return self.state == READY

    @property
    def multiplexed_id(self) -> str:
        """What replicas cache the loaded bot under: a bot made again is loaded again."""
        return f"{self.model_id}#{self.version}" if self.version else self.model_id


def model_of(multiplexed_id: str) -> str:
    return multiplexed_id.rpartition("#")[0] or multiplexed_id


class CatalogError(ValueError):
    """A catalog file that is not ``{"bots": {id: uri}}``."""


def bot_from_folder(folder: BotFolder) -> Bot:
    """What the server makes of one bot folder's files."""
    files = (folder.result.model if folder.result else None) or folder.layout.model
    if folder.finished:
        verdict = json.dumps(folder.result.to_dict(), sort_keys=True).encode()
        return Bot(folder.model_id, files, READY, version=hashlib.sha256(verdict).hexdigest()[:12])
    if folder.result is not None and folder.result.error:
        return Bot(folder.model_id, files, folder.state, f"the bot failed: {one_line(folder.result.error, 300)}")
    return Bot(folder.model_id, files, folder.state, f"not finished yet ({folder.state})")


def bots_under(storage: Storage, output_uris: list[str]) -> dict[str, Bot]:
    """Every bot under the output URIs; where two outputs hold the same model id, the first wins."""
    bots: dict[str, Bot] = {}
    for output in output_uris:
        for folder in scan_fleet(storage, output):
            if folder.model_id in bots:
                log.warning("bot %s under %s is shadowed by the one listed first", folder.model_id, output)
                continue
            bots[folder.model_id] = bot_from_folder(folder)
    return bots


def parse_catalog(document: object) -> dict[str, str]:
    """The catalog's ``{model id: folder uri}``, or :class:`CatalogError` saying what is wrong."""
    bots = document.get("bots") if isinstance(document, dict) else None
    if not isinstance(bots, dict):
        raise CatalogError('a catalog is a JSON object {"bots": {"<model id>": "<folder uri>", ...}}')
    bad = [key for key, value in bots.items() if not key or not isinstance(value, str) or not value]
    if bad:
        raise CatalogError(f"catalog entries without a folder URI: {', '.join(map(repr, bad[:5]))}")
    return dict(bots)


def bots_in_catalog(storage: Storage, catalog_uri: str) -> dict[str, Bot]:
    """Exactly the bots the catalog names, each in the state its folder shows."""
    try:
        entries = parse_catalog(json.loads(storage.read_bytes(catalog_uri)))
    except ValueError as error:
        raise CatalogError(f"{catalog_uri}: {one_line(error)}") from error
    return {model_id: _catalog_bot(storage, model_id, uri.rstrip("/")) for model_id, uri in sorted(entries.items())}


def _catalog_bot(storage: Storage, model_id: str, uri: str) -> Bot:
    folder = read_bot(storage, uri)
    if folder is not None:
        return replace(bot_from_folder(folder), model_id=model_id)
    if storage.exists(f"{uri}/config.json"):  # a saved model's folder, not a bot's
        return Bot(model_id, uri, READY)
    return Bot(model_id, uri, UNAVAILABLE, f"no bot files at {uri}")


class FleetView:
    """The bots as last read, re-read when older than ``refresh_s`` (or on an unknown id,
    at most every ``min_refresh_s``), with load failures reported for ``retry_after_s``
    instead of loading a broken bot again on every request."""

    def __init__(
        self,
        read: Callable[[], dict[str, Bot]],
        refresh_s: float,
        retry_after_s: float,
        clock: Callable[[], float] = time.monotonic,
        min_refresh_s: float = 2.0,
    ) -> None:
        self._read, self.refresh_s, self.retry_after_s, self._clock = read, refresh_s, retry_after_s, clock
        self.min_refresh_s = min_refresh_s
        self._bots: dict[str, Bot] = {}
        self._read_at: float | None = None
        self._failures: dict[str, tuple[str, float]] = {}  # model id -> (reason, until)
        self._first_seen: dict[str, int] = {}
        self.error: str | None = None  # why the last read failed (the last good list is kept)

    @property
    def read_yet(self) -> bool:
        return self._read_at is not None

    def due(self, unknown: bool = False) -> bool:
        if self._read_at is None:
            return True
        age = self._clock() - self._read_at
        return age >= (self.min_refresh_s if unknown else self.refresh_s)

    def refresh(self) -> None:
        """Read the fleet again (blocking I/O: call it off the event loop)."""
        self._read_at = self._clock()
        try:
            bots = self._read()
        except (StorageError, CatalogError, NotFound) as error:
            self.error = one_line(error)
            log.warning("could not read the fleet: %s", self.error)
            return
        now = int(time.time())
        self._bots = {
            model_id: replace(bot, created=self._first_seen.setdefault(model_id, now)) for model_id, bot in bots.items()
        }
        self.error = None

    def bots(self) -> list[Bot]:
        return [self._with_failure(bot) for bot in sorted(self._bots.values(), key=lambda b: b.model_id)]

    def get(self, model_id: str) -> Bot | None:
        bot = self._bots.get(model_id)
        return None if bot is None else self._with_failure(bot)

    def failed(self, model_id: str, reason: str) -> None:
        self._failures[model_id] = (reason, self._clock() + self.retry_after_s)

    def succeeded(self, model_id: str) -> None:
        self._failures.pop(model_id, None)

    def _with_failure(self, bot: Bot) -> Bot:
        failure = self._failures.get(bot.model_id)
        if failure is None or not bot.ready:
            return bot
        if self._clock() >= failure[1]:  # time to try loading it again
            return bot
        return replace(bot, state=UNAVAILABLE, reason=failure[0])
