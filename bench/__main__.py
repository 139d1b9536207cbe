"""Run the benchmarks: `python -m bench [NAME ...]` (all when none are named)."""

from __future__ import annotations

import importlib
import json
import sys

BENCHMARKS = {
    "data": "bench.data_bench",
    "train": "bench.train_bench",
    "operator": "bench.operator_bench",
    "parrot": "bench.parrot_bench",
    "page": "bench.page_bench",
    "serving": "bench.serving_bench",
}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    for name in names:
        print(f"== {name}", flush=True)
        result = importlib.import_module(BENCHMARKS[name]).run()
        print(json.dumps(result, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
