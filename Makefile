# Quick start: `make demo` (set up + train on the bundled CC GENERAL data), `make test` (set up + full test suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export SEGMENT_HOME ?= $(CURDIR)/.segment

.PHONY: setup browser demo test lint typecheck format bench bench-scale server server-stop clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch is pinned (==2.13.0) in pyproject.toml: the CPU build, not a multi-GB CUDA one.
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/segment train --out runs/demo
	@echo "Demo finished: open runs/demo/report.html (also report.md, profile.csv, plots/, bundle/, metrics.json, labels.parquet)"

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
	$(BIN)/python -m workflows.local_server start

server-stop:
	$(BIN)/python -m workflows.local_server stop

clean:
	rm -rf runs .segment .pytest_cache .ruff_cache
