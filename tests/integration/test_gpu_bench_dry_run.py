"""The GPU check (bench/gpu) run dry through run.sh, as on the GPU machine: the carried wheels
unpacked without pip behind the machine's own packages, then on CPU a tiny GPT-2, a few
steps, through botfleet's worker loop without Ray (one process, DeepSpeed over
torch.distributed) and the plain loop; what it prints is what a GPU run prints. No GPU is
needed (nor used). "The machine" here is this test's Python, first on PATH."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import zipfile

import pytest

from bench.gpu.gpt2_bf16 import DRY_RUN_SHAPE
from tests.fixtures.training import REPO

RUN_SH = os.path.join(REPO, "bench", "gpu", "run.sh")
# Stand-ins of carried wheels that the machine also has: run.sh puts the machine's own first,
# so they must never be imported.
FAKE_PACKAGES = ("torch", "pydantic")


def fake_wheel(folder, name: str) -> None:
    """A wheel of package ``name`` whose import fails loudly (not an ImportError, which a
    probing ``try: import`` would swallow)."""
    with zipfile.ZipFile(os.path.join(folder, f"{name}-0.0.1-py3-none-any.whl"), "w") as wheel:
        wheel.writestr(f"{name}/__init__.py", f"raise RuntimeError('the carried stand-in of {name} was imported')\n")


def run_sh(tmp_path, wheels, *args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],  # its python3 is ours
        "BENCH_GPU_WHEELS": str(wheels),
        "TMPDIR": str(tmp_path),
        "CUDA_VISIBLE_DEVICES": "",
    }
    return subprocess.run(
        ["bash", RUN_SH, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=tmp_path
    )


def own_folder(package: str) -> str:
    """The folder this Python imports ``package`` from (found, not imported)."""
    return os.path.dirname(os.path.dirname(importlib.util.find_spec(package).origin))


@pytest.mark.slow
def test_the_dry_run_trains_through_the_worker_loop_with_the_machines_own_packages_first(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name in FAKE_PACKAGES:
        fake_wheel(wheels, name)

    done = run_sh(tmp_path, wheels, "--dry-run", timeout=1200)

    assert done.returncode == 0, done.stderr[-4000:]
    assert "== gpu\n" in done.stdout
    result = json.loads(done.stdout.split("== gpu\n", 1)[1])
    assert result["dry_run"] is True and result["ray_imported"] is False
    assert result["steps"] == DRY_RUN_SHAPE["steps"]
    rates = result["tokens_per_second"]
    assert rates["botfleet"] > 0 and rates["plain_pytorch"] > 0
    assert result["ratio_botfleet_to_plain"] == pytest.approx(rates["botfleet"] / rates["plain_pytorch"], rel=0.01)
    assert all(math.isfinite(loss) for loss in result["valid_loss"])
    assert result["parameters"] > 0 and result["mfu"] == {"botfleet": None, "plain_pytorch": None}
    packages = result["packages"]
    for name in ("torch", "pydantic"):
        assert packages[name]["from"] == own_folder(name)
    assert "deepspeed" in packages and "transformers" in packages
    assert result["carried_packages"] == []
    assert not [entry for entry in os.listdir(tmp_path) if entry.startswith("tmp.")]  # unpacked wheels removed


def test_without_wheels_run_sh_stops_and_names_fetch_wheels(tmp_path):
    done = run_sh(tmp_path, tmp_path, "--dry-run", timeout=60)

    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "fetch_wheels.sh" in done.stderr
