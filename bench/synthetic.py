"""Synthetic but realistic Twitter/X archive exports for benchmarks and tests."""

from __future__ import annotations

import json
import random
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

WORDS = (
    "the a my dream is to build small robots that write poems about cats and coffee "
    "today tomorrow never again why does everyone love mondays so much lol honestly "
    "just shipped another thing at work we should talk about it later maybe"
).split()


def tweet_text(rng: random.Random) -> str:
    kind = rng.random()
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 30)))
    if kind < 0.1:
        return f"RT @friend{rng.randint(1, 50)}: {words}"
    if kind < 0.25:
        return f"{words} https://t.co/{rng.randint(10**6, 10**7)}"
    if kind < 0.35:
        return f"@pal{rng.randint(1, 9)} {words} &amp; #tag"
    return words


def write_archive(path: Path, n_posts: int, seed: int, parts: int = 2) -> Path:
    """A .zip laid out like an X archive: data/tweets.js, data/tweets-part1.js, ..."""
    rng = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    tweets = []
    for i in range(n_posts):
        created = start + timedelta(minutes=17 * i)
        tweets.append(
            {
                "tweet": {
                    "id_str": str(10**17 + i),
                    "full_text": tweet_text(rng),
                    "created_at": created.strftime("%a %b %d %H:%M:%S +0000 %Y"),
                }
            }
        )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for part in range(parts):
            name = "data/tweets.js" if part == 0 else f"data/tweets-part{part}.js"
            chunk = tweets[part::parts]
            archive.writestr(name, f"window.YTD.tweets.part{part} = " + json.dumps(chunk, indent=1))
    return path
