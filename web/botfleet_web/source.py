"""Where the page's facts come from: a "fleet source" answers which bots there are, what one
bot's files and (on a cluster) its BotRequest say, and reads a file of a bot's own folder.

:class:`StoreSource` is the object store alone (``botfleet serve`` on a laptop): the bots
are the folders under one output URI (:func:`botfleet.fleet.scan_fleet`).
:class:`ClusterSource` adds the BotRequests (phase, conditions, events) and finds each
request's folder from its spec. Both only read.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from botfleet import api
from botfleet.fleet import BotFolder, read_bot, scan_fleet
from botfleet.storage import NotFound, Storage, StorageError, join

# A model id as botfleet makes them (handles lower-cased, joined by '-'), and nothing else:
# what a URL names is checked before it reaches the store.
MODEL_ID = re.compile(r"^[a-z0-9_][a-z0-9_.-]{0,199}$")
# The only part of a bot's folder the page serves: the published model (its card, pictures
# and files). Data, checkpoints and tracking files stay out of the browser.
SERVED_FOLDER = "model"
_KEY_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_READERS = 16
# The BotRequest phases as the page names them (the words the files' states use).
PAGE_PHASES = dict(
    zip(api.PHASES, ("pending", "preparing", "training", "publishing", "succeeded", "failed", "suspended"), strict=True)
)


@dataclass(frozen=True)
class Request:
    """What the cluster says of a bot: its BotRequest's name, status and events."""

    namespace: str
    name: str
    phase: str | None = None
    reason: str | None = None
    message: str | None = None
    conditions: tuple[dict, ...] = ()
    events: tuple[dict, ...] = ()
    display_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class Bot:
    files: BotFolder
    samples: tuple[dict, ...] = ()
    request: Request | None = None
    model_files: tuple[str, ...] = field(default=())  # keys under model/, on a bot's own page only

    @property
    def model_id(self) -> str:
        return self.files.model_id

    @property
    def phase(self) -> str:
        """The BotRequest's phase on a cluster, else the state the files show."""
        if self.request is not None and self.request.phase:
            return PAGE_PHASES.get(self.request.phase, self.request.phase.lower())
        return self.files.state


def served_key(key: str) -> str | None:
    """``key`` if it names a file of a bot's model folder (``model/...``), else None: no
    ``..``, no hidden or empty segments, no backslashes; nothing outside ``model/``."""
    segments = key.split("/")
    if len(segments) < 2 or segments[0] != SERVED_FOLDER:
        return None
    if not all(_KEY_SEGMENT.match(s) and s not in (".", "..") for s in segments[1:]):
        return None
    return key


class StoreSource:
    """The bots under one or more output URIs, from their files alone (a model id found
    under several is shown from the first)."""

    def __init__(self, storage: Storage, outputs: str | Sequence[str]) -> None:
        self.storage = storage
        self.outputs = [uri.rstrip("/") for uri in ([outputs] if isinstance(outputs, str) else outputs)]

    def bots(self) -> list[Bot]:
        found: dict[str, BotFolder] = {}
        for output in self.outputs:
            for folder in scan_fleet(self.storage, output):
                found.setdefault(folder.model_id, folder)
        return with_samples(self.storage, [Bot(found[model_id]) for model_id in sorted(found)])

    def bot(self, model_id: str, details: bool = True) -> Bot | None:
        """One bot; with ``details``, what its own page shows too (samples, model files)."""
        if not MODEL_ID.match(model_id):
            return None
        for output in self.outputs:
            folder = read_bot(self.storage, join(output, model_id))
            if folder is not None:
                return bot_page_facts(self.storage, Bot(folder)) if details else Bot(folder)
        return None

    def read(self, bot: Bot, key: str) -> bytes:
        return read_model_file(self.storage, bot, key)


