# Quick start: `make demo` (set up + train on the bundled CC GENERAL data), `make test` (set up + full test suite).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export SEGMENT_HOME ?= $(CURDIR)/.segment

.PHONY: setup demo test lint format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch is pinned (==2.13.0) in pyproject.toml: the CPU build, not a multi-GB CUDA one.
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/segment train --out runs/demo
	@echo "Demo finished: runs/demo/ holds bundle/, metrics.json, labels.parquet, profile.csv and plots/"

lint: setup
	$(BIN)/ruff check src workflows tests benchmarks
	$(BIN)/ruff format --check src workflows tests benchmarks

format: setup
	$(BIN)/ruff format src workflows tests benchmarks
	$(BIN)/ruff check --fix src workflows tests benchmarks

test: setup
	$(BIN)/ruff check src workflows tests benchmarks
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/pipeline.py

clean:
	rm -rf runs .segment .pytest_cache .ruff_cache
