# botfleet: the commands the README names. Everything runs from the project's .venv.
VENV   := .venv
PY     := $(VENV)/bin/python
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup demo lint format test test-unit test-fast bench crd docs clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup:  ## create .venv with everything botfleet and its tests need (cached)
	bash scripts/setup.sh

demo: setup  ## train the example bot end to end on this machine (embedded object store, local Ray)
	$(VENV)/bin/botfleet demo

lint: setup  ## ruff: lint and format check (configured in pyproject.toml)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup  ## ruff: sort imports, fix what is safe to fix, reformat
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: lint  ## lint, then the whole suite: tests/unit, and tests/integration (real API server, S3 server, Ray, DeepSpeed)
	$(PY) -m pytest

test-unit: setup  ## tests/unit only: pure logic, no server, no training (seconds)
	$(PY) -m pytest tests/unit

test-fast: setup  ## every test but those marked cluster (the control plane) or slow (the longest end-to-end runs)
	$(PY) -m pytest -m "not cluster and not slow"

bench: setup  ## benchmarks, each reported as a ratio against a baseline run side by side
	$(PY) -m bench

crd docs: setup  ## regenerate the CRD and docs/api.md from the schema in core/botfleet/api.py
	$(VENV)/bin/botfleet crd > charts/botfleet/crds/botrequests.botfleet.dev.yaml
	$(VENV)/bin/botfleet api-docs > docs/api.md

clean:  ## remove build outputs (keeps .venv and the control-plane cache)
	rm -rf build out .pytest_cache
