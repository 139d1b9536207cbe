#!/usr/bin/env bash
# On the GPU machine, from the repository root: install the carried wheels (bench/gpu/wheels,
# see fetch_wheels.sh) into a temporary folder, without the network and without touching the
# machine's own packages, then run the GPU check. Extra arguments go to the script.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
deps="$(mktemp -d)"
trap 'rm -rf "$deps"' EXIT
python3 -m pip install --quiet --no-index --no-deps --target "$deps" "$root"/bench/gpu/wheels/*.whl
# The machine's own packages (torch, transformers, numpy) first; the carried ones fill the gaps.
PYTHONPATH="$root/core:$root/jobs:$root:$(python3 -c 'import site; print(":".join(site.getsitepackages()))'):$deps" \
  timeout 590 python3 "$root/bench/gpu/gpt2_bf16.py" "$@"
