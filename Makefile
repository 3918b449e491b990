# insights-mover — two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
CHECKOV_VENV := .venv-checkov
CHECKOV    := $(CHECKOV_VENV)/bin/checkov

.PHONY: help deps run test unit integration integration-identity lint fault fuzz bench bench-scale clean

help:
	@echo "make run    - local stack: Azurite + query API emulator + the function app (planner + 2 queue workers; Ctrl-C stops)"
	@echo "make test   - unit, function, integration and infra tests (starts Azurite itself; checkov in .venv-checkov)"
	@echo "make lint   - ruff + mypy + import layers and cycles (import-linter) + checkov over infra/"
	@echo "make fault  - fault suite: inline runners, then the randomized queue run (planner/worker kills, CLI replays, re-sweeps, storage restart, query and queue faults); FAULTS {...}"
	@echo "make fuzz   - bad-input suite: 300 malformed requests + 200 malformed settings; prints FUZZ {...}"
	@echo "make bench  - 1M-row hour benchmark; prints BENCH {...}"
	@echo "make bench-scale - plan cost and status (JSON, page, verify, idle check) at a month and a year, queue backfill with 1/2/4 workers, parallel sub-queries; BENCH-SCALE {...}"

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

deps: $(STAMP) $(NODE_STAMP)

# checkov lives in its own venv: its dependencies would move the app's pins.
$(CHECKOV): infra/requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r infra/requirements-checkov.txt
	touch $@

run: deps
	$(PY) -m devtools.localhost

test: deps $(CHECKOV)
	$(PY) -m pytest -q tests

unit: deps
	$(PY) -m pytest -q tests/unit

integration: deps
	$(PY) -m pytest -q tests/integration tests/functions

integration-identity: deps  # the integration tests through the local managed-identity endpoint
	MOVER_TEST_AUTH=managed_identity $(PY) -m pytest -q tests/integration tests/functions
	MOVER_TEST_AUTH=entra $(PY) -m pytest -q tests/integration tests/functions

lint: deps $(CHECKOV)
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports --no-cache
	$(CHECKOV) -d infra --framework bicep --skip-download --quiet --compact

fault: deps
	$(PY) -m devtools.faultsuite
	$(PY) -m devtools.faultsuite --queue --seed $(or $(SEED),random)

fuzz: deps
	$(PY) -m devtools.fuzz

bench: deps
	$(PY) -m bench.run

bench-scale: deps
	$(PY) -m bench.scale

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .devstack .pytest_cache .mypy_cache .ruff_cache
