# Relink — `make demo` starts everything on this machine, `make test` runs the test suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000

.PHONY: demo test lint format install install-dev lock messages clean help
.DEFAULT_GOAL := help

help:
	@echo "make demo   install, migrate, seed demo data, start web + Celery worker + beat"
	@echo "make test   install dev requirements and run the whole test suite"
	@echo "make lint   ruff, ruff format --check, mypy, makemigrations --check"
	@echo "make format apply ruff's fixes and formatter"
	@echo "make lock   re-pin requirements*.txt (hashed) from requirements*.in"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Relink needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip==26.3

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	@touch $@

# requirements-dev.txt holds the runtime set at the versions of requirements.txt plus the test tools.
$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# The lock files: every transitive package pinned with its hashes, so a deploy installs exactly
# what CI tested (pip checks the hashes). Edit requirements*.in, then run this.
LOCK = $(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.11 --custom-compile-command "make lock"
lock: install-dev
	$(LOCK) --output-file=requirements.txt requirements.in
	$(LOCK) --output-file=requirements-dev.txt requirements-dev.in

# Compile the translation catalogs (locale/*/LC_MESSAGES/*.po → .mo, git-ignored) in pure Python.
# The command reads no secrets; DEBUG=1 only lets the settings load without them.
messages: install
	DEBUG=1 $(BIN)/python manage.py compile_catalogs

demo: install messages
	PORT=$(PORT) PYTHON=$(BIN)/python bin/demo

test: install-dev messages
	$(BIN)/pytest $(PYTEST_ARGS)

# The gate CI runs before the tests. DEBUG=1 only lets the settings load without secrets; the
# migrations check compares models with migration files and needs no database.
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	DEBUG=1 DATABASE_URL=sqlite://:memory: $(BIN)/python manage.py makemigrations --check --dry-run

format: install-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf var/ .pytest_cache/
