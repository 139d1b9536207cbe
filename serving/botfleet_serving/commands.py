"""``botfleet generate`` and ``botfleet serve`` (the CLI in core hands over here, so that
core stays free of torch and Ray Serve)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import sys
import tempfile
import threading

from botfleet.errors import UserError
from botfleet.fleet import FAILED
from botfleet.model_target import ModelTarget
from botfleet.storage import Storage
from botfleet_serving.protocol import ApiError, CompletionRequest, Limits, parse_completion_request

# What one `botfleet generate` may ask for is bounded by the model's context alone.
_NO_LIMITS = Limits(max_tokens=1_000_000, max_n=1000, max_prompt_chars=10_000_000)

# Generated text is shown on a terminal: no escape sequences or other control characters.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str) -> str:
    return _CONTROL.sub("\ufffd", text)


def generate(storage: Storage, target: ModelTarget, args) -> int:
    from botfleet_serving.generation import PromptTooLong, load_bot

    request = _checked(target.model_id, args)
    bot = load_bot(storage, target.files_uri)
    try:
        generations = bot.generate(
            request.prompt,
            n=request.n,
            max_new_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed,
        )
    except PromptTooLong as error:
        raise UserError(str(error)) from error
    texts = [args.prompt + text for text in generations.texts]
    if args.json:
        print(json.dumps({"model": target.model_id, "prompt": args.prompt, "generations": texts}))
        return 0
    for i, text in enumerate(texts, 1):
        if len(texts) > 1:
            print(f"--- {i}/{len(texts)}")
        print(terminal_safe(text))
    return 0


def _checked(model_id: str, args) -> CompletionRequest:
    """The options checked as the API checks a request (without the server's limits)."""
    fields = {"n": args.n, "max_tokens": args.max_new_tokens, "temperature": args.temperature, "top_p": args.top_p}
    body = {"model": model_id, "prompt": args.prompt, "seed": args.seed, **fields}
    try:
        return parse_completion_request(body, _NO_LIMITS)
    except ApiError as error:
        option = {"max_tokens": "--max-new-tokens", "n": "-n", "prompt": "PROMPT"}.get(error.param, f"--{error.param}")
        option = option.replace("_", "-")
        raise UserError(f"{option}: {error.message}") from error


def serve_locally(storage: Storage, output: str, host: str, port: int) -> int:
    """The fleet under ``output`` on a local Ray until Ctrl-C; the store's settings travel
    to the replicas in their environment."""
    import ray
    from ray import serve

    from botfleet_serving.app import build_app
    from botfleet_serving.catalog import bots_under

    bots = bots_under(storage, [output])  # a bad URI or an unreachable store: said before Ray starts
    env = storage.config.to_env() if storage.config is not None else {}
    temp_dir = tempfile.mkdtemp(prefix="bfserve-", dir="/tmp")  # short: Ray's socket paths
    ray.init(include_dashboard=False, _temp_dir=temp_dir, runtime_env={"env_vars": env}, configure_logging=False)
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(build_app({"output": output}), name="botfleet", blocking=False)
        url = f"http://{host}:{port}"
        print(f"serving {output} at {url}/v1 (OpenAI-compatible completions; Ctrl-C stops)")
        for bot in bots.values():
            why = f" ({terminal_safe(bot.reason)})" if bot.state == FAILED else ""
            print(f"  {terminal_safe(bot.model_id)}: {bot.state}{why}")
        if not bots:
            print("  no bot there yet: bots that finish are served as they appear")
        print(f"try: curl {url}/v1/completions -H 'Content-Type: application/json' -d {_example(bots)}")
        _wait_for_interrupt()
    finally:
        print("stopping...", file=sys.stderr)
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
    return 0


def _example(bots: dict) -> str:
    model = next((b.model_id for b in bots.values() if b.ready), "MODEL_ID")
    return shlex.quote(json.dumps({"model": terminal_safe(model), "prompt": "My dream is", "max_tokens": 40}))


def _wait_for_interrupt() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