class ClusterSource:
    """The BotRequests (``list_requests()``, ``list_events(namespace, name)``: read-only
    calls, see :mod:`botfleet_web.cluster`) with their folders' files."""

    def __init__(
        self,
        storage: Storage,
        list_requests: Callable[[], list[dict]],
        list_events: Callable[[str, str], list[dict]],
    ) -> None:
        self.storage = storage
        self.list_requests = list_requests
        self.list_events = list_events

    def _requests(self) -> list[tuple[str, Request]]:
        """(model URI, request) for every valid BotRequest, sorted by model id."""
        found = []
        for document in self.list_requests():
            try:
                spec = api.parse_request(document).spec
            except (api.ValidationError, ValueError, TypeError, KeyError):
                continue  # the API server took it, this version cannot read it: not shown
            found.append((spec.model_uri, request_of(document, spec)))
        return sorted(found, key=lambda pair: (pair[0].rsplit("/", 1)[-1], pair[1].namespace, pair[1].name))

    def bots(self) -> list[Bot]:
        requests = self._requests()
        with ThreadPoolExecutor(max_workers=_READERS) as pool:
            folders = list(pool.map(lambda pair: read_bot(self.storage, pair[0]), requests))
        bots = [
            Bot(folder or empty_folder(uri), request=req) for (uri, req), folder in zip(requests, folders, strict=True)
        ]
        return with_samples(self.storage, bots)

    def bot(self, model_id: str, details: bool = True) -> Bot | None:
        """One bot; with ``details``, what its own page shows too (events, samples, model files)."""
        if not MODEL_ID.match(model_id):
            return None
        for uri, request in self._requests():
            if uri.rstrip("/").rsplit("/", 1)[-1] == model_id:
                folder = read_bot(self.storage, uri) or empty_folder(uri)
                if not details:
                    return Bot(folder, request=request)
                events = tuple(self.list_events(request.namespace, request.name))
                request = dataclasses.replace(request, events=events)
                return bot_page_facts(self.storage, Bot(folder, request=request))
        return None

    def read(self, bot: Bot, key: str) -> bytes:
        return read_model_file(self.storage, bot, key)


def request_of(document: dict, spec: api.BotSpec) -> Request:
    status = document.get("status") or {}
    meta = document.get("metadata") or {}
    return Request(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        phase=status.get("phase"),
        reason=status.get("reason"),
        message=status.get("message"),
        conditions=tuple(c for c in status.get("conditions") or () if isinstance(c, dict)),
        display_names=tuple(h.display_name for h in spec.handles if h.display_name),
    )


def empty_folder(model_uri: str) -> BotFolder:
    """A request whose folder holds nothing yet."""
    return BotFolder(model_uri.rstrip("/").rsplit("/", 1)[-1], model_uri, "pending")


def read_samples(storage: Storage, folder: BotFolder) -> tuple[dict, ...]:
    """The sample predictions of a finished bot (model/samples.json); none otherwise."""
    if not folder.finished:
        return ()
    try:
        samples = json.loads(storage.read_bytes(folder.layout.samples)).get("samples")
    except (NotFound, ValueError, AttributeError):
        return ()
    return tuple(s for s in samples or () if isinstance(s, dict))


def with_samples(storage: Storage, bots: list[Bot]) -> list[Bot]:
    """``bots`` with their samples read (the reads overlap)."""
    if not bots:
        return []
    with ThreadPoolExecutor(max_workers=min(_READERS, len(bots))) as pool:
        samples = pool.map(lambda bot: read_samples(storage, bot.files), bots)
        return [Bot(bot.files, s, bot.request, bot.model_files) for bot, s in zip(bots, samples, strict=True)]


def bot_page_facts(storage: Storage, bot: Bot) -> Bot:
    """What a bot's own page adds to the gallery's facts: samples and the model's files."""
    try:
        prefix = bot.files.layout.model + "/"
        keys = tuple(SERVED_FOLDER + "/" + uri[len(prefix) :] for uri in storage.list(bot.files.layout.model))
    except StorageError:
        keys = ()
    return Bot(bot.files, read_samples(storage, bot.files), bot.request, keys)


def read_model_file(storage: Storage, bot: Bot, key: str) -> bytes:
    """A file of ``bot``'s model folder by key; NotFound for any key :func:`served_key` refuses."""
    checked = served_key(key)
    if checked is None:
        raise NotFound(f"{key}: not a file of the model folder")
    return storage.read_bytes(join(bot.files.model_uri, checked))


# Sources handed over by name once their owner has started (see ProvidedSource).
_PROVIDED: dict[str, StoreSource | ClusterSource] = {}


def provide_source(name: str, source: StoreSource | ClusterSource) -> None:
    """Make ``source`` what :class:`ProvidedSource` ``name`` reads, in this process."""
    _PROVIDED[name] = source


class ProvidedSource:
    """The source provided under ``name`` later (:func:`provide_source`), looked up at each use.

    For the serving gateway: its routes are declared at import, its output URIs known only
    when its replica starts, and Ray Serve copies the ingress app and the deployment class
    into each replica by value. This module is imported by name there, not copied, so the
    gateway's provide_source and the page's routes meet here.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def _source(self) -> StoreSource | ClusterSource:
        try:
            return _PROVIDED[self.name]
        except KeyError:
            raise StorageError(f"the fleet page's source {self.name!r} is not provided yet") from None

    def bots(self) -> list[Bot]:
        return self._source().bots()

    def bot(self, model_id: str, details: bool = True) -> Bot | None:
        return self._source().bot(model_id, details)

    def read(self, bot: Bot, key: str) -> bytes:
        return self._source().read(bot, key)
