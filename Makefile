# Two commands for a newcomer: `make run` and `make test`. Everything else is their plumbing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.linli-installed
TEST_STAMP := $(VENV)/.linli-test-installed
WEB_STAMP := web/node_modules/.linli-installed
# Every install comes from these hash-pinned locks; pyproject.toml keeps the ranges the package
# supports. `make lock` regenerates them keeping current pins; `make lock LOCK_ARGS=--upgrade`
# (or `LOCK_ARGS="--upgrade-package aiortc"`) moves versions on purpose.
LOCK := requirements/lock.txt
TEST_LOCK := requirements/lock-test.txt
PIP_VERSION := 26.3
PIP_TOOLS := pip-tools==7.6.2
COMPILE = CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --generate-hashes \
	--allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links $(LOCK_ARGS)
# Three workers on two cores: a quarter of the fast lane's time is tests waiting on the clock
# (holds expiring, sync intervals, deadlines), which a third worker fills. Tests of one
# `xdist_group` run on one worker, so a module-scoped world is built once.
FAST_ARGS ?= -n 3 --dist loadgroup
# The whole suite on two workers, tests handed out as workers free up (its Chromium, media and
# process tests last from a second to a minute, so fixed shares would leave one worker idle).
# Each worker has its own Redis and databases; every test picks free ports.
TEST_ARGS ?= -n 2 --dist worksteal

.PHONY: run test test-fast lint typecheck install install-test web clean bench lock

run: install web
	$(PY) -m server serve

test: install-test web lint typecheck
	$(PY) -m pytest $(TEST_ARGS) $(PYTEST_ARGS)

# Unit and in-process app tests on SQLite, spread over the cores: a minute, for the edit loop.
# The twenty-at-once races, the migrations run down and up on data and the payment and WeChat
# providers' protocol tests stay for `make test`: they are rarely what an edit breaks first.
# Bytecode caches stay on even where PYTHONDONTWRITEBYTECODE is set: without them every worker
# re-compiles the app and re-writes pytest's asserts in each plugin, seconds per worker per run.
test-fast: install-test
	PYTHONDONTWRITEBYTECODE= $(PY) -m pytest -m "(unit or app) and not (postgres or slow or races or migrations or providers)" $(FAST_ARGS) $(PYTEST_ARGS)

# ruff, then the import contracts in pyproject.toml (the layers of docs/ARCHITECTURE.md).
lint: install-test
	$(VENV)/bin/ruff check infra server realtime media commerce cluster trust payments tests bench scripts
	$(VENV)/bin/lint-imports

typecheck: install-test
	$(VENV)/bin/mypy

install: $(STAMP)
install-test: $(TEST_STAMP)
web: $(WEB_STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet pip==$(PIP_VERSION)

$(STAMP): pyproject.toml $(LOCK) | $(VENV)/bin/python
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

$(TEST_STAMP): pyproject.toml $(TEST_LOCK) | $(VENV)/bin/python
	$(PY) -m pip install --quiet --require-hashes -r $(TEST_LOCK)
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# The test lock is resolved under the runtime lock, so both pin the same runtime versions.
lock: | $(VENV)/bin/python
	$(PY) -m pip install --quiet $(PIP_TOOLS)
	$(COMPILE) --output-file=$(LOCK) pyproject.toml
	$(COMPILE) --extra=test --constraint=$(LOCK) --output-file=$(TEST_LOCK) pyproject.toml

$(WEB_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

bench: install-test
	$(PY) bench/flash_sale.py

clean:
	rm -rf $(VENV) web/node_modules var .mypy_cache .ruff_cache .pytest_cache .import_linter_cache
