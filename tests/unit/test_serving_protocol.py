"""The serving API's pure parts: request validation against the limits, OpenAI's error and
response shapes, the application's arguments, and the fleet view's refresh and failures."""

from __future__ import annotations

import pytest

from botfleet_serving import protocol
from botfleet_serving.catalog import (
    READY,
    UNAVAILABLE,
    Bot,
    CatalogError,
    FleetView,
    bot_from_folder,
    model_of,
    parse_catalog,
)
from botfleet_serving.config import ConfigError, parse_args
from botfleet_serving.protocol import ApiError, Limits, parse_completion_request

LIMITS = Limits(max_tokens=50, max_n=4, max_prompt_chars=100)


def _error(body) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse_completion_request(body, LIMITS)
    return caught.value


def test_a_full_request_is_parsed():
    body = {"model": "dril", "prompt": "hi", "n": 2, "max_tokens": 50, "temperature": 0.7, "top_p": 1, "seed": 3}
    request = parse_completion_request({**body, "stream": True}, LIMITS)
    assert (request.n, request.max_tokens, request.temperature, request.top_p, request.seed) == (2, 50, 0.7, 1.0, 3)
    assert request.stream and request.model == "dril" and request.prompt == "hi"


def test_defaults_are_left_to_the_model():
    request = parse_completion_request({"model": "dril", "prompt": ["one prompt"]}, LIMITS)
    assert request.prompt == "one prompt" and request.n == 1
    assert request.max_tokens is request.temperature is request.top_p is request.seed is None


@pytest.mark.parametrize(
    "body, param, words",
    [
        ({"prompt": "hi"}, "model", "required"),
        ({"model": "m"}, "prompt", "required"),
        ({"model": "m", "prompt": ""}, "prompt", "required"),
        ({"model": "m", "prompt": "x" * 101}, "prompt", "at most 100"),
        ({"model": "m", "prompt": ["a", "b"]}, "prompt", "one prompt"),
        ({"model": "m", "prompt": "hi", "max_tokens": 51}, "max_tokens", "at most 50"),
        ({"model": "m", "prompt": "hi", "max_tokens": 0}, "max_tokens", "at least 1"),
        ({"model": "m", "prompt": "hi", "n": 5}, "n", "at most 4"),
        ({"model": "m", "prompt": "hi", "n": "2"}, "n", "integer"),
        ({"model": "m", "prompt": "hi", "n": True}, "n", "integer"),
        ({"model": "m", "prompt": "hi", "temperature": 3}, "temperature", "between 0 and 2"),
        ({"model": "m", "prompt": "hi", "temperature": float("nan")}, "temperature", "number"),
        ({"model": "m", "prompt": "hi", "top_p": 0}, "top_p", "greater than 0"),
        ({"model": "m", "prompt": "hi", "seed": 1.5}, "seed", "integer"),
        ({"model": "m", "prompt": "hi", "stream": "yes"}, "stream", "boolean"),
    ],
)
def test_a_bad_request_is_a_400_naming_the_field(body, param, words):
    error = _error(body)
    assert error.status == 400 and error.param == param and words in error.message
    assert error.body()["error"] == {
        "message": error.message,
        "type": "invalid_request_error",
        "param": param,
        "code": error.code,
    }


def test_a_body_that_is_not_a_json_object():
    assert _error([1, 2]).status == 400
    with pytest.raises(ApiError) as caught:
        protocol.parse_json(b"{not json")
    assert caught.value.code == "invalid_json" and caught.value.status == 400


def test_unknown_model_names_the_known_ones():
    error = protocol.unknown_model("nope", ["a", "b"])
    assert error.status == 404 and error.param == "model" and "a, b" in error.message
    many = protocol.unknown_model("nope", [f"bot{i:02}" for i in range(30)])
    assert "and 10 more" in many.message and "GET /v1/models" in many.message
    assert "no bot is served yet" in protocol.unknown_model("nope", []).message


def test_unavailable_and_busy_are_503s_that_say_when_to_retry():
    error = protocol.unavailable("dril", "its model files are missing", retry_after=30)
    assert error.status == 503 and "its model files are missing" in error.message and error.retry_after == 30
    assert protocol.busy().status == 503 and protocol.timed_out("dril", 5).status == 504


