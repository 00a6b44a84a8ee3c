# Quick start: `make demo` (set up + train on the bundled CC GENERAL data), `make test` (set up + full test suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The lock files (pip-tools, `make lock`): every package at the version the suite was run with. dev: the
# project with every extra and the dev tools (this venv, CI); runtime: the `all` extra (the flows and the
# Prefect worker, the Dockerfile's runtime image); serve: the base and the `serve` extra only (the server
# image: no Prefect, AWS, Dask, W&B or torch).
LOCK_DEV     := requirements/dev.txt
LOCK_RUNTIME := requirements/runtime.txt
LOCK_SERVE   := requirements/serve.txt
# torch's CPU build comes from PyTorch's index, and only torch does (--no-deps), so no other package name can
# ever be served by that index instead of PyPI.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
export SEGMENT_HOME ?= $(CURDIR)/.segment

.PHONY: setup lock browser demo test lint typecheck format bench bench-scale server server-stop clean

$(STAMP): pyproject.toml $(LOCK_DEV)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first: a CPU wheel pip already has (its find-links), else PyPI has no +cpu build and
	# PyTorch's CPU index serves it.
	$(BIN)/python -m pip install --quiet --no-deps --no-index --constraint $(LOCK_DEV) torch 2>/dev/null \
	    || $(BIN)/python -m pip install --quiet --no-deps --index-url $(TORCH_INDEX) --constraint $(LOCK_DEV) torch
	# Then everything else exactly as locked, from PyPI; the project itself last; pip check proves the lock
	# is complete and consistent.
	$(BIN)/python -m pip install --quiet --no-deps -r $(LOCK_DEV)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/segment train --out runs/demo
	@echo "Demo finished: open runs/demo/report.html (also report.md, profile.csv, plots/, bundle/, metrics.json, labels.parquet)"

# Resolve the locks again after a change to pyproject.toml (pins that still fit are kept; `make lock
# LOCK_FLAGS=--upgrade` takes the newest versions the ranges allow); runtime and serve are subsets of dev,
# constrained to it, so no two locks ever disagree on a version.
# Then `make test`, and commit the lock files with the change that needed them.
PIP_COMPILE = $(BIN)/pip-compile --quiet --annotation-style line --strip-extras --no-emit-index-url --no-emit-find-links --allow-unsafe
lock: setup
	$(PIP_COMPILE) $(LOCK_FLAGS) --extra dev --output-file $(LOCK_DEV) pyproject.toml
	$(PIP_COMPILE) --constraint $(LOCK_DEV) --extra all --output-file $(LOCK_RUNTIME) pyproject.toml
	$(PIP_COMPILE) --constraint $(LOCK_DEV) --extra serve --output-file $(LOCK_SERVE) pyproject.toml

lint: setup
	$(BIN)/ruff check src workflows tests benchmarks
	$(BIN)/ruff format --check src workflows tests benchmarks

typecheck: setup
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format src workflows tests benchmarks
	$(BIN)/ruff check --fix src workflows tests benchmarks

# tests/insights/test_report.py opens report.html in a real headless Chromium: install it when missing.
browser:
	@if [ -n "$$CHROMIUM" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
	    || command -v google-chrome >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (for the HTML report test)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "the report test needs Chromium: apt-get install chromium, or set CHROMIUM=/path/to/chrome" >&2; \
	    exit 1; fi

test: setup browser
	$(BIN)/ruff check src workflows tests benchmarks
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/pipeline.py

# 2,000,000 x 120: training (PCA and autoencoder), scoring, the naive baseline; about 15 minutes.
bench-scale: setup
	$(BIN)/python benchmarks/scale.py

# A local Prefect server (SQLite under $(SEGMENT_HOME)/prefect-server), the process pool, the deployments and a
# worker. PREFECT_PORT overrides the port. Then: PREFECT_API_URL=http://127.0.0.1:4200/api prefect deployment run ...
server: setup
	$(BIN)/python -m segmentation_workflows.local_server start

server-stop:
	$(BIN)/python -m segmentation_workflows.local_server stop

clean:
	rm -rf runs .segment .pytest_cache .ruff_cache
