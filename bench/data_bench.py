"""Data stage: posts per second through parse + filter + write, against plain baselines.

botfleet: `prepare` on 3 handles x 3,200 posts from local archive exports, writing raw
posts, the dataset and stats to a real (embedded) S3 server. Baseline: the same zip files
read and parsed with the standard library and the same filters applied, nothing else.
Baseline with writes: the same, then the least a data stage must store, put one object
after another with the same client: each handle's file as read, the training text (the
kept posts, `epochs` times) and the validation text. All three alternate within one run,
so the machine's swings hit them alike.
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
from botfleet_jobs.dataset import END_OF_TEXT
from botfleet_jobs.filters import clean_text, fix_text, is_boring

HANDLES, POSTS, ROUNDS, EPOCHS = 3, 3200, 5, 4


def baseline(archives: list[Path], storage: Storage | None = None) -> int:
    """Parse and filter; with ``storage``, also put the files and the texts there."""
    kept: list[str] = []
    for number, path in enumerate(archives):
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                data = archive.read(name)
                raw = data.decode()
                for entry in json.loads(raw[raw.index("=") + 1 :]):
                    text = entry["tweet"]["full_text"]
                    if not text.startswith("RT @"):
                        cleaned = clean_text(fix_text(text))
                        if not is_boring(cleaned):
                            kept.append(cleaned)
                if storage:
                    storage.write_bytes(f"s3://bench/plain/{number}/{name}", data)
    if storage:
        cut = int(len(kept) * 0.9)
        storage.write_text("s3://bench/plain/train.txt", END_OF_TEXT.join(kept[:cut] * EPOCHS))
        storage.write_text("s3://bench/plain/valid.txt", END_OF_TEXT.join(kept[cut:]))
    return len(kept)


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
                "training": {"epochs": EPOCHS},
            }
        )
        total = HANDLES * POSTS
        runs = {
            "botfleet": lambda: sum(
                h["kept"] for h in prepare(spec, storage, reuse=False, show_progress=False)["handles"].values()
            ),
            "baseline": lambda: baseline(archives),
            "baseline_with_writes": lambda: baseline(archives, storage),
        }
        timings: dict[str, list[float]] = {name: [] for name in runs}
        for round_number in range(ROUNDS):
            kept = set()
            order = list(runs) if round_number % 2 == 0 else list(reversed(runs))
            for name in order:
                start = time.perf_counter()
                kept.add(runs[name]())
                timings[name].append(time.perf_counter() - start)
            assert len(kept) == 1, f"baselines and botfleet disagree on the posts kept: {kept}"
    rate = {name: total / statistics.median(seconds) for name, seconds in timings.items()}
    return {
        "benchmark": "data stage (3 handles x 3,200 posts, archives -> S3)",
        "posts_per_second": {name: round(value) for name, value in rate.items()},
        "ratio_botfleet_to_baseline": round(rate["botfleet"] / rate["baseline"], 3),
        "ratio_botfleet_to_baseline_with_writes": round(rate["botfleet"] / rate["baseline_with_writes"], 3),
        "rounds": ROUNDS,
    }
