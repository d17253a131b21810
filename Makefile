# The two Quickstart commands. Each creates .venv when missing and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test scale-check clean-venv

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "PHI Gate needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	touch $@ $(VENV)/.installed-run

## make run: initialise ./var on first use, seed the demo, print its credentials, serve on 127.0.0.1:8000
run: $(VENV)/.installed-run
	$(BIN)/phigate demo
	$(BIN)/phigate serve

## make test: the whole suite, SQLite and PostgreSQL lanes, browser tests, storage and crypto contracts
test: $(VENV)/.installed-test
	$(BIN)/python scripts/run_tests.py

## make scale-check: three replicas behind nginx TLS on PostgreSQL + S3/KMS (moto), 20 clients, one replica SIGKILLed
scale-check: $(VENV)/.installed-test
	$(BIN)/python bench/scale.py

clean-venv:
	rm -rf $(VENV)
