"""The job's full log (botfleet_jobs.job_log): what the job and its child processes write
lands in the log file under ``logs/``, even when the job fails; the console gets only
botfleet's own lines. A real file:// store, real child processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from botfleet.errors import with_notes
from botfleet.layout import Layout
from botfleet.storage import Storage
from botfleet_jobs.job_log import JobLog

CHILD = "import sys; print('(RayTrainWorker pid=7) step 3'); print('(raylet) warning', file=sys.stderr)"


def test_child_output_goes_to_the_log_and_botfleets_lines_to_the_console(tmp_path, capfd):
    storage = Storage(None)
    uri = Layout(f"file://{tmp_path}/out/alice").job_log("2026-12-02T15:00:00Z")
    assert uri == f"file://{tmp_path}/out/alice/logs/job-20261202T150000Z.log"
    with JobLog(storage, uri) as log:
        print("training: 50%", file=log.console)
        subprocess.run([sys.executable, "-c", CHILD], check=True)
        os.write(2, b"a C library's message\n")
    out, err = capfd.readouterr()
    assert "training: 50%" in err
    assert "pid=7" not in out + err and "raylet" not in out + err and "C library" not in out + err
    text = storage.read_text(uri)
    assert "(RayTrainWorker pid=7) step 3" in text and "(raylet) warning" in text and "C library" in text
    # Afterwards the process writes where it did before.
    os.write(2, b"after the job\n")
    assert "after the job" in capfd.readouterr().err


def test_a_failed_job_leaves_its_log_with_the_traceback(tmp_path, capfd):
    storage = Storage(None)
    uri = f"file://{tmp_path}/logs/job-1.log"
    with pytest.raises(RuntimeError, match="worker died"), JobLog(storage, uri):
        subprocess.run([sys.executable, "-c", CHILD], check=True)
        raise RuntimeError("worker died")
    text = storage.read_text(uri)
    assert "step 3" in text and "Traceback" in text and "RuntimeError: worker died" in text
    assert "Traceback" not in capfd.readouterr().err


def test_the_log_is_copied_while_the_job_runs(tmp_path):
    storage = Storage(None)
    uri = f"file://{tmp_path}/logs/job-1.log"
    with JobLog(storage, uri, upload_every_s=3600) as log:
        subprocess.run([sys.executable, "-c", CHILD], check=True)
        assert log.upload() and "step 3" in storage.read_text(uri)


def test_an_errors_notes_follow_it_on_its_line():
    error = ValueError("base model s3://m/x: not found\n  (details)")
    assert with_notes(error) == "base model s3://m/x: not found (details)"
    error.add_note("full log: s3://bots/x/logs/job-1.log")
    assert with_notes(error) == "base model s3://m/x: not found (details) (full log: s3://bots/x/logs/job-1.log)"


def test_a_job_stopped_by_sigterm_says_so_whoever_handled_the_signal():
    from botfleet_jobs.job import JobStopped, failure_reason, stop_on_sigterm

    with pytest.raises(JobStopped) as stopped:
        stop_on_sigterm(signal.SIGTERM, None)
    assert failure_reason(stopped.value, "data") == "JobStopped"
    # Ray's in a driver: ray.init's handler calls sys.exit(SIGTERM); inside ray.get a signal
    # surfaces as SystemExit(1)
    assert failure_reason(SystemExit(signal.SIGTERM), "training") == "JobStopped"
    assert failure_reason(SystemExit(1), "training") == "JobStopped"
    assert failure_reason(RuntimeError("worker died"), "training") == "TrainingFailed"
