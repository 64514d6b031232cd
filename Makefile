# Everything from nothing: `make demo` and `make test` create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP) $@

demo: $(STAMP)
	$(BIN)/theradose simulate designs/three_plus_three.toml designs/boin.toml \
		--scenarios designs/scenarios.toml --trials 10000 --seed 1 --exact
	@echo
	@echo "The same BOIN with and without organ-dose limits, on dosimetry-driven patients:"
	$(BIN)/theradose simulate designs/boin_psma.toml designs/boin_psma_dosimetry.toml \
		--scenarios designs/dosimetry_scenarios.toml --trials 4000 --seed 1

test: $(DEV_STAMP)
	$(BIN)/python -m ruff check src tests benchmarks
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_engine.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
