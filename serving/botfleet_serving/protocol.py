"""The OpenAI-compatible completions protocol, as pure functions: request validation against
the server's limits, the response objects, and errors in OpenAI's shape
(``{"error": {"message", "type", "param", "code"}}``). Torch-free: the ingress uses it.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server."""

    max_tokens: int = 256  # new tokens per choice
    max_n: int = 8  # choices per request
    max_prompt_chars: int = 4000


class ApiError(Exception):
    """An error answered in OpenAI's shape with an HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,  # seconds, for a Retry-After header
    ):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.retry_after = retry_after

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid(param: str | None, message: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, type="invalid_request_error", param=param, code=code)


def unknown_model(model: str, known: list[str]) -> ApiError:
    shown = ", ".join(known[:20]) + (f" and {len(known) - 20} more" if len(known) > 20 else "")
    listing = f"known models: {shown}" if known else "no bot is served yet"
    return ApiError(
        404,
        f"The model {model!r} does not exist ({listing}; GET /v1/models lists them).",
        type="invalid_request_error",
        param="model",
        code="model_not_found",
    )


def unavailable(model: str, reason: str, retry_after: float | None = None) -> ApiError:
    return ApiError(
        503,
        f"The model {model!r} is unavailable: {reason}",
        type="server_error",
        code="model_unavailable",
        retry_after=retry_after,
    )


def busy(retry_after: float = 1.0) -> ApiError:
    return ApiError(
        503, "The server is busy; try again shortly.", type="server_error", code="overloaded", retry_after=retry_after
    )


def timed_out(model: str, seconds: float) -> ApiError:
    return ApiError(
        504, f"The model {model!r} did not answer within {seconds:g} s.", type="server_error", code="timeout"
    )


@dataclass(frozen=True)
class CompletionRequest:
    model: str
    prompt: str
    n: int = 1
    max_tokens: int | None = None  # None: the model's saved generation settings
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stream: bool = False


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise invalid(None, f"The request body is not JSON: {error}", code="invalid_json") from error


def parse_completion_request(body: Any, limits: Limits) -> CompletionRequest:
    """A validated request, or an :class:`ApiError` (400) naming the offending field."""
    if not isinstance(body, dict):
        raise invalid(None, "The request body must be a JSON object.", code="invalid_json")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model", "'model' is required: the id of a bot (GET /v1/models lists them).", "missing_field")
    prompt = _prompt(body.get("prompt"), limits)
    n = _integer(body, "n", 1, limits.max_n)
    max_tokens = _integer(body, "max_tokens", 1, limits.max_tokens)
    temperature = _number(body, "temperature", 0.0, 2.0)
    top_p = _number(body, "top_p", 0.0, 1.0)
    if top_p == 0.0:
        raise invalid("top_p", "'top_p' must be greater than 0.")
    seed = _integer(body, "seed", -(2**63), 2**63 - 1)
    stream = body.get("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise invalid("stream", "'stream' must be a boolean.")
    return CompletionRequest(model, prompt, n or 1, max_tokens, temperature, top_p, seed, bool(stream))


def _prompt(value: Any, limits: Limits) -> str:
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        value = value[0]  # OpenAI clients may send a one-element list
    if value is None or value == "":
        raise invalid("prompt", "'prompt' is required: the text the bot continues.", "missing_field")
    if not isinstance(value, str):
        raise invalid("prompt", "'prompt' must be a string (one prompt per request).")
    if len(value) > limits.max_prompt_chars:
        raise invalid(
            "prompt", f"'prompt' is {len(value)} characters; this server takes at most {limits.max_prompt_chars}."
        )
    return value


def _integer(body: dict, name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(name, f"'{name}' must be an integer.")
    if not low <= value <= high:
        limit = f"at most {high} on this server" if value > high else f"at least {low}"
        raise invalid(name, f"'{name}' is {value}; it must be {limit}.")
    return value


def _number(body: dict, name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise invalid(name, f"'{name}' must be a number.")
    if not low <= value <= high:
        raise invalid(name, f"'{name}' is {value}; it must be between {low:g} and {high:g}.")
    return float(value)


# --------------------------------------------------------------------------- responses


def completion_id() -> str:
    return f"cmpl-{uuid.uuid4().hex}"


def completion_response(
    request_id: str,
    model: str,
    texts: list[str],
    finish_reasons: list[str],
    prompt_tokens: int,
    completion_tokens: int,
    created: int | None = None,
) -> dict:
    """OpenAI's completion object; ``texts`` are the continuations (the prompt is not repeated)."""
    return {
        "id": request_id,
        "object": "text_completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": [
            {"index": i, "text": text, "logprobs": None, "finish_reason": reason}
            for i, (text, reason) in enumerate(zip(texts, finish_reasons, strict=True))
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def stream_chunk(request_id: str, model: str, index: int, text: str, finish_reason: str | None, created: int) -> dict:
    """One server-sent event's object of a streamed completion."""
    return {
        "id": request_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason}],
    }


def model_object(model_id: str, state: str, reason: str | None = None, created: int = 0) -> dict:
    """One entry of GET /v1/models: OpenAI's fields plus the bot's state (and why, if not ready)."""
    entry = {"id": model_id, "object": "model", "created": created, "owned_by": "botfleet", "state": state}
    if reason:
        entry["reason"] = reason
    return entry
