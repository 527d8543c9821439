# LeadRelay developer commands. `make run` and `make test` install whatever is missing first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SERVICES := intake scoring router sla-monitor
INSTALL_STAMP := $(VENV)/.installed
SOURCES := shared/pyproject.toml $(foreach s,$(SERVICES),services/$(s)/pyproject.toml) requirements-dev.txt constraints.txt

.PHONY: help install run observe test lint format bench clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(INSTALL_STAMP): $(SOURCES)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "LeadRelay needs Python 3.11 or newer (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -r requirements-dev.txt -e shared $(foreach s,$(SERVICES),-e services/$(s))
	@touch $@

install: $(INSTALL_STAMP) ## create .venv and install the services and dev tools

run: install ## start the broker and the four services on embedded defaults (Ctrl-C stops all)
	@$(PY) -m leadrelay.devstack || [ $$? -eq 130 ]  # 130: stopped with Ctrl-C

observe: install ## Prometheus and Alertmanager for a running `make run` stack, alerts on, URLs printed (Ctrl-C stops both; installs Debian's packages when run as root)
	@command -v prometheus >/dev/null && { command -v prometheus-alertmanager || command -v alertmanager; } >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager >/dev/null; \
	  else echo "make observe needs Prometheus and Alertmanager: sudo apt-get install -y --no-install-recommends prometheus prometheus-alertmanager (Debian/Ubuntu)"; exit 1; fi; }
	@$(PY) -m leadrelay.observe || [ $$? -eq 130 ]  # 130: stopped with Ctrl-C

test: install ## run the whole test suite (cross-service tests start a real broker)
	$(PY) -m pytest

lint: install ## ruff (lint and format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install ## scoring, account matching, ICP preview, routing rules and decisions, then the pipeline on SQLite and PostgreSQL (needs wrk; BENCH_ARGS="--backend sqlite ..." passes pipeline flags)
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then apt-get install -y -qq wrk >/dev/null; \
	  else echo "make bench needs wrk: sudo apt-get install -y wrk (Debian/Ubuntu) or brew install wrk (macOS)"; exit 1; fi; }
	$(PY) bench/icp_scoring.py
	$(PY) bench/account_matching.py
	$(PY) bench/icp_preview.py
	$(PY) bench/routing_rules.py
	$(PY) bench/routing_decision.py
	$(PY) bench/sla_timers.py
	$(PY) bench/pipeline.py $(BENCH_ARGS)

clean: ## remove the venv and local databases
	rm -rf $(VENV) var
