"""Faults on real parts: a data stage killed mid-upload leaves nothing that looks complete,
and the rerun finishes (a real S3 server; the Mastodon API is the local stand-in)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import yaml

from bench.synthetic import write_archive
from botfleet import api
from botfleet.layout import Layout
from tests.fakes import FakeAccount, FakeSocialApis
from tests.fixtures.cluster import wait_for


def request_file(tmp_path, storage, mastodon_url: str, max_posts: int) -> str:
    archive = write_archive(tmp_path / "alice.zip", 400, seed=3)
    request = {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": "pair"},
        "spec": {
            "handles": [
                {"handle": "alice", "source": {"archive": {"uri": f"file://{archive}"}}},
                {"handle": "bob", "source": {"mastodon": {"instance": mastodon_url}}},
            ],
            "data": {"maxPosts": max_posts},
            "output": {"uri": storage.root},
        },
    }
    path = tmp_path / "pair.yaml"
    path.write_text(yaml.safe_dump(request))
    return str(path)


def prepare(path: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "botfleet.cli", "prepare", path],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_data_stage_killed_mid_upload_leaves_nothing_complete_and_the_rerun_finishes(tmp_path, storage, embedded_s3):
    env = {**os.environ, **embedded_s3.config.to_env(), "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    layout = Layout(f"{storage.root}/alice-bob")
    with FakeSocialApis([FakeAccount("bob", posts=400)]) as apis:
        # A complete dataset of other settings exists: it must stop looking complete at once.
        done = subprocess.run(
            [sys.executable, "-m", "botfleet.cli", "prepare", request_file(tmp_path, storage, apis.url, 300)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        old_stats = storage.read_json(layout.stats)

        # Bob's instance says "later" for a minute: the job waits there, alice's posts fetched
        # (the posts are written once every handle's are in: the inputs decide whether to).
        apis.throttle("/api/v1/accounts/lookup", 1, headers={"Retry-After": "60"})
        path = request_file(tmp_path, storage, apis.url, 350)
        asked = len(apis.requests("/api/v1/accounts/lookup"))
        process = prepare(path, env)
        try:
            wait_for(
                lambda: len(apis.requests("/api/v1/accounts/lookup")) > asked, 120, what="the wait on bob's instance"
            )
            assert not storage.exists(layout.stats), "a dataset being rebuilt looks complete"
            process.send_signal(signal.SIGKILL)
        finally:
            process.kill()
            process.wait(timeout=30)
        assert not storage.exists(layout.stats)

        rerun = subprocess.run(
            [sys.executable, "-m", "botfleet.cli", "prepare", path],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert rerun.returncode == 0, rerun.stderr
    stats = storage.read_json(layout.stats)
    assert stats["fingerprint"] != old_stats["fingerprint"]
    assert {h: c["downloaded"] for h, c in stats["handles"].items()} == {"alice": 350, "bob": 350}
    assert storage.read_bytes(layout.raw("bob")).count(b"\n") == 350
