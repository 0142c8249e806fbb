# Relink — `make demo` starts everything on this machine, `make test` runs the test suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8000

.PHONY: demo test install install-dev messages clean help
.DEFAULT_GOAL := help

help:
	@echo "make demo   install, migrate, seed demo data, start web + Celery worker + beat"
	@echo "make test   install dev requirements and run the whole test suite"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Relink needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	@touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# Compile the translation catalogs (locale/*/LC_MESSAGES/*.po → .mo, git-ignored) in pure Python.
# The command reads no secrets; DEBUG=1 only lets the settings load without them.
messages: install
	DEBUG=1 $(BIN)/python manage.py compile_catalogs

demo: install messages
	PORT=$(PORT) PYTHON=$(BIN)/python bin/demo

test: install-dev messages
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf var/ .pytest_cache/
