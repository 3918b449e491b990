# insights-mover — two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: help deps run test unit integration lint fault fuzz bench clean

help:
	@echo "make run    - local stack: Azurite + query API emulator + the function app's triggers (Ctrl-C stops)"
	@echo "make test   - unit, function and integration tests (starts Azurite itself)"
	@echo "make lint   - ruff + mypy"
	@echo "make fault  - fault suite: kills, throttling, truncation, storage restart; prints FAULTS {...}"
	@echo "make fuzz   - bad-input suite: 300 malformed requests + 200 malformed settings; prints FUZZ {...}"
	@echo "make bench  - 1M-row hour benchmark; prints BENCH {...}"

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

deps: $(STAMP) $(NODE_STAMP)

run: deps
	$(PY) -m devtools.localhost

test: deps
	$(PY) -m pytest -q tests

unit: deps
	$(PY) -m pytest -q tests/unit

integration: deps
	$(PY) -m pytest -q tests/integration tests/functions

lint: deps
	$(PY) -m ruff check .
	$(PY) -m mypy

fault: deps
	$(PY) -m devtools.faultsuite

fuzz: deps
	$(PY) -m devtools.fuzz

bench: deps
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) node_modules .devstack .pytest_cache .mypy_cache .ruff_cache
