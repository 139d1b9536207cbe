"""The GPU check (bench/gpu/gpt2_bf16.py) run dry: on CPU, a tiny GPT-2, a few steps, through
botfleet's worker loop without Ray (one process, DeepSpeed over torch.distributed) and the
plain loop; what it prints is what a GPU run prints. No GPU is needed (nor used)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from tests.fixtures.training import REPO

pytestmark = pytest.mark.slow

SCRIPT = os.path.join(REPO, "bench", "gpu", "gpt2_bf16.py")


def test_the_dry_run_trains_through_the_worker_loop_without_ray(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, SCRIPT, "--dry-run"], capture_output=True, text=True, env=env, timeout=1200, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-4000:]
    output = done.stdout
    assert "== gpu\n" in output
    result = json.loads(output.split("== gpu\n", 1)[1])
    assert result["dry_run"] is True and result["ray_imported"] is False
    rates = result["tokens_per_second"]
    assert rates["botfleet"] > 0 and rates["plain_pytorch"] > 0
    assert result["ratio_botfleet_to_plain"] == pytest.approx(rates["botfleet"] / rates["plain_pytorch"], rel=0.01)
    assert all(math.isfinite(loss) for loss in result["valid_loss"])
    assert result["parameters"] > 0 and result["mfu"] == {"botfleet": None, "plain_pytorch": None}