def test_completion_response_is_openais_shape():
    response = protocol.completion_response("cmpl-1", "dril", ["a", "b"], ["stop", "length"], 3, 7, created=5)
    assert [c["text"] for c in response["choices"]] == ["a", "b"]
    assert [c["index"] for c in response["choices"]] == [0, 1]
    assert response["usage"] == {"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10}
    assert response["object"] == "text_completion" and response["created"] == 5


def test_model_objects_carry_the_state():
    assert protocol.model_object("dril", "ready")["state"] == "ready"
    assert protocol.model_object("x", "training", "not finished")["reason"] == "not finished"


# --------------------------------------------------------------------------- build_app's arguments


def test_arguments_with_defaults():
    config = parse_args({"output": "s3://bots/", "models_per_replica": 2, "max_replicas": 3})
    assert config.output == ("s3://bots/",) and config.models_per_replica == 2
    assert config.autoscaling == {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 2.0}
    assert parse_args(config.to_args()) == config
    assert parse_args({"catalog": "s3://b/catalog.json"}).catalog == "s3://b/catalog.json"
    assert parse_args({"output": ["s3://a", "s3://b"]}).output == ("s3://a", "s3://b")


@pytest.mark.parametrize(
    "args, words",
    [
        ({}, "exactly one"),
        ({"output": "s3://a", "catalog": "s3://c"}, "exactly one"),
        ({"output": "s3://a", "max_token": 5}, "unknown serving argument(s) max_token"),
        ({"output": "s3://a", "max_n": 1.5}, "'max_n' must be an integer"),
        ({"output": "s3://a", "refresh_s": 0}, "'refresh_s' must be positive"),
        ({"output": "s3://a", "replica_gpus": -1}, "'replica_gpus' must be 0 or more"),
        ({"output": "s3://a", "min_replicas": 5}, "above max_replicas"),
        ({"output": [""]}, "list of URIs"),
    ],
)
def test_bad_arguments_are_named(args, words):
    with pytest.raises(ConfigError, match=None) as caught:
        parse_args(args)
    assert words in str(caught.value)


# --------------------------------------------------------------------------- the fleet view


def test_parse_catalog():
    assert parse_catalog({"bots": {"a": "s3://b/a"}}) == {"a": "s3://b/a"}
    for bad in ({}, {"bots": []}, {"bots": {"a": ""}}, [1]):
        with pytest.raises(CatalogError):
            parse_catalog(bad)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_fleet_is_read_again_when_due_and_kept_when_unreadable():
    reads: list[dict] = [{"a": Bot("a", "s3://b/a/model", READY)}]
    clock = Clock()
    view = FleetView(lambda: reads[-1], refresh_s=10, retry_after_s=30, clock=clock)
    assert view.due()
    view.refresh()
    assert [b.model_id for b in view.bots()] == ["a"] and not view.due()
    clock.now += 3
    assert view.due(unknown=True) and not view.due()
    clock.now += 10
    assert view.due()

    def unreadable():
        from botfleet.storage import StorageError

        raise StorageError("s3://b: connection refused")

    view._read = unreadable
    view.refresh()
    assert view.error and view.get("a").ready  # the last good list stays


def test_a_bot_that_failed_to_load_is_unavailable_until_the_retry():
    clock = Clock()
    view = FleetView(lambda: {"a": Bot("a", "s3://b/a/model", READY)}, 10, retry_after_s=30, clock=clock)
    view.refresh()
    view.failed("a", "its model files are missing")
    assert view.get("a").state == UNAVAILABLE and view.get("a").reason == "its model files are missing"
    assert view.bots()[0].state == UNAVAILABLE
    clock.now += 31
    assert view.get("a").ready  # tried again
    view.failed("a", "still broken")
    view.succeeded("a")
    assert view.get("a").ready


def test_a_bot_made_again_is_loaded_again():
    from botfleet.artifacts import Result
    from botfleet.fleet import FAILED, SUCCEEDED, BotFolder

    def bot(result: Result):
        return bot_from_folder(BotFolder("dril", "s3://b/dril", SUCCEEDED if result.succeeded else FAILED, result))

    first = bot(Result("succeeded", model="s3://b/dril/model", metrics={"perplexity_after": 3.0}))
    again = bot(Result("succeeded", model="s3://b/dril/model", metrics={"perplexity_after": 2.5}))
    assert first.ready and first.files_uri == "s3://b/dril/model"
    assert first.multiplexed_id != again.multiplexed_id and model_of(again.multiplexed_id) == "dril"
    assert model_of("team#x#abc") == "team#x" and model_of("plain") == "plain"
    failed = bot(Result.failed("training", "out of memory", "TrainingFailed"))
    assert failed.state == "failed" and "out of memory" in failed.reason and failed.multiplexed_id == "dril"
