# One entry point for humans and CI. Every target sets up what it needs on a fresh machine.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: venv run test test-fast lint typecheck contracts bench bench-render kube-bins nats-debian clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## The service on its embedded default: a local nats-server, the GitOps applier into a local repository.
run: $(STAMP)
	$(BIN)/sandboxd dev

## The whole suite, real nats-server and kube-apiserver included (built on first use).
test: $(STAMP) kube-bins
	$(BIN)/python -m pytest

## Unit tests only (no servers).
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests/unit

lint: $(STAMP)
	$(BIN)/ruff check service tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

## Regenerate contracts/schemas from the pydantic models (a test fails when they drift).
contracts: $(STAMP)
	$(BIN)/python -m sandboxd.contracts_export contracts/schemas

kube-bins:
	@if command -v go >/dev/null 2>&1 && [ -x tools/kube/build.sh ]; then bash tools/kube/build.sh >/dev/null; fi

bench: $(STAMP)
	$(BIN)/python -m bench.spine

bench-render: $(STAMP)
	$(BIN)/python -m bench.render

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
