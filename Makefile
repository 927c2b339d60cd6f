# The README's commands. `make test` is what CI runs.
PYTHON ?= python
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export PLAID_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: install test lint bench

install:
	$(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e ".[dev]"

test:
	$(PYTHON) -m pytest tests -q

lint:
	$(PYTHON) -m ruff check plaid recipes tests benchmarks

bench:
	$(PYTHON) benchmarks/bench_encode.py
