"""The data stage end to end: archives and datasets in, a complete dataset in real S3 out."""

import json
import os
import subprocess
import sys

import pytest

from bench.synthetic import write_archive
from botfleet import api
from botfleet.artifacts import Stats, data_fingerprint
from botfleet.layout import Layout
from botfleet_jobs.data_stage import prepare
from botfleet_jobs.dataset import END_OF_TEXT, NotEnoughText
from botfleet_jobs.job import run_job
from botfleet_jobs.posts import SourceError


def spec_for(handles, output):
    return api.parse_spec({"handles": handles, "output": {"uri": output}})


def archive_handle(name, path):
    return {"handle": name, "source": {"archive": {"uri": f"file://{path}"}}}


@pytest.fixture
def two_archives(tmp_path):
    return [write_archive(tmp_path / f"{name}.zip", 400, seed=i) for i, name in enumerate(["Alice", "bob"])]


def test_prepare_writes_a_complete_dataset(storage, two_archives):
    spec = spec_for(
        [archive_handle("Alice", two_archives[0]), archive_handle("@bob", two_archives[1])], storage.root + "/out"
    )
    stats = prepare(spec, storage, show_progress=False)
    layout = Layout(spec.model_uri)
    assert layout.data == storage.root + "/out/alice-bob/data"
    assert set(storage.list(layout.data)) == {
        layout.raw("alice"),
        layout.raw("bob"),
        layout.train_txt,
        layout.valid_txt,
        layout.stats,
    }
    assert storage.read_json(layout.stats) == stats
    assert Stats.from_dict(stats).to_dict() == stats  # the one definition both sides read
    for counts in stats["handles"].values():
        assert counts["downloaded"] == 400
        assert counts["short"] == counts["downloaded"] - counts["retweets"] - counts["kept"]
        assert counts["retweets"] > 0 and counts["short"] > 0 and counts["kept"] > 0
    raw = [json.loads(line) for line in storage.read_text(layout.raw("alice")).splitlines()]
    assert len(raw) == 400 and {"id", "text", "is_retweet", "created_at"} <= set(raw[0])
    train = storage.read_text(layout.train_txt)
    assert train.startswith(END_OF_TEXT) and "https://" not in train and "RT @" not in train


def test_same_request_same_dataset_and_reuse(storage, two_archives):
    spec = spec_for([archive_handle("alice", two_archives[0])], storage.root)
    layout = Layout(spec.model_uri)
    first = prepare(spec, storage, show_progress=False)
    train = storage.read_text(layout.train_txt)
    storage.delete(layout.train_txt)  # a reused dataset is not rebuilt...
    assert prepare(spec, storage, show_progress=False) == first
    assert not storage.exists(layout.train_txt)
    assert prepare(spec, storage, reuse=False, show_progress=False)["fingerprint"] == data_fingerprint(spec)
    assert storage.read_text(layout.train_txt) == train  # ...and a rebuild is identical


def test_failure_never_leaves_a_complete_looking_dataset(storage, tmp_path, two_archives):
    good = spec_for([archive_handle("alice", two_archives[0])], storage.root)
    prepare(good, storage, show_progress=False)
    stats_uri = Layout(good.model_uri).stats
    # Same model id, different settings, and the source now fails half way.
    (tmp_path / "alice.zip").write_bytes(b"not a zip")
    broken = api.parse_spec(
        {
            "handles": [archive_handle("alice", tmp_path / "alice.zip")],
            "data": {"seed": 7},
            "output": {"uri": storage.root},
        }
    )
    with pytest.raises(SourceError, match="alice"):
        prepare(broken, storage, show_progress=False)
    assert not storage.exists(stats_uri)


def test_too_little_text_is_an_error(storage, tmp_path):
    small = write_archive(tmp_path / "tiny.zip", 20, seed=1)
    with pytest.raises(NotEnoughText, match=r"@tiny has [\d,]+ characters"):
        prepare(spec_for([archive_handle("tiny", small)], storage.root), storage, show_progress=False)


def test_cli_prepare_local_dir(storage, tmp_path, two_archives, embedded_s3):
    request = tmp_path / "bot.yaml"
    request.write_text(
        json.dumps(
            {
                "apiVersion": api.API_VERSION,
                "kind": api.KIND,
                "metadata": {"name": "alice"},
                "spec": {"handles": [archive_handle("alice", two_archives[0])], "output": {"uri": storage.root}},
            }
        )
    )
    env = {**os.environ, **embedded_s3.config.to_env()}
    out = tmp_path / "local"
    done = subprocess.run(
        [sys.executable, "-m", "botfleet.cli", "prepare", str(request), "--local-dir", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Tweets kept" in done.stdout and "@alice" in done.stdout
    stats = json.loads((out / "stats.json").read_text())
    assert set(stats["handles"]["alice"]) >= {"downloaded", "retweets", "short", "kept"}
    assert (out / "train.txt").read_text().startswith(END_OF_TEXT) and (out / "valid.txt").exists()


@pytest.mark.parametrize(
    "source, expected",
    [
        ({"archive": {"uri": "file:///nonexistent/x.zip"}}, "x.zip"),
        ({"archive": {"uri": "s3://no-such-bucket/x.zip"}}, "no-such-bucket"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, storage, embedded_s3, source, expected):
    request = tmp_path / "bot.yaml"
    request.write_text(
        json.dumps(
            {
                "apiVersion": api.API_VERSION,
                "kind": api.KIND,
                "metadata": {"name": "x"},
                "spec": {"handles": [{"handle": "x", "source": source}], "output": {"uri": storage.root}},
            }
        )
    )
    env = {**os.environ, **embedded_s3.config.to_env()}
    done = subprocess.run(
        [sys.executable, "-m", "botfleet.cli", "prepare", str(request)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("botfleet: error:")]
    assert len(errors) == 1 and expected in errors[0]


def test_cli_rejects_a_bad_request_with_exit_2(tmp_path):
    request = tmp_path / "bot.yaml"
    request.write_text(
        "apiVersion: botfleet.dev/v1alpha1\nkind: BotRequest\nmetadata: {name: x}\nspec: {handles: [], output: {uri: 'ftp://x'}}\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "botfleet.cli", "prepare", str(request)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "spec.handles: at least 1 item" in done.stderr and "spec.output.uri" in done.stderr


@pytest.mark.parametrize(
    "posts, error, reason",
    [
        (20, NotEnoughText, "NotEnoughPosts"),
        (None, SourceError, "SourceFailed"),  # not an archive
    ],
)
def test_a_failed_job_writes_its_reason(storage, tmp_path, posts, error, reason):
    archive = tmp_path / "tiny.zip"
    if posts:
        write_archive(archive, posts, seed=1)
    else:
        archive.write_bytes(b"not a zip")
    request = api.parse_request(
        {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "metadata": {"name": "tiny"},
            "spec": {
                "handles": [{"handle": "tiny", "source": {"archive": {"uri": f"file://{archive}"}}}],
                "training": {"gpusPerWorker": 0},
                "tracking": {"wandb": {"mode": "disabled"}},
                "output": {"uri": storage.root},
            },
        }
    )
    with pytest.raises(error):
        run_job(request, storage, show_progress=False)
    result = storage.read_json(Layout(request.spec.model_uri).result)
    assert (result["status"], result["stage"], result["reason"]) == ("failed", "data", reason)
    # The full log outlives the job: it has the traceback, and result.json says where it is.
    assert result["log"].startswith(Layout(request.spec.model_uri).logs + "/job-")
    assert error.__name__ in storage.read_text(result["log"])
