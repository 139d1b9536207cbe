"""The operator's process as an administrator starts it: what it says when it cannot start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import yaml

from tests.fixtures.cluster import free_ports


def test_a_port_in_use_ends_the_operator_with_one_line(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"  # never contacted: the endpoints start before any watch
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    metrics, health = free_ports(2)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "botfleet_operator", "--bind-address", "127.0.0.1"]
            + ["--metrics-port", str(metrics), "--health-port", str(health), "--ready-port", str(port)],
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"botfleet operator: error: cannot listen on 127.0.0.1:{port}: Address already in use"
        " (choose another with --ready-port, or 0 for none)"
    )
