"""Bad request files: one line naming the file (and where in it), exit code 2, bounded
cost, and the same rules as the API server's (the CRD is generated from the same schema)."""

from __future__ import annotations

import time

import pytest

from botfleet import api, cli

GOOD = """apiVersion: botfleet.dev/v1alpha1
kind: BotRequest
metadata: {name: dril}
spec:
  handles:
    - handle: dril
      source: {archive: {uri: s3://uploads/dril.zip}}
  output: {uri: "s3://bots/"}
"""


def error_for(tmp_path, text: str | bytes) -> str:
    path = tmp_path / "bot.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    with pytest.raises(api.ValidationError) as info:
        api.load_request(str(path))
    message = str(info.value)
    assert "\n" not in message and len(message) < 600, message
    assert message.startswith(str(path)), message
    return message[len(str(path)) :]


def test_good_request_loads(tmp_path):
    path = tmp_path / "bot.yaml"
    path.write_text(GOOD)
    assert api.load_request(str(path)).spec.model_id == "dril"


def test_yaml_error_is_file_line_column(tmp_path):
    assert (
        error_for(tmp_path, GOOD.replace("kind: BotRequest", "kind: BotRequest: oops"))
        == ":2:17: mapping values are not allowed here"
    )
    assert error_for(tmp_path, "a: [1, 2\nb: 3\n").startswith(":2:")


def test_not_utf8_names_the_byte(tmp_path):
    offset = GOOD.encode().index(b"dril}") + 2
    assert (
        error_for(tmp_path, GOOD.encode().replace(b"dril}", b"dr\xffil}"))
        == f": not UTF-8 (byte 0xff at offset {offset})"
    )


@pytest.mark.parametrize("text", ["[" * 5000 + "]" * 5000, "a:\n" + "".join(" " * i + "- \n" for i in range(1, 3000))])
def test_deep_nesting_is_refused_by_name(tmp_path, text):
    message = error_for(tmp_path, text)
    assert "nested too deeply" in message or message.startswith(":"), message


def test_duplicate_key_is_refused_as_kubectl_does(tmp_path):
    message = error_for(tmp_path, GOOD.replace("kind: BotRequest\n", "kind: BotRequest\nkind: BotRequest\n"))
    assert message.startswith(":3:1: ") and "duplicate key 'kind'" in message


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ("[dril]", "metadata: must be an object, got list"),
        ("{name: dril, generation: two}", "metadata.generation: must be an integer, got str"),
        ("{name: dril, labels: [a, b]}", "metadata.labels: must be an object, got list"),
        ("{name: dril, labels: {team: 3}}", "metadata.labels.team: must be a string, got int"),
        ("{name: dril, namespace: Bots}", "metadata.namespace: 'Bots' does not match"),
    ],
)
def test_metadata_of_the_wrong_shape_names_the_field(tmp_path, metadata, expected):
    assert expected in error_for(tmp_path, GOOD.replace("metadata: {name: dril}", f"metadata: {metadata}"))


def test_nan_and_infinity_are_refused_as_the_api_server_does(tmp_path):
    for value in (".nan", ".inf", "-.inf"):
        text = GOOD + f"  training: {{learningRate: {value}}}\n"
        assert "spec.training.learningRate: must be a finite number" in error_for(tmp_path, text)


def test_a_trailing_new_line_does_not_pass_a_pattern(tmp_path):
    text = GOOD.replace("- handle: dril", '- handle: "dril\\n"')
    assert "spec.handles[0].handle: 'dril\\n' does not match" in error_for(tmp_path, text)


def test_errors_quote_a_huge_value_cut(tmp_path):
    message = error_for(tmp_path, GOOD.replace("kind: BotRequest", "kind: " + "x" * 1_000_000))
    assert "kind: must be BotRequest, got 'xxx" in message and len(message) < 200


def test_an_alias_bomb_is_answered_quickly_and_briefly(tmp_path):
    # nine levels of nine references: 387 million strings once expanded, a few lines as YAML
    bomb = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for level in "bcdefghi":
        refs = ",".join([f"*{chr(ord(level) - 1)}"] * 9)
        bomb += f"{level}: &{level} [{refs}]\n"
    for target, expected in (
        ("kind: BotRequest", "kind: must be BotRequest, got [[[...], "),
        ("  handles:\n", "spec.handles: at most 3 items"),
    ):
        text = bomb + GOOD.replace(
            target, target.replace("BotRequest", "*i") if "kind" in target else "  handles: *i\n  x:\n"
        )
        started = time.monotonic()
        message = error_for(tmp_path, text)
        assert time.monotonic() - started < 60  # a guard against an exponential walk, not a timing claim
        assert expected in message, message


@pytest.mark.parametrize("uri", ["s3://uploads", "s3://uploads/", "s3://uploads/folder/", "file:///tmp/"])
def test_a_source_uri_must_name_an_object(tmp_path, uri):
    assert "spec.handles[0].source.archive.uri" in error_for(tmp_path, GOOD.replace("s3://uploads/dril.zip", uri))


def test_cli_exit_code_2_and_one_line_for_a_bad_file(tmp_path, capsys):
    path = tmp_path / "bot.yaml"
    path.write_text(GOOD.replace("kind: BotRequest", "kind: BotRequest\nkind: BotRequest"))
    assert cli.main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"botfleet: error: {path}:3:1: ")


def test_merge_keys_are_not_duplicates_and_explicit_keys_win(tmp_path):
    path = tmp_path / "bot.yaml"
    training = "  training:\n    <<: *base\n    epochs: 3\n"
    text = GOOD.replace("spec:\n", "x-base: &base {gpusPerWorker: 0, epochs: 2}\nspec:\n") + training
    path.write_text(text)
    # kubectl accepts merge keys; an explicit key overrides a merged one. (x-base is not a
    # BotRequest field: a top-level key of the document that botfleet does not read.)
    training = api.load_request(str(path)).spec.training
    assert (training.gpus_per_worker, training.epochs) == (0, 3)
