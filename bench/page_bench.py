"""Fleet page: the gallery of 200 bots, against listing their files with the S3 client alone.

botfleet: ``GET /`` of the page (``botfleet_web.app.fleet_app`` over a ``StoreSource``,
served in process by FastAPI's TestClient: the server's own time, no network), over 200
bot folders in a real (embedded) S3 server: 150 finished, 30 training, 20 failed, each with
the files a job leaves (dataset, progress, result, owner, the model folder with its card,
samples, history and pictures). Baseline: the same server listed with the minio client alone
(every object under the output prefix, recursively): what anyone with an S3 client does to
see the fleet, without reading a file. Rounds alternate between the two.
"""

from __future__ import annotations

import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from botfleet.artifacts import HandleStats, Progress, Result, Stats, TrainingHistory
from botfleet.embedded_s3 import EmbeddedS3
from botfleet.layout import Layout
from botfleet.storage import Storage

BOTS, ROUNDS, BUCKET = 200, 5, "bench-page"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(2048)


def write_bot(storage: Storage, i: int) -> int:
    """One bot's folder as a job leaves it; returns how many objects it wrote."""
    name = f"user{i:03d}"
    layout = Layout(f"s3://{BUCKET}/{name}")
    stats = Stats(name, {name: HandleStats(3200, 400, 300, 2500, 120000, f"User {i}", "archive")}, epochs=4)
    files = {
        layout.owner: {"namespace": "bots", "name": name, "uid": f"uid-{i}"},
        layout.stats: stats.to_dict(),
        layout.raw(name): "{}\n" * 100,
        layout.train_txt: "a post\n" * 2000,
        layout.valid_txt: "a post\n" * 200,
    }
    if i % 10 == 3:  # training
        files[layout.progress] = Progress("training", 40, 120, 1.3, 3.1, eta_seconds=300).to_dict()
    else:
        files[layout.progress] = Progress("succeeded", 120, 120).to_dict()
        failed = i % 10 == 7
        if failed:
            files[layout.result] = Result.failed("training", "out of memory", "TrainingFailed").to_dict()
        else:
            samples = [{"prompt": "My dream is", "prediction": f"My dream is to be bot {i}"}] * 5
            history = TrainingHistory.of(name, [[s, 3.0 - s / 100] for s in range(1, 121)], {0: 4.0, 120: 2.0})
            files |= {
                layout.model_config: {"model_type": "gpt2"},
                layout.card: "# a card\n",
                layout.samples: {"samples": samples},
                layout.loss_history: history.to_dict(),
                layout.training: {"model_id": name},
                layout.thumbnail: PNG,
                layout.loss_curve: PNG,
                f"{layout.model}/model.safetensors": bytes(4096),
                layout.result: Result("succeeded", model=layout.model).to_dict(),
            }
    for uri, content in files.items():
        if isinstance(content, bytes):
            storage.write_bytes(uri, content)
        elif isinstance(content, str):
            storage.write_text(uri, content)
        else:
            storage.write_json(uri, content)
    return len(files)


def list_with_the_client(storage: Storage) -> int:
    found = storage.client.list_objects(BUCKET, prefix="", recursive=True)
    return sum(1 for _ in found)


def run() -> dict:
    from fastapi.testclient import TestClient

    from botfleet_web.app import fleet_app
    from botfleet_web.source import StoreSource

    with EmbeddedS3() as server:
        storage = Storage(server.config)
        storage.ensure_bucket(BUCKET)
        with ThreadPoolExecutor(16) as pool:
            objects = sum(pool.map(lambda i: write_bot(storage, i), range(BOTS)))
        client = TestClient(fleet_app(StoreSource(Storage(server.config), f"s3://{BUCKET}")))
        assert client.get("/").text.count('class="bot"') == BOTS  # warm: connections, imports
        timings: dict[str, list[float]] = {"gallery": [], "baseline": []}
        for _ in range(ROUNDS):
            start = time.perf_counter()
            page = client.get("/")
            timings["gallery"].append(time.perf_counter() - start)
            assert page.status_code == 200 and page.text.count('class="bot"') == BOTS
            start = time.perf_counter()
            listed = list_with_the_client(storage)
            timings["baseline"].append(time.perf_counter() - start)
            assert listed == objects, (listed, objects)
    median = {name: statistics.median(seconds) for name, seconds in timings.items()}
    return {
        "benchmark": f"fleet page gallery ({BOTS} bots, {objects} objects in S3) vs listing them with the S3 client",
        "seconds": {name: round(value, 4) for name, value in median.items()},
        "ratio_gallery_to_baseline": round(median["gallery"] / median["baseline"], 2),
        "page_bytes": len(page.content),
        "rounds": ROUNDS,
    }
