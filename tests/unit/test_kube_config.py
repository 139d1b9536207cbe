"""The operator connects where $KUBECONFIG says when it connects, not when the client
library was first imported (the library reads the variable once, at import)."""

from __future__ import annotations

import kubernetes  # noqa: F401 - imported first, as any earlier import of the client would

from botfleet_operator.kube import Kube


def test_kubeconfig_is_read_when_the_operator_connects(tmp_path, monkeypatch):
    config = tmp_path / "config"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:59999'}}]\n"
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(config))
    kube = Kube(pool_size=4)
    assert kube.custom.api_client.configuration.host == "https://127.0.0.1:59999"
