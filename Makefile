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

# GNU make exits 2 whenever a recipe fails, so the gate's own exit code (0 pass, 1 failed, 2 could not
# run) is printed here; `.venv/bin/resgate run` returns it directly.
demo: install
	@$(BIN)/resgate run $(CONFIG); rc=$$?; \
	case $$rc in 0) ;; 1) echo "resgate exit code 1: the gate FAILED" >&2 ;; \
	*) echo "resgate exit code $$rc: the gate could not run" >&2 ;; esac; exit $$rc

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) evidence .pytest_cache .ruff_cache
