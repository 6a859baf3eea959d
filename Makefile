# handoff — the two commands a newcomer needs are `make demo` and `make test`; both set themselves up.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install demo test test-soak test-fast lint lock warehouse-up warehouse-down clean bench

install: $(INSTALLED)

$(INSTALLED): requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; install Python 3.11 or run make PYTHON=/path/to/python3.11"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/handoff funnel check
	cd dbt_project && DBT_PROFILES_DIR=. HANDOFF_DBT_PASSWORD=unused ../$(BIN)/dbt parse --quiet
	@touch $@

demo: install
	$(BIN)/handoff demo

test: lint
	$(BIN)/handoff warehouse up
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# Soak trials (not part of `make test`): a 30-day backfill against 30 daily runs, dbt SIGKILLed mid-model at
# several random models, the push killed at random points. About 15 minutes here.
test-soak: install
	$(BIN)/handoff warehouse up
	$(BIN)/python -m pytest -q --soak -m soak

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

# The full benchmark: make bench BENCH_ARGS='--tier S' (or --tier M); results in bench/results/.
bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Lint (the first step of `make test`, and the pre-commit hooks): ruff with Airflow's rules; sqlfluff on the dbt
# models, offline (jinja templater with the project's macros, no database; dbt_project/.sqlfluff says which rules).
lint: install
	$(BIN)/ruff check plugins dags tests bench
	PYTHONWARNINGS=ignore::UserWarning $(BIN)/sqlfluff lint dbt_project/models --processes 2 --disable-progress-bar

# Regenerate the lock: a fresh venv from the loose pins in pyproject.toml, then freeze everything exactly.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet -e '.[dev]'
	{ echo "# Full lock of every direct and transitive dependency (make lock regenerates it)."; \
	  .lock-venv/bin/pip freeze --all --exclude-editable | grep -v -e '^pip==' -e '^handoff'; } > requirements.txt
	rm -rf .lock-venv

warehouse-up: install
	$(BIN)/handoff warehouse up

warehouse-down:
	$(BIN)/handoff warehouse down

clean:
	-$(BIN)/handoff warehouse down
	rm -rf .local dbt_project/target dbt_project/logs
