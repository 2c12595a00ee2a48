# Two commands for a new user: `make demo` runs refracture with a synthetic cohort, `make test` runs the checks.
# Both create .venv on first use; both use PostgreSQL and Redis at their default local addresses when they
# answer, and otherwise start private ones from pip packages in a temporary folder.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint openapi clean

$(VENV)/.local-installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[local]'
	touch $@

$(VENV)/.test-installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@ $(VENV)/.local-installed

demo: $(VENV)/.local-installed
	$(BIN)/refracture demo

test: $(VENV)/.test-installed lint
	$(BIN)/pytest

lint: $(VENV)/.test-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/bandit -q -c pyproject.toml -r service workers

# Every benchmark, then docs/performance.md regenerated from their results (about an hour on 2 CPUs);
# `make bench BENCH_ARGS=--quick` for short runs, `BENCH_ARGS="--only load"` for one.
.PHONY: bench
bench: $(VENV)/.test-installed
	$(BIN)/python -m bench.report $(BENCH_ARGS)

openapi: $(VENV)/.test-installed
	$(BIN)/refracture openapi --out openapi/openapi.json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache tests/artifacts
