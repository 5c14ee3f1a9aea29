# Two commands set up everything on a fresh machine:
#   make demo   start the local stack and release the sample app to it
#   make test   the whole test suite (unit, integration against the real engine
#               and registry, e2e against the real cluster)
#   make pipeline   the Dx29 pipeline end to end on the stack: develop -> dev, main -> test,
#               test's digests -> prod, checks alone on each, the status (scripts/pipeline)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK_ENV = eval "$$(stack/env)"

.PHONY: demo test unit stack stack-down venv node browser lint bench clean pipeline

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	$(VENV)/bin/pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

node: node_modules/.installed

browser:
	@command -v chromium >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; }

stack:
	stack/up

stack-down:
	stack/down

demo: venv node stack
	$(STACK_ENV) && $(VENV)/bin/pytest runbook --env local
	@echo "report: $$(readlink -f reports/local/latest)/index.html"

# From a clean main of this repository, with the stack up (stack/up).
pipeline: venv node
	scripts/pipeline

unit: venv
	$(VENV)/bin/pytest tests/unit -q

# The lifecycle tests stop and restart the stack, so they run after the rest.
test: venv node browser stack
	$(STACK_ENV) && $(VENV)/bin/pytest tests -m "not lifecycle"
	$(STACK_ENV) && $(VENV)/bin/pytest tests/stack -m lifecycle

lint: venv
	$(VENV)/bin/ruff check src runbook checks tests bench conftest.py
	$(VENV)/bin/ruff format --check src runbook checks tests bench conftest.py
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

bench: venv stack
	$(STACK_ENV) && $(PY) -m bench

clean:
	rm -rf reports/*/ .pytest_cache
