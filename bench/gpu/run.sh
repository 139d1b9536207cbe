#!/usr/bin/env bash
# On the GPU machine, from the repository root: unpack the carried wheels (bench/gpu/wheels,
# see fetch_wheels.sh; BENCH_GPU_WHEELS names another folder) into a temporary folder, then
# run the GPU check. No pip needed: a wheel is a zip file, and pure-Python and manylinux
# wheels unpack to importable trees. The machine's own import path (its site-packages) comes
# first, the carried packages fill the gaps. Extra arguments go to the script. The whole run,
# unpacking included, ends within 580 s (a call may take 600).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
wheels=("${BENCH_GPU_WHEELS:-$root/bench/gpu/wheels}"/*.whl)
[[ -f "${wheels[0]}" ]] || { echo "run.sh: no wheels to carry: run bash bench/gpu/fetch_wheels.sh first" >&2; exit 2; }
carried="$(mktemp -d)"
trap 'rm -rf "$carried"' EXIT
for wheel in "${wheels[@]}"; do python3 -m zipfile -e "$wheel" "$carried"; done
own="$(python3 -c 'import sys; print(":".join(filter(None, sys.path)))')"
BENCH_GPU_CARRIED="$carried" PYTHONPATH="$root/core:$root/jobs:$root:$own:$carried" \
  timeout $((580 - SECONDS)) python3 "$root/bench/gpu/gpt2_bf16.py" "$@"
