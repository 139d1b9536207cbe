"""Shared test set-up: offline model hub, fast Ray health checks, shared fixtures."""

import os
import shutil
import tempfile

# Before anything imports transformers, ray or the kubernetes client.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("WANDB_SILENT", "true")
# Tests must never pick up a developer's object store.
for _name in ("BOTFLEET_S3_ENDPOINT", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
    os.environ.pop(_name, None)
# A base-model cache of the run's own, removed when it ends: every test bucket is a new
# entry, which the machine's shared cache would keep for an hour.
_MODEL_CACHE = os.environ["BOTFLEET_MODEL_CACHE"] = tempfile.mkdtemp(prefix="botfleet-test-model-cache-")

pytest_plugins = [
    "tests.fixtures.s3",
    "tests.fixtures.cluster",
    "tests.fixtures.ray_head",
    "tests.fixtures.operators",
    "tests.fixtures.manifests",
    "tests.fixtures.training",
    "tests.fixtures.bots",
    "tests.fixtures.social_apis",
    "tests.fixtures.reconciler_world",
    "tests.fixtures.browser",
]


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_MODEL_CACHE, ignore_errors=True)
