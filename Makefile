# The two Quickstart commands. Each creates .venv when missing and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: run test lint test-minimum scale-check clean-venv

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "PHI Gate needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)

# Dependencies come from the lock files only (exact versions, every file's hash checked);
# the project itself goes in without dependencies. scripts/lock.sh regenerates the locks.
$(VENV)/.installed-run: pyproject.toml requirements/run.txt | $(BIN)/python
	$(PIP) --require-hashes -r requirements/run.txt
	$(PIP) --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml requirements/test.txt | $(BIN)/python
	$(PIP) --require-hashes -r requirements/test.txt
	$(PIP) --no-deps --no-build-isolation -e .
	touch $@ $(VENV)/.installed-run

## make run: initialise ./var on first use, seed the demo, print its credentials, serve on 127.0.0.1:8000
run: $(VENV)/.installed-run
	$(BIN)/phigate demo
	$(BIN)/phigate serve

## make test: the whole suite, SQLite and PostgreSQL lanes, browser tests, storage and crypto contracts
test: $(VENV)/.installed-test
	$(BIN)/python scripts/run_tests.py

## make lint: ruff check, ruff format --check and mypy, as configured in pyproject.toml (scripts/check.sh)
lint: $(VENV)/.installed-test
	bash scripts/check.sh

## make test-minimum: the fast lane against the declared minimum versions, in .venv-minimum (scripts/test_minimum.sh)
test-minimum:
	bash scripts/test_minimum.sh

## make scale-check: three replicas behind nginx TLS on PostgreSQL + S3/KMS (moto), 20 clients, one replica SIGKILLed
scale-check: $(VENV)/.installed-test
	$(BIN)/python bench/scale.py

clean-venv:
	rm -rf $(VENV) .venv-minimum
