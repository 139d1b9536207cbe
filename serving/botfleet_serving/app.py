"""The fleet's Ray Serve application: one OpenAI-compatible completions API for every bot.

Two deployments. ``Gateway`` is the HTTP ingress (FastAPI): it knows the fleet (scanned
from the output URIs or read from a catalog, re-read periodically), validates requests and
answers errors in OpenAI's shape. ``Generator`` replicas load bots on first use with Ray
Serve's model multiplexing (the gateway routes each request by its model id, so a bot's
requests go to replicas that hold it; each keeps ``models_per_replica`` bots, LRU) and
autoscale on load.

    serve run botfleet_serving.app:build_app output=s3://bots/

Object-store credentials come from the environment (``Storage.from_env``) in every replica.
"""

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from functools import partial

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from ray import serve
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from botfleet.storage import Storage
from botfleet_serving import protocol
from botfleet_serving.catalog import READY, Bot, FleetView, bots_in_catalog, bots_under, model_of
from botfleet_serving.config import ServingConfig, parse_args
from botfleet_serving.protocol import ApiError, CompletionRequest
from botfleet_web.app import mount_fleet_page
from botfleet_web.source import ProvidedSource, StoreSource, provide_source

log = logging.getLogger("botfleet.serving")


# The fleet page's source, provided by the gateway once it knows its output URIs.
PAGE_SOURCE = "botfleet-serve"


def fastapi_app() -> FastAPI:
    """The ingress's HTTP app. Other routes of the same server (the fleet page's router)
    are added here, so they share the port."""
    app = FastAPI(title="botfleet", description="Talk to your bots: OpenAI-compatible completions.")
    mount_fleet_page(app, ProvidedSource(PAGE_SOURCE), completions_url="/v1/completions")
    return app


api = fastapi_app()


def error_response(error: ApiError) -> JSONResponse:
    headers = {"Retry-After": str(max(1, round(error.retry_after)))} if error.retry_after else None
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


# Serve's ingress keeps the module's names as they are here: the class uses none defined below it.
@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class Gateway:
    def __init__(self, generator: DeploymentHandle, args: dict) -> None:
        self.config = parse_args(args)
        storage = Storage.from_env()
        if self.config.catalog:
            read = partial(bots_in_catalog, storage, self.config.catalog)
        else:
            read = partial(bots_under, storage, list(self.config.output))
        self.fleet = FleetView(read, self.config.refresh_s, self.config.retry_after_s)
        provide_source(PAGE_SOURCE, StoreSource(storage, list(self.config.output)))  # no catalog on the page
        self.generator = generator
        self._reading = asyncio.Lock()
        self._background: asyncio.Task | None = None

    async def _read_fleet(self, unknown: bool = False) -> None:
        """Read the fleet when due: the first time and for an unknown id before answering,
        otherwise in the background (requests are answered from the last read)."""
        if not self.fleet.due(unknown):
            return
        if unknown or not self.fleet.read_yet:
            async with self._reading:
                if self.fleet.due(unknown):
                    await asyncio.to_thread(self.fleet.refresh)
        elif self._background is None or self._background.done():
            self._background = asyncio.create_task(asyncio.to_thread(self.fleet.refresh))

    @api.get("/v1/models")
    async def models(self) -> dict:
        await self._read_fleet()
        data = [protocol.model_object(b.model_id, b.state, b.reason, b.created) for b in self.fleet.bots()]
        return {"object": "list", "data": data}

    @api.get("/v1/models/{model_id:path}")
    async def model(self, model_id: str):
        await self._read_fleet()
        try:
            bot = await self._bot(model_id, need_ready=False)
        except ApiError as error:
            return error_response(error)
        return protocol.model_object(bot.model_id, bot.state, bot.reason, bot.created)

    @api.post("/v1/completions")
    async def completions(self, request: Request):
        try:
            completion = protocol.parse_completion_request(
                protocol.parse_json(await request.body()), self.config.limits
            )
            bot = await self._bot(completion.model)
            if completion.stream:
                return await self._streaming(completion, bot)
            return await self._complete(completion, bot)
        except ApiError as error:
            return error_response(error)

    async def _bot(self, model_id: str, need_ready: bool = True) -> Bot:
        await self._read_fleet()
        bot = self.fleet.get(model_id)
        if bot is None:
            await self._read_fleet(unknown=True)  # a bot finished since the last read is served at once
            bot = self.fleet.get(model_id)
        if bot is None:
            raise protocol.unknown_model(model_id, [b.model_id for b in self.fleet.bots()])
        if need_ready and bot.state != READY:
            raise protocol.unavailable(model_id, bot.reason or bot.state, self.config.retry_after_s)
        return bot

    def _handle(self, bot: Bot, stream: bool = False) -> DeploymentHandle:
        return self.generator.options(multiplexed_model_id=bot.multiplexed_id, stream=stream)

    async def _complete(self, completion: CompletionRequest, bot: Bot) -> dict:
        call = self._handle(bot).complete.remote(bot.files_uri, asdict(completion))
        outcome = await self._bounded(call, completion.model)
        generations = self._check(completion.model, outcome)
        return protocol.completion_response(
            protocol.completion_id(),
            completion.model,
            generations["texts"],
            generations["finish_reasons"],
            generations["prompt_tokens"],
            generations["completion_tokens"],
        )

    async def _bounded(self, call, model_id: str):
        try:
            return await asyncio.wait_for(call, self.config.request_timeout_s)
        except BackPressureError as error:
            raise protocol.busy() from error
        except TimeoutError as error:
            raise protocol.timed_out(model_id, self.config.request_timeout_s) from error

    def _check(self, model_id: str, outcome: dict) -> dict:
        """The generator's answer, or its refusal as an ApiError (a broken bot is remembered)."""
        refusal = outcome.get("refused")
        if refusal == "unavailable":
            self.fleet.failed(model_id, outcome["message"])
            raise protocol.unavailable(model_id, outcome["message"], self.config.retry_after_s)
        if refusal == "prompt":
            raise protocol.invalid("prompt", outcome["message"], code="context_length_exceeded")
        self.fleet.succeeded(model_id)
        return outcome

    async def _streaming(self, completion: CompletionRequest, bot: Bot) -> StreamingResponse:
        """Server-sent events as OpenAI streams them. The first piece is awaited before
        answering, so that a refusal (a broken bot, a prompt too long) is a proper error."""
        pieces = self._handle(bot, stream=True).stream.remote(bot.files_uri, asdict(completion))
        first = self._check(completion.model, await self._bounded(anext(pieces), completion.model))
        request_id, created = protocol.completion_id(), int(time.time())

        async def events() -> AsyncIterator[str]:
            piece = first
            try:
                async with asyncio.timeout(self.config.request_timeout_s):
                    while piece is not None:
                        chunk = protocol.stream_chunk(
                            request_id, completion.model, piece["index"], piece["text"], piece["finish_reason"], created
                        )
                        yield f"data: {json.dumps(chunk)}\n\n"
                        piece = await anext(pieces, None)
            except TimeoutError:
                late = protocol.timed_out(completion.model, self.config.request_timeout_s)
                yield f"data: {json.dumps(late.body())}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")


