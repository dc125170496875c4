# The front door. `make demo` and `make test` set everything up themselves on a machine that
# has only Python 3.11 and make: a private uv (in .tools/) installs the locked environment.
SHELL := /bin/bash
PYTHON ?= python3.11
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export PREFECT_HOME ?= $(CURDIR)/data/prefect
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
HT := $(VENV)/bin/ht
# DATA=<folder> points a target at another data folder, e.g. `make report DATA=data/demo`
# (every `ht` command takes the same as --data-dir). Unset: HT_DATA_DIR, else data/.
DATA ?=
DATA_DIR := $(if $(DATA),--data-dir $(DATA))
# A DuckDB CLI of the 1.4 LTS line, for the test that the published file opens there too.
DUCKDB_LTS_VERSION := 1.4.4.post2
DUCKDB_LTS := $(TOOLS)/duckdb-1.4/bin/duckdb

.DEFAULT_GOAL := help
.PHONY: help install browser demo test test-fast lint run serve deploy docs report shell bench clean

help: ## List the commands
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --quiet
	@touch $@

$(DUCKDB_LTS): $(UV)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check --no-deps \
	  --target $(TOOLS)/duckdb-1.4 "duckdb-cli==$(DUCKDB_LTS_VERSION)"
	@test -x $@ && touch $@

install: $(VENV)/.synced $(DUCKDB_LTS) ## Create or update the locked environment in .venv

demo: install ## The whole pipeline end to end against the simulated API (writes data/demo/)
	$(HT) demo $(DATA_DIR)

# Two workers (pytest-xdist), a test file each at a time (its module fixtures are built
# once): most integration time is spent waiting on child processes and servers.
test: install lint browser ## Lint, then unit, dbt, integration and browser tests
	$(PY) -m pytest -q --durations=15 -n 2 --dist loadfile

test-fast: install ## Unit tests only (no lint, browser, server or pipeline): the inner loop
	$(PY) -m pytest -q --durations=15 -m "not integration and not browser" tests/unit

browser: ## Headless Chromium for the browser tests (Debian's package; needs root or sudo)
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium for the browser tests..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

run: install ## Run the pipeline once (needs HT_API_TOKEN, see .env.example)
	$(HT) run $(DATA_DIR)

lint: install ## ruff (Python) and sqlfluff (dbt models)
	$(VENV)/bin/ruff check flows tests bench simulator
	$(VENV)/bin/ruff format --check flows tests bench simulator
	cd dbt_project && ../$(VENV)/bin/sqlfluff lint models --processes 2

serve: install ## Run the pipeline on its schedule (HT_SCHEDULE_CRON) until stopped
	$(HT) serve $(DATA_DIR)

deploy: install ## Register the schedules on your own Prefect server (prefect.yaml; teams)
	$(HT) deploy $(DATA_DIR)

docs: install ## Build the dbt docs site and serve docs and reports on localhost
	$(HT) docs --serve $(DATA_DIR)

report: install ## Write the heatmap report from the analytics database (reports/)
	$(HT) report $(DATA_DIR)

shell: install ## The DuckDB CLI on analytics.duckdb, read-only, schema marts first
	$(HT) shell $(DATA_DIR)

bench: install ## Benchmarks: writes bench/results/<date>.md and .json
	$(PY) -m bench.run

clean: ## Remove everything under data/ (the archive too: it cannot be rebuilt!)
	@read -p "Delete data/ including the raw archive? [y/N] " ans && [ "$$ans" = y ] && find data -mindepth 1 ! -name README.md -delete || true
