"""Parrot check: measuring 32 samples against a person's posts, index against scan.

botfleet: :mod:`botfleet_jobs.parrot` builds the set of every 8-token run of the posts once,
then looks each sample's runs up. Baseline: a scan per sample, each of its 8-token runs
searched for in every post (as text, with Python's C substring search). Both see the same
token ids (3 handles x 3,200 posts of about 16 tokens, half the samples holding a copied
run) and must find the same samples; the time includes building the index. Tokenizing is
left out: both need it alike. The two alternate within one run.
"""

from __future__ import annotations

import random
import statistics
import time

from botfleet.parrot import RUN_TOKENS
from botfleet_jobs.parrot import NgramIndex, measure

POSTS, SAMPLES, SAMPLE_TOKENS, ROUNDS = 3 * 3200, 32, 48, 3


def corpus(seed: int = 0) -> tuple[list[list[int]], list[list[int]]]:
    rng = random.Random(seed)
    posts = [[rng.randrange(50257) for _ in range(rng.randint(8, 24))] for _ in range(POSTS)]
    samples = []
    for i in range(SAMPLES):
        sample = [rng.randrange(50257) for _ in range(SAMPLE_TOKENS)]
        if i % 2:  # a copied run of a post
            post = rng.choice([p for p in posts if len(p) >= RUN_TOKENS + 4])
            sample[10 : 10 + RUN_TOKENS + 4] = post[: RUN_TOKENS + 4]
        samples.append(sample)
    return posts, samples


def with_index(posts: list[list[int]], samples: list[list[int]]) -> int:
    index = NgramIndex(RUN_TOKENS)
    for post in posts:
        index.add(post)
    return measure(samples, index).copying


def with_scan(posts: list[list[int]], samples: list[list[int]]) -> int:
    texts = [" " + " ".join(map(str, post)) + " " for post in posts]
    copying = 0
    for sample in samples:
        runs = (" " + " ".join(map(str, sample[i : i + RUN_TOKENS])) + " " for i in range(len(sample) - RUN_TOKENS + 1))
        copying += any(run in text for run in runs for text in texts)
    return copying


def run() -> dict:
    posts, samples = corpus()
    timings: dict[str, list[float]] = {"botfleet": [], "baseline": []}
    for _ in range(ROUNDS):
        for name, fn in (("botfleet", with_index), ("baseline", with_scan)):
            start = time.perf_counter()
            found = fn(posts, samples)
            timings[name].append(time.perf_counter() - start)
            assert found == SAMPLES // 2, (name, found)
    seconds = {name: statistics.median(values) for name, values in timings.items()}
    return {
        "benchmark": f"parrot check ({SAMPLES} samples against {POSTS:,} posts)",
        "seconds": {name: round(value, 4) for name, value in seconds.items()},
        "ratio_botfleet_to_baseline_speed": round(seconds["baseline"] / seconds["botfleet"], 1),
        "rounds": ROUNDS,
    }
