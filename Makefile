# Two commands for a newcomer: `make run` and `make test`. Everything else is their plumbing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.linli-installed
TEST_STAMP := $(VENV)/.linli-test-installed
WEB_STAMP := web/node_modules/.linli-installed

.PHONY: run test lint typecheck install install-test web clean bench

run: install web
	$(PY) -m server serve

test: install-test web lint typecheck
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install-test
	$(VENV)/bin/ruff check server realtime media commerce tests bench

typecheck: install-test
	$(VENV)/bin/mypy

install: $(STAMP)
install-test: $(TEST_STAMP)
web: $(WEB_STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e .
	touch $@

$(TEST_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

$(WEB_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

bench: install-test
	$(PY) bench/flash_sale.py

clean:
	rm -rf $(VENV) web/node_modules var .mypy_cache .ruff_cache .pytest_cache
