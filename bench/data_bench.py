"""Data stage: posts per second through parse + filter + write, against a plain baseline.

botfleet: `prepare` on 3 handles x 3,200 posts from local archive exports, writing raw
posts, the dataset and stats to a real (embedded) S3 server. Baseline: the same zip files
read and parsed with the standard library and the same filters applied, nothing else.
The two alternate within one run, so the machine's swings hit both alike.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

from bench.synthetic import write_archive
from botfleet import api
from botfleet.embedded_s3 import EmbeddedS3
from botfleet.storage import Storage
from botfleet_jobs.data_stage import prepare
from botfleet_jobs.filters import clean_text, fix_text, is_boring

HANDLES, POSTS, ROUNDS = 3, 3200, 3


def baseline(archives: list[Path]) -> int:
    kept = 0
    for path in archives:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                raw = archive.read(name).decode()
                for entry in json.loads(raw[raw.index("=") + 1 :]):
                    text = entry["tweet"]["full_text"]
                    if not text.startswith("RT @") and not is_boring(clean_text(fix_text(text))):
                        kept += 1
    return kept


def run() -> dict:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedS3() as server:
        storage = Storage(server.config)
        storage.ensure_bucket("bench")
        archives = [write_archive(Path(tmp) / f"user{i}.zip", POSTS, seed=i) for i in range(HANDLES)]
        spec = api.parse_spec(
            {
                "handles": [
                    {"handle": f"user{i}", "source": {"archive": {"uri": f"file://{p}"}}}
                    for i, p in enumerate(archives)
                ],
                "output": {"uri": "s3://bench/"},
            }
        )
        total = HANDLES * POSTS
        timings: dict[str, list[float]] = {"botfleet": [], "baseline": []}
        for _ in range(ROUNDS):
            start = time.perf_counter()
            stats = prepare(spec, storage, reuse=False, show_progress=False)
            timings["botfleet"].append(time.perf_counter() - start)
            start = time.perf_counter()
            kept = baseline(archives)
            timings["baseline"].append(time.perf_counter() - start)
        assert kept == sum(h["kept"] for h in stats["handles"].values()), "baseline and botfleet disagree"
    rate = {name: total / statistics.median(seconds) for name, seconds in timings.items()}
    return {
        "benchmark": "data stage (3 handles x 3,200 posts, archives -> S3)",
        "posts_per_second": {name: round(value) for name, value in rate.items()},
        "ratio_botfleet_to_baseline": round(rate["botfleet"] / rate["baseline"], 3),
        "rounds": ROUNDS,
    }
