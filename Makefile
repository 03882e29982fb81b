# Every target works from a clean clone: `make install` runs first when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo dev test test-all lint format bench docs db-start db-stop clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

# A small generated export through the Dagster job daily_refresh, on the Dagster
# instance in .dagster_home: `make dev` afterwards shows its run and check results.
demo: install
	$(BIN)/attribution demo

# Dagster webserver + daemon (schedules, sensors) on the platform database and the
# same Dagster instance as `attribution run` and `make demo`.
# `make dev PORT=3111` for another port; a taken port or a daemon already serving this
# storage (a second `make dev`) stops it at once with one line.
PORT ?= 3000
dev: install
	$(BIN)/attribution dev --port $(PORT)

test: install
	$(BIN)/pytest -m "not slow" -n 2 --dist loadfile --durations=15

test-all: install
	$(BIN)/pytest --durations=15

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	cd dbt_project && ../$(BIN)/sqlfluff lint models tests

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Every benchmark at every preset (about an hour); writes docs/benchmarks.md and .json.
# One stage or preset: .venv/bin/python -m benchmarks --preset mvp --stage ingest (see --help).
# The dbt docs site (models, columns, tests, lineage) as one static HTML file.
DBT_DOCS_DIR ?= $(CURDIR)/data/dbt-docs
docs: install
	cd dbt_project && ../$(BIN)/attribution-dbt docs generate --static --target-path $(DBT_DOCS_DIR)
	@echo "dbt docs: open $(DBT_DOCS_DIR)/static_index.html in a browser"

bench: install
	$(BIN)/python -m benchmarks

db-start: install
	$(BIN)/attribution db start

db-stop: install
	$(BIN)/attribution db stop

clean:
	-$(BIN)/attribution db stop
	rm -rf $(VENV) .pgdata data .pytest_cache .ruff_cache