@serve.deployment
class Generator:
    """Generates with the bots; each replica keeps the most recently used ones loaded."""

    def __init__(self, args: dict) -> None:
        config = parse_args(args)
        self.config = config
        self.storage = Storage.from_env()
        self._uris: dict[str, str] = {}

        async def load(model_id: str):
            from botfleet_serving.generation import load_bot

            return await asyncio.to_thread(load_bot, self.storage, self._uris[model_id])

        # Wired here so that the bound comes from the arguments (Serve detects it on the instance).
        self.bot = serve.multiplexed(max_num_models_per_replica=config.models_per_replica)(load)
        self._load = load  # Serve keeps its cache of models on the function it wraps

    async def _loaded(self, files_uri: str):
        from botfleet_serving.generation import BotFilesError

        model_id = serve.get_multiplexed_model_id()
        self._uris[model_id] = files_uri
        try:
            return await self.bot(model_id), None
        except BotFilesError as error:
            return None, {"refused": "unavailable", "message": str(error)}

    def _options(self, request: dict) -> dict:
        return {
            "max_new_tokens": request["max_tokens"],
            "temperature": request["temperature"],
            "top_p": request["top_p"],
            "seed": request["seed"],
            "max_time": self.config.max_generation_s,
            "cap": self.config.max_tokens,
        }

    async def complete(self, files_uri: str, request: dict) -> dict:
        from botfleet_serving.generation import PromptTooLong

        bot, refusal = await self._loaded(files_uri)
        if refusal:
            return refusal
        try:
            generations = await asyncio.to_thread(
                bot.generate, request["prompt"], request["n"], **self._options(request)
            )
        except PromptTooLong as error:
            return {"refused": "prompt", "message": str(error)}
        return asdict(generations)

    async def stream(self, files_uri: str, request: dict) -> AsyncIterator[dict]:
        """Each choice in turn, piece by piece: ``{"index", "text", "finish_reason"}``."""
        from botfleet_serving.generation import PromptTooLong

        bot, refusal = await self._loaded(files_uri)
        if refusal:
            yield refusal
            return
        options = self._options(request)
        following = {**options, "seed": None}  # choices in turn from one seed: the first seeds, the rest follow
        for index in range(request["n"]):
            try:
                pieces = bot.stream(request["prompt"], **(options if index == 0 else following))
                while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
                    yield {"index": index, "text": piece[0], "finish_reason": piece[1]}
            except PromptTooLong as error:
                yield {"refused": "prompt", "message": str(error)}
                return

    def loaded_models(self) -> list[str]:
        """The bots this replica holds, least recently used first (for tests and the bench)."""
        wrapper = getattr(self._load, "__serve_multiplex_wrapper", None)
        return [model_of(key) for key in wrapper.models] if wrapper is not None else []


def build_app(args: dict) -> serve.Application:
    """The application for ``serve run``, Serve's REST API or a RayService (``args`` as in
    :class:`botfleet_serving.config.ServingConfig`)."""
    config: ServingConfig = parse_args(args)
    resources = {"num_cpus": config.replica_cpus, "num_gpus": config.replica_gpus}
    generator = Generator.options(
        autoscaling_config=config.autoscaling,
        max_ongoing_requests=config.max_ongoing_requests,
        max_queued_requests=config.max_queued_requests,
        ray_actor_options=resources,
    ).bind(config.to_args())
    # The gateway only awaits: it takes every request; the generators' queue is the bound.
    return Gateway.options(max_ongoing_requests=1000).bind(generator, config.to_args())
