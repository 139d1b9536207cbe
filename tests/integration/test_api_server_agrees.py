"""`botfleet validate` and the real API server (with the generated CRD) accept and refuse
the same requests: the CLI never passes what `kubectl apply` would refuse."""

from __future__ import annotations

import copy

import pytest
import yaml

from botfleet import cli

pytestmark = pytest.mark.cluster

GOOD = {
    "apiVersion": "botfleet.dev/v1alpha1",
    "kind": "BotRequest",
    "metadata": {"name": "dril"},
    "spec": {
        "handles": [{"handle": "dril", "source": {"archive": {"uri": "s3://uploads/dril.zip"}}}],
        "training": {"learningRate": 0.0001, "epochs": 4},
        "output": {"uri": "s3://bots/"},
    },
}


HUB = {"repo": "my-org/dril", "tokenSecretRef": {"name": "hf", "key": "token"}, "private": True}


def changed(path: str, value) -> dict:
    """GOOD with the field at ``path`` (dots; list indexes as numbers) set to ``value``."""
    request = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = request
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[int(last) if last.isdigit() else last] = value
    return request


CASES = {
    "good": GOOD,
    "handle with a trailing new line": changed("spec.handles.0.handle", "dril\n"),
    "handle with a leading @": changed("spec.handles.0.handle", "@dril"),
    "source naming a bucket": changed("spec.handles.0.source.archive.uri", "s3://uploads"),
    "source naming a folder": changed("spec.handles.0.source.archive.uri", "s3://uploads/dir/"),
    "output bucket only": changed("spec.output.uri", "s3://bots"),
    "four handles": changed("spec.handles", GOOD["spec"]["handles"] * 4),
    "two sources": changed("spec.handles.0.source.dataset", {"uri": "s3://uploads/x.jsonl"}),
    "unknown field": changed("spec.training.speed", "fast"),
    "negative learning rate": changed("spec.training.learningRate", -1.0),
    "epochs as text": changed("spec.training.epochs", "four"),
    "epochs as a float": changed("spec.training.epochs", 4.5),
    "bad uri scheme": changed("spec.output.uri", "ftp://bots/"),
    "published to the Hub": changed("spec.publish", {"huggingFace": HUB}),
    "Hub repo without an org": changed("spec.publish", {"huggingFace": {**HUB, "repo": "dril"}}),
    "Hub private as text": changed("spec.publish", {"huggingFace": {**HUB, "private": "yes"}}),
    "Hub token inline": changed("spec.publish", {"huggingFace": {**HUB, "token": "hf_x"}}),
    "allowParrot as a number": changed("spec.publish", {"allowParrot": 1}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_and_api_server_agree(case, kube, namespace, tmp_path):
    text = yaml.safe_dump({**CASES[case], "metadata": {"name": "dril", "namespace": namespace}})
    path = tmp_path / "bot.yaml"
    path.write_text(text)
    cli_accepts = cli.main(["validate", str(path)]) == 0
    server = kube.kubectl("apply", "--dry-run=server", "-f", "-", input=text, check=False)
    assert cli_accepts == (server.returncode == 0), (
        f"CLI {'accepts' if cli_accepts else 'refuses'}; server: {server.stderr or server.stdout}"
    )
