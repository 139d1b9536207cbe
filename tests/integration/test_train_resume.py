"""Kill a training mid-way and run it again: it resumes from the newest checkpoint.

The training runs as ``python -m botfleet_jobs.trainer_cli`` in a subprocess with its own
session (``start_new_session``) and its own Ray temp dir. Ray's daemons and workers stay
in that session (the workers get their own process groups), so the kill takes every
process whose session id is the subprocess's pid: no stray Ray is left behind, and no
other Ray on the machine is touched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

from botfleet.api import parse_spec
from botfleet.storage import join
from tests.fixtures.network import CuttableProxy
from tests.fixtures.training import (
    REPO,
    SNAPSHOT,
    ray_env_paths,
    registered_steps,
    spec_dict,
    upload_tiny_model,
    write_dataset,
)


def session_pids(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, session = fields[0], int(fields[3])
        if session == sid and state != "Z":
            pids.append(int(entry))
    return pids


def kill_session(sid: int) -> None:
    for _ in range(3):
        pids = session_pids(sid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)


def start_training(spec: dict, env: dict, ray_dir: str, log_path: str, *extra: str) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "botfleet_jobs.trainer_cli",
        "--spec-json",
        json.dumps(spec),
        "--num-cpus",
        "2",
        "--ray-temp-dir",
        ray_dir,
        "--checkpoint-every-steps",
        "3",
        "--progress-every-seconds",
        "0.5",
        *extra,
    ]
    log = open(log_path, "wb")
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def test_killed_training_resumes_from_checkpoint(storage, embedded_s3, tiny_model_dir, tmp_path, request):
    base = upload_tiny_model(storage, tiny_model_dir)
    spec_json = spec_dict(storage.root + "/bots", base, zeroStage=2, workers=1)
    spec = parse_spec(spec_json)
    # About 50 steps: run 1 is killed at its first checkpoint (step 3), so it is surely mid-way.
    write_dataset(storage, spec.model_uri, n_train=720)
    checkpoints = join(spec.model_uri, "checkpoints")
    training_json = join(spec.model_uri, "model", "training.json")
    env = {**os.environ, **embedded_s3.config.to_env(), "PYTHONPATH": ray_env_paths()}
    ray_dir = tempfile.mkdtemp(prefix="bfray-", dir="/tmp")  # short: Ray's socket paths

    request.addfinalizer(lambda: shutil.rmtree(ray_dir, ignore_errors=True))

    # ---- run 1: checkpoints every 3 steps, killed once Ray Train has registered one
    first = start_training(spec_json, env, ray_dir, str(tmp_path / "run1.log"))
    try:
        deadline = time.time() + 240
        saved = []
        while time.time() < deadline and first.poll() is None:
            saved = registered_steps(storage, checkpoints)
            if saved:
                break
            time.sleep(0.2)
        assert saved, f"no checkpoint appeared:\n{(tmp_path / 'run1.log').read_text()[-3000:]}"
    finally:
        kill_session(first.pid)
        first.wait(timeout=30)
    assert not session_pids(first.pid)
    assert first.returncode == -signal.SIGKILL
    assert not storage.exists(training_json)
    killed_progress = storage.read_json(join(spec.model_uri, "progress.json"))
    assert killed_progress["step"] < killed_progress["total_steps"]
    done_before_kill = registered_steps(storage, checkpoints)
    assert done_before_kill and done_before_kill[-1] < killed_progress["total_steps"]

    # ---- run 2: same request, resumes; checkpoints only at the epochs' ends, to finish sooner
    second = start_training(spec_json, env, ray_dir, str(tmp_path / "run2.log"), "--checkpoint-every-steps", "0")
    try:
        second.wait(timeout=300)
    finally:
        kill_session(second.pid)
    log2 = (tmp_path / "run2.log").read_text()
    assert second.returncode == 0, log2[-3000:]
    result = json.loads(log2.strip().splitlines()[-1])
    training = storage.read_json(training_json)
    progress = storage.read_json(join(spec.model_uri, "progress.json"))
    total = training["total_steps"]

    # resumed from the newest checkpoint run 1 registered before it was killed
    assert training["resumed_from_step"] == done_before_kill[-1] > 0
    assert progress["resumed_from_step"] == training["resumed_from_step"] == result["resumed_from_step"]
    assert progress["status"] == "succeeded" and progress["step"] == total
    assert training["steps"] == total
    # run 2 trained only what was left
    assert total - training["resumed_from_step"] < total
    # the loss before training came from the checkpoint, not from the fine-tuned model
    first_state = json.loads(
        storage.read_text(next(u for u in storage.list(checkpoints) if u.endswith("/botfleet_state.json")))
    )
    assert training["valid_loss_before"] == first_state["valid_loss_before"]
    assert training["valid_loss_after"] < training["valid_loss_before"]


def train_worker_pids(sid: int) -> list[int]:
    """The Ray Train worker processes of the training whose session is ``sid``."""
    pids = []
    for pid in session_pids(sid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"RayTrainWorker" in f.read():
                    pids.append(pid)
        except OSError:
            continue
    return sorted(pids)


def test_a_killed_worker_restarts_the_group_from_the_newest_checkpoint(
    storage, embedded_s3, tiny_model_dir, tmp_path, request
):
    base = upload_tiny_model(storage, tiny_model_dir)
    spec_json = spec_dict(storage.root + "/bots", base, zeroStage=2, workers=2, maxFailures=1)
    spec = parse_spec(spec_json)
    write_dataset(storage, spec.model_uri, n_train=720)
    checkpoints = join(spec.model_uri, "checkpoints")
    env = {**os.environ, **embedded_s3.config.to_env(), "PYTHONPATH": ray_env_paths()}
    ray_dir = tempfile.mkdtemp(prefix="bfray-", dir="/tmp")
    request.addfinalizer(lambda: shutil.rmtree(ray_dir, ignore_errors=True))
    log = tmp_path / "run.log"

    # Checkpoints every 3 steps; once one is registered, one of the two workers is killed.
    run = start_training(spec_json, env, ray_dir, str(log))
    try:
        deadline = time.time() + 300
        saved, workers = [], []
        while time.time() < deadline and run.poll() is None and not saved:
            saved = registered_steps(storage, checkpoints)
            workers = train_worker_pids(run.pid)
            time.sleep(0.2)
        assert saved and len(workers) == 2, f"saved {saved}, workers {workers}:\n{log.read_text()[-3000:]}"
        os.kill(workers[-1], signal.SIGKILL)
        run.wait(timeout=400)
    finally:
        kill_session(run.pid)
    output = log.read_text()
    assert run.returncode == 0, output[-3000:]
    training = storage.read_json(join(spec.model_uri, "model", "training.json"))
    # Ray Train restarted the group once, and it went on from a checkpoint, not from step 0.
    assert training["resumed_from_step"] >= saved[0] > 0
    assert training["steps"] == training["total_steps"]


def test_an_object_store_outage_mid_training_is_waited_out(storage, embedded_s3, tiny_model_dir, tmp_path, request):
    """The store stops answering for a while once training has checkpointed, then comes back on
    the same address: the run waits, finishes, and its newest checkpoint is a whole one."""
    base = upload_tiny_model(storage, tiny_model_dir)
    spec_json = spec_dict(storage.root + "/bots", base, zeroStage=2, workers=1)
    spec = parse_spec(spec_json)
    write_dataset(storage, spec.model_uri, n_train=720)
    checkpoints = join(spec.model_uri, "checkpoints")
    endpoint = urllib.parse.urlsplit(embedded_s3.config.endpoint)
    proxy = CuttableProxy(endpoint.hostname, endpoint.port)
    request.addfinalizer(proxy.close)
    s3_env = {**embedded_s3.config.to_env(), "BOTFLEET_S3_ENDPOINT": f"http://127.0.0.1:{proxy.port}"}
    s3_env.pop("AWS_ENDPOINT_URL", None)
    env = {**os.environ, **s3_env, "PYTHONPATH": ray_env_paths()}
    ray_dir = tempfile.mkdtemp(prefix="bfray-", dir="/tmp")
    request.addfinalizer(lambda: shutil.rmtree(ray_dir, ignore_errors=True))
    log = tmp_path / "run.log"

    run = start_training(spec_json, env, ray_dir, str(log))
    try:
        deadline = time.time() + 300
        while time.time() < deadline and run.poll() is None and not registered_steps(storage, checkpoints):
            time.sleep(0.2)
        assert registered_steps(storage, checkpoints), log.read_text()[-3000:]
        proxy.cut()
        time.sleep(20)
        proxy.restore()
        run.wait(timeout=400)
    finally:
        kill_session(run.pid)
    output = log.read_text()
    assert run.returncode == 0, output[-3000:]
    assert "unreachable" in output or "retry" in output.lower(), "the outage was not noticed"
    training = storage.read_json(join(spec.model_uri, "model", "training.json"))
    assert training["steps"] == training["total_steps"]
    # Every checkpoint Ray Train registered (what a rerun would resume from) is whole.
    for snapshot in (u for u in storage.list(checkpoints) if u.endswith("/" + SNAPSHOT)):
        run_folder = snapshot.rsplit("/", 1)[0]
        for result in json.loads(storage.read_text(snapshot))["checkpoint_results"]:
            assert storage.exists(f"{run_folder}/{result['checkpoint_dir_name']}/botfleet_state.json"), result
