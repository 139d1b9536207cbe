"""The import rule: the core (botfleet), the operator (botfleet_operator) and the fleet page
(botfleet_web) import no torch, transformers or deepspeed, so the operator's image and the
CLI stay small and start fast.
Imports inside a function body (the CLI's commands that run a job here) are allowed: only
what importing the modules pulls in counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.fixtures.code import TORCH_FREE

HEAVY = ("torch", "transformers", "deepspeed")

# Run in a fresh interpreter: this test process may have imported anything already.
# Entry points (__main__) are skipped: importing one runs it.
IMPORT_ALL = """
import importlib, json, pkgutil, sys
imported, failed = [], {}
for name in sys.argv[1:]:
    package = importlib.import_module(name)
    imported.append(name)
    for module in pkgutil.walk_packages(package.__path__, prefix=name + "."):
        if module.name.rsplit(".", 1)[-1] == "__main__":
            continue
        try:
            importlib.import_module(module.name)
            imported.append(module.name)
        except Exception as exc:
            failed[module.name] = repr(exc)
files = {name: sys.modules[name].__file__ for name in sys.argv[1:]}
loaded = sorted({m.split(".")[0] for m in sys.modules})
print(json.dumps({"imported": imported, "failed": failed, "files": files, "loaded": loaded}))
"""


def import_everything() -> dict:
    path = os.pathsep.join([*map(str, TORCH_FREE.values()), os.environ.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, *TORCH_FREE],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": path},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_core_and_operator_import_no_torch_transformers_or_deepspeed():
    report = import_everything()
    # It checked this checkout's packages, and all of them: it cannot pass by finding nothing.
    for name, folder in TORCH_FREE.items():
        assert report["files"][name].startswith(str(folder / name)), report["files"][name]
    assert {
        "botfleet.api",
        "botfleet.storage",
        "botfleet.cli",
        "botfleet_operator.reconciler",
        "botfleet_operator.handlers",
        "botfleet_web.app",
    } <= set(report["imported"]), report["imported"]
    assert not report["failed"], report["failed"]
    heavy = sorted(set(HEAVY) & set(report["loaded"]))
    assert not heavy, f"importing the core and the operator imported {heavy}"
