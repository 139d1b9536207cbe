"""Serving: the fleet's Ray Serve application against a plain transformers pipeline, same run.

Both generate for the same prompts with the same model, settings (max tokens, temperature,
top_p, seed) and thread count. The pipeline is called in this process, one request after
another; the serving path is HTTP -> gateway -> generator replica (one replica holding
every core) -> HTTP, one client, each request in turn with the pipeline's; 20 concurrent
clients run between the two halves of those turns. Also: the first request to a bot that
no replica holds (loaded from the object store) against the next request to it.

    python -m bench serving
    BOTFLEET_BENCH_PRESET=small python -m bench serving    # GPT-2 small's shape (124M)
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

PRESET = os.environ.get("BOTFLEET_BENCH_PRESET", "tiny")
REQUESTS = int(os.environ.get("BOTFLEET_BENCH_REQUESTS", "24"))
CLIENTS = 20
MAX_TOKENS, TEMPERATURE, TOP_P = 16, 1.0, 0.95
PROMPTS = ("My dream is", "I think that", "The best thing about", "Today I", "Nobody knows", "Why does")


def _requests(model_id: str, count: int) -> list[dict]:
    return [
        {
            "model": model_id,
            "prompt": PROMPTS[i % len(PROMPTS)],
            "max_tokens": MAX_TOKENS,
            "temperature": TEMPERATURE,
            "top_p": TOP_P,
            "seed": i,
        }
        for i in range(count)
    ]


def _summary(latencies: list[float], seconds: float | None = None) -> dict:
    """Requests per second (over ``seconds``, or back to back: the sum of the latencies) and percentiles."""
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "requests_per_s": round(len(ordered) / (seconds or sum(ordered)), 3),
        "p50_ms": round(1000 * statistics.median(ordered), 1),
        "p99_ms": round(1000 * ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))], 1),
    }


class PlainPipeline:
    """A textbook transformers pipeline in this process, one call per request."""

    def __init__(self, model_dir: str, threads: int) -> None:
        import torch
        from transformers import pipeline

        torch.set_num_threads(threads)
        self.generate = pipeline("text-generation", model=model_dir, device=0 if torch.cuda.is_available() else -1)
        self.prefix = self.generate.model.config.task_specific_params["text-generation"]["prefix"]

    def seconds(self, body: dict) -> float:
        import torch

        began = time.perf_counter()
        torch.manual_seed(body["seed"])
        self.generate(
            self.prefix + body["prompt"],
            max_new_tokens=body["max_tokens"],
            min_new_tokens=body["max_tokens"],  # as many tokens as the served side (a random model rarely stops)
            do_sample=True,
            temperature=body["temperature"],
            top_p=body["top_p"],
            pad_token_id=self.generate.tokenizer.eos_token_id,
        )
        return time.perf_counter() - began


class Client:
    def __init__(self, url: str) -> None:
        import requests

        self.url, self.session = url, requests.Session()

    def seconds(self, body: dict) -> float:
        began = time.perf_counter()
        response = self.session.post(self.url + "/v1/completions", json=body, timeout=600)
        response.raise_for_status()
        return time.perf_counter() - began

    def concurrently(self, bodies: list[dict], clients: int) -> dict:
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            latencies = list(pool.map(self.seconds, bodies))
        return _summary(latencies, time.perf_counter() - start)


def run() -> dict:
    import ray
    from ray import serve

    from botfleet.embedded_s3 import EmbeddedS3
    from botfleet.storage import Storage
    from botfleet_jobs.base_model import make_preset_gpt2
    from botfleet_serving.app import build_app
    from tests.fixtures.bots import make_bot_model, publish_bot
    from tests.fixtures.cluster import free_port
    from tests.fixtures.training import REPO, ray_env_paths

    threads = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp, EmbeddedS3() as server:
        model_dir = make_bot_model(make_preset_gpt2(os.path.join(tmp, "base"), PRESET), os.path.join(tmp, "bot"))
        storage = Storage(server.config)
        storage.ensure_bucket("bots")
        for model_id in ("warm", "cold"):
            publish_bot(storage, "s3://bots", model_id, model_dir)
        bodies = _requests("warm", REQUESTS)
        baseline = PlainPipeline(model_dir, threads)
        baseline.seconds(bodies[0])  # warm, as the served bot will be

        port = free_port()
        paths = os.pathsep.join([ray_env_paths(), os.path.join(REPO, "serving")])
        env = {**server.config.to_env(), "PYTHONPATH": paths}
        ray.init(num_cpus=threads, include_dashboard=False, runtime_env={"env_vars": env}, configure_logging=False)
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            args = {"output": "s3://bots", "min_replicas": 1, "max_replicas": 1, "replica_cpus": threads}
            serve.run(build_app({**args, "max_ongoing_requests": CLIENTS}), name="bench", blocking=False)
            client = Client(f"http://127.0.0.1:{port}")
            client.seconds(bodies[0])  # load the warm bot
            # Request by request, in turns, half before and half after the concurrent clients:
            # the machine's swings hit every side alike.
            half = len(bodies) // 2
            pairs = [(baseline.seconds(body), client.seconds(body)) for body in bodies[:half]]
            concurrent = client.concurrently(_requests("warm", max(REQUESTS, 2 * CLIENTS)), CLIENTS)
            pairs += [(baseline.seconds(body), client.seconds(body)) for body in bodies[half:]]
            cold_body = _requests("cold", 1)[0]
            cold, warm = client.seconds(cold_body), client.seconds(cold_body)
        finally:
            serve.shutdown()
            ray.shutdown()
    plain, one_client = _summary([p for p, _ in pairs]), _summary([s for _, s in pairs])
    return {
        "preset": PRESET,
        "settings": {"max_tokens": MAX_TOKENS, "temperature": TEMPERATURE, "top_p": TOP_P, "threads": threads},
        "plain_pipeline": plain,
        "served_one_client": one_client,
        f"served_{CLIENTS}_clients": concurrent,
        "cold_bot_ms": round(1000 * cold, 1),
        "warm_bot_ms": round(1000 * warm, 1),
        "cold_over_warm": round(cold / warm, 2),
        # Requests per second through the serving path over the plain pipeline's, one client:
        # 1 would be no overhead at all.
        "ratio": round(one_client["requests_per_s"] / plain["requests_per_s"], 3),
        f"ratio_{CLIENTS}_clients": round(concurrent["requests_per_s"] / plain["requests_per_s"], 3),
    }
