# handoff — the two commands a newcomer needs are `make demo` and `make test`; both set themselves up.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
INSTALLED_DEV := $(VENV)/.installed-dev

.PHONY: install install-dev demo test browser test-soak test-airflow test-fast lint lock warehouse-up warehouse-down \
	airflow-up airflow-up-celery airflow-down test-celery test-watcher clean bench

# install: what a deployment and `make demo` need (requirements.txt). install-dev adds the test, benchmark and
# lint tools (requirements-dev.txt); make test, make bench and make lint install it.
install: $(INSTALLED)

install-dev: $(INSTALLED_DEV)

$(INSTALLED): requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/handoff funnel check
	cd dbt_project && DBT_PROFILES_DIR=. HANDOFF_DBT_PASSWORD=unused ../$(BIN)/dbt parse --quiet
	@touch $@

$(INSTALLED_DEV): $(INSTALLED) requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

demo: install
	$(BIN)/handoff demo

test: lint browser
	$(BIN)/handoff warehouse up
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# The dashboard's browser test drives Debian's chromium (Playwright with executable_path: no browser download).
# Installed here when missing and apt-get is at hand; without it the test skips and says why.
browser:
	@command -v chromium >/dev/null || ! command -v apt-get >/dev/null || \
	  { echo "make: installing Debian's chromium and chromium-driver for the dashboard's browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

# Soak trials (not part of `make test`): a 30-day backfill against 30 daily runs, two weeks of daily runs with late
# events, a CRM contact going and coming back, a contact-day losing its facts (each against a full refresh), dbt
# SIGKILLed mid-model at several random models, the push killed at random points, the daily run again through the
# LocalExecutor, the 5,000-contact channel ranking and rule lift. About 25 minutes here.
test-soak: install-dev
	$(BIN)/handoff warehouse up
	$(BIN)/python -m pytest -q --soak -m soak

# Real Airflow services (not part of `make test`): `handoff airflow up`, a day triggered and triggered again through
# the REST API, a two-day backfill, `handoff airflow down`. About 5 minutes here (2 cores, quiet), not in `make test`. Its own --basetemp:
# pytest prunes /tmp/pytest-of-$USER down to the latest three runs, so a parallel pytest would delete its home.
test-airflow: install-dev
	$(BIN)/python -m pytest -q -s --airflow-services -m airflow_services --basetemp .local/pytest-airflow

# The same DAG on Airflow's CeleryExecutor (not part of `make test`): `handoff airflow up --executor celery` (Redis,
# two Celery workers; apt-get install redis-server first), a day triggered through the REST API, its marts compared
# by content hash with a LocalExecutor run of the same day on the same sample. Its own --basetemp, as test-airflow.
test-celery: install-dev
	$(BIN)/python -m pytest -q -s --airflow-celery -m airflow_celery --basetemp .local/pytest-celery

# Cosmos's watcher execution mode through the scheduler (not part of `make test`): `handoff airflow up` with
# HANDOFF_DBT_EXECUTION_MODE=watcher (one producer `dbt build`, a deferrable sensor per model and per model's tests),
# a day triggered through the REST API, its marts compared by content hash with a local-mode run of the same day on
# the same sample. Its own --basetemp, as test-airflow.
test-watcher: install-dev
	$(BIN)/python -m pytest -q -s --airflow-watcher -m airflow_watcher --basetemp .local/pytest-watcher

test-fast: install-dev
	$(BIN)/python -m pytest -q -m "not slow"

# The full benchmark: make bench BENCH_ARGS='--tier S' (or --tier M); results in bench/results/.
bench: install-dev
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Lint (the first step of `make test`, and the pre-commit hooks): ruff with Airflow's rules; sqlfluff on the dbt
# models, offline (jinja templater with the project's macros, no database; dbt_project/.sqlfluff says which rules).
lint: install-dev
	$(BIN)/ruff check plugins dags tests bench
	PYTHONWARNINGS=ignore::UserWarning $(BIN)/sqlfluff lint dbt_project/models --processes 2 --disable-progress-bar

# Regenerate both locks: a fresh venv from the loose pins in pyproject.toml, frozen exactly: first the runtime
# (requirements.txt), then the dev extra added within those pins (requirements-dev.txt: -r requirements.txt plus
# what the dev tools add). A current setuptools first: the venv's bundled one is older than dlt allows (>=65.6).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade setuptools
	.lock-venv/bin/pip install --quiet -e .
	{ echo "# Runtime lock: every direct and transitive dependency of a deployment and \`make demo\`, exactly (make lock"; \
	  echo "# regenerates it). Tests, benchmark and lint tools are in requirements-dev.txt."; \
	  .lock-venv/bin/pip freeze --all --exclude-editable | grep -v -e '^pip==' -e '^handoff'; } > requirements.txt
	.lock-venv/bin/pip install --quiet -c requirements.txt -e '.[dev]'
	{ echo "# Development lock: the runtime lock plus the test, benchmark and lint tools and their dependencies, exactly"; \
	  echo "# (make lock regenerates it; make test, make bench and make lint install it)."; \
	  echo "-r requirements.txt"; \
	  .lock-venv/bin/pip freeze --all --exclude-editable | grep -v -e '^pip==' -e '^handoff' \
	    | grep -v -x -F -f <(grep -v '^#' requirements.txt); } > requirements-dev.txt
	rm -rf .lock-venv

warehouse-up: install
	$(BIN)/handoff warehouse up

warehouse-down:
	$(BIN)/handoff warehouse down

# Real Airflow 3 (api-server, scheduler, dag-processor, triggerer) on this machine: the UI's URL and the admin
# password are printed by the first `make airflow-up`; `handoff airflow status` says what runs.
airflow-up: install
	$(BIN)/handoff airflow up $(AIRFLOW_ARGS)

# The same on Airflow's CeleryExecutor: Redis (apt-get install redis-server) as the broker, two Celery workers.
airflow-up-celery: install
	$(BIN)/handoff airflow up --executor celery $(AIRFLOW_ARGS)

airflow-down:
	$(BIN)/handoff airflow down

clean:
	-$(BIN)/handoff warehouse down
	rm -rf .local dbt_project/target dbt_project/logs
