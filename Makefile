# ResilienceGate developer loop. `make demo` runs the local gate; `make test` runs every test.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: all install system-deps lint test test-fast demo bench clean

all: test

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: system-deps $(STAMP)

# The embedded Postgres needs the server binaries; install them when missing (root on CI machines).
system-deps:
	@bash scripts/ensure-system-deps.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: install lint
	$(BIN)/pytest -q

test-fast: install
	$(BIN)/pytest -q -m "not e2e and not slow"

demo: install
	$(BIN)/resgate run

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) evidence .pytest_cache .ruff_cache
