# stock-prediction-lstm: every target sets up what it needs (venv, packages, Jupyter kernel).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-setup
KERNEL := stock-lstm

TICKER ?= AAPL
SOURCE ?=

# Make variables that become notebook parameters when set, e.g. `make train EPOCHS=20`: every
# training parameter, read off TrainParams (its one declaration), then the notebooks' own.
TRAIN_PARAM_VARS := $(shell python3 scripts/train_param_vars.py)
PARAM_VARS := $(TRAIN_PARAM_VARS) DAYS HISTORY_DAYS START END FORCE ORIGINS STEP \
	REFIT_EVERY UNIVERSE_DIR UNTIL HELD_OUT
lower = $(shell echo '$(1)' | tr 'A-Z' 'a-z')
PARAMS = $(foreach v,$(PARAM_VARS),$(if $($(v)),-p $(call lower,$(v)) $($(v)),))
SOURCE_FLAG = $(if $(SOURCE),--source $(SOURCE),)
RUN = $(BIN)/stock-lstm run --ticker $(TICKER) $(SOURCE_FLAG) $(PARAMS)

NBVAL = $(BIN)/python -m pytest -q -p no:cacheprovider --nbval-lax --nbval-kernel-name $(KERNEL) \
	--nbval-sanitize-with notebooks/nbval_sanitize.cfg notebooks/

# A variable typed on the command line that no target reads is an error, not a silent
# default: `make train TICKR=MSFT` would otherwise train AAPL.
KNOWN_VARS := TICKER SOURCE $(PARAM_VARS) TICKERS TICKERS_FILE WORKERS EVAL_DIR SEEDS \
	BENCH_ARGS MSG PYTHON RUNS CSV_DIR RUN_ID POSTGRES
COMMAND_LINE_VARS := $(foreach v,$(.VARIABLES),$(if $(filter command line,$(origin $(v))),$(v)))
UNKNOWN_VARS := $(filter-out $(KNOWN_VARS),$(COMMAND_LINE_VARS))
SUGGEST = $(shell python3 scripts/did_you_mean.py $(1) $(2) 2>/dev/null)
ifneq ($(UNKNOWN_VARS),)
$(error unknown variable(s) $(foreach v,$(UNKNOWN_VARS),$(v)$(if $(call SUGGEST,$(v),$(KNOWN_VARS)), ($(call SUGGEST,$(v),$(KNOWN_VARS))),)): known are $(sort $(KNOWN_VARS)))
endif

.DEFAULT_GOAL := help
.PHONY: help setup sync eda train train-all predict pipeline backtest universe evaluate reports compare cluster cluster-status cluster-repair cluster-stop lab api test \
	test-unit test-notebooks test-postgres migration bench \
	lint format notebook-params clean

# A target no rule makes: one line with the closest target and `make help`, exit 2.
TARGETS := $(shell sed -n 's/^\([a-zA-Z_-]*\):.*\#\# .*/\1/p' $(firstword $(MAKEFILE_LIST)))
.DEFAULT:
	$(error no target '$@':$(if $(call SUGGEST,$@,$(TARGETS)), $(call SUGGEST,$@,$(TARGETS)),) `make help` lists them)

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-16s %s\n", $$1, $$2}'

setup: $(STAMP) ## Create .venv, install the package (+dev) and the Jupyter kernel

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (stock-lstm)" >/dev/null
	@# The kernel logs only errors: its "TCP without encryption" warning (loopback, a kernel
	@# of our own) printed on every run and told a reader nothing.
	$(BIN)/python -c "import json, pathlib, sys; p = pathlib.Path(sys.prefix, 'share/jupyter/kernels/$(KERNEL)/kernel.json'); k = json.loads(p.read_text()); k['argv'] += [] if '--log-level=ERROR' in k['argv'] else ['--log-level=ERROR']; p.write_text(json.dumps(k, indent=1))"
	@touch $(STAMP)
	@echo "setup done: .venv ready, kernel '$(KERNEL)' registered"

sync: $(STAMP) ## Notebook 01: fill/refresh TICKER's price cache (SOURCE=csv:DIR offline, FORCE=true)
	$(RUN) sync

eda: $(STAMP) ## Notebook 02: explore TICKER's prices, returns, volatility and the split
	$(RUN) eda

train: $(STAMP) ## Notebook 03: train, compare with persistence, register (EPOCHS=, SEED=, ...)
	$(RUN) train

predict: $(STAMP) ## Notebook 04: forecast DAYS trading days with TICKER's active model
	$(RUN) predict

pipeline: $(STAMP) ## All four notebooks for TICKER in one run
	$(RUN) all

universe: $(STAMP) ## Notebook 06: one network on every universe ticker, served for TICKER (UNTIL=, HELD_OUT=)
	$(RUN) universe

backtest: $(STAMP) ## Notebook 05: walk-forward backtest vs persistence and drift (ORIGINS=, HORIZON=)
	$(RUN) backtest

TICKERS ?=
TICKERS_FILE ?=
TICKERS_FLAGS = $(if $(TICKERS),--tickers $(TICKERS),) $(if $(TICKERS_FILE),--tickers-file $(TICKERS_FILE),) \
	$(if $(CSV_DIR),--csv-dir $(CSV_DIR),)
# --workers only when WORKERS is given on the command line or in the environment: the
# local cluster's own default is one worker process per core.
WORKERS_FLAG = $(if $(filter command line environment,$(origin WORKERS)),--workers $(WORKERS),)
train-all: $(STAMP) ## Notebook 03 for many tickers, one Dask task each (TICKERS=A,B, TICKERS_FILE= or CSV_DIR=; RUN_ID= resumes)
	@test -n "$(TICKERS)$(TICKERS_FILE)$(CSV_DIR)" || { echo "give TICKERS=AAPL,MSFT, TICKERS_FILE=FILE or CSV_DIR=DIR (every <TICKER>.csv)" >&2; exit 2; }
	$(BIN)/stock-lstm run train $(TICKERS_FLAGS) $(WORKERS_FLAG) $(SOURCE_FLAG) $(PARAMS) \
		$(if $(RUN_ID),--run-id $(RUN_ID),)

CLUSTER_WORKERS = $(if $(filter command line environment,$(origin WORKERS)),$(WORKERS),2)
cluster: $(STAMP) ## Start a scheduler and WORKERS (2) worker processes here (POSTGRES=1: a throw-away registry); see docs/cluster.md
	$(BIN)/python scripts/cluster.py start --workers $(CLUSTER_WORKERS) $(if $(POSTGRES),--postgres,)

cluster-status: ## The cluster's processes and their pids
	$(BIN)/python scripts/cluster.py status

cluster-repair: ## Restart the cluster's dead scheduler or workers (its database stays)
	$(BIN)/python scripts/cluster.py repair

cluster-stop: ## Stop the cluster's processes (and delete its throw-away PostgreSQL)
	$(BIN)/python scripts/cluster.py stop

EVAL_DIR ?= ../shared/data/prices
SEEDS ?= 1,2,3
WORKERS ?= 2
evaluate: $(STAMP) ## 500-origin backtests of every ticker in EVAL_DIR beside GARCH-t/EWMA (SEEDS=, WORKERS=) -> bench/evaluation/
	$(BIN)/stock-lstm evaluate --csv-dir $(EVAL_DIR) --seeds $(SEEDS) --workers $(WORKERS) \
		--origins 500 --refit-every 100 --point-model --output-dir bench/evaluation

BENCH_ARGS ?=
bench: $(STAMP) ## Benchmarks on the shared prices -> bench/results.json + a table (BENCH_ARGS="--skip evaluate")
	@command -v wrk >/dev/null || { \
		echo "bench: the API figure needs wrk (an HTTP load generator): installing the Debian package"; \
		if [ "$$(id -u)" = 0 ]; then apt-get install -y -qq wrk >/dev/null 2>&1 || \
			{ apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }; \
		else sudo apt-get install -y -qq wrk; fi || \
		echo "bench: could not install wrk (apt-get install wrk); the API figure will be skipped"; }
	$(BIN)/python -m bench.run $(BENCH_ARGS)

api: $(STAMP) ## Serve the HTTP API on 127.0.0.1:8000 (docs at /docs)
	$(BIN)/stock-lstm serve --host 127.0.0.1 --port 8000

reports: $(STAMP) ## Rebuild reports/index.html
	$(BIN)/stock-lstm reports

compare: $(STAMP) ## Two or more runs side by side, tested differences marked (RUNS="id id")
	$(if $(RUNS),,$(error give the runs: make compare RUNS="RUN_ID RUN_ID" (tick them in reports/index.html)))
	$(BIN)/stock-lstm compare $(RUNS)

# The notebooks folder also holds the nbval plumbing; the file browser hides it.
LAB_HIDDEN := ["conftest.py", "nbval_sanitize.cfg", "__pycache__", "*.pyc", ".ipynb_checkpoints"]
# As root (containers, these machines) Jupyter refuses to start without --allow-root.
LAB_ROOT_FLAG = $(if $(filter 0,$(shell id -u)),--allow-root,)
lab: $(STAMP) ## Open JupyterLab with the stock-lstm kernel (SOURCE= reaches the notebooks' defaults)
	@$(BIN)/python -c "import jupyterlab" 2>/dev/null || $(BIN)/python -m pip install --quiet jupyterlab
	$(if $(SOURCE),STOCK_LSTM_SOURCE=$(SOURCE) ,)$(BIN)/jupyter lab $(LAB_ROOT_FLAG) \
		--ContentsManager.hide_globs='$(LAB_HIDDEN)' notebooks/

test: test-unit test-notebooks ## Run every test: pytest, then the notebooks under nbval

test-unit: $(STAMP) ## pytest tests/
	$(BIN)/python -m pytest -q -p no:cacheprovider tests

test-notebooks: $(STAMP) ## Execute the notebooks with nbval on generated prices (temp folders)
	$(NBVAL)

test-postgres: $(STAMP) ## Database tests + a CLI train/predict on a throw-away PostgreSQL server
	$(BIN)/python scripts/test_postgres.py

MSG ?=
migration: $(STAMP) ## Autogenerate the next Alembic revision from the models (MSG="what changed")
	@test -n "$(MSG)" || { echo 'usage: make migration MSG="what changed"' >&2; exit 2; }
	$(BIN)/python -m stock_lstm.db revision -m "$(MSG)"
	$(BIN)/ruff check --fix --quiet src/stock_lstm/db/migrations/versions
	$(BIN)/ruff format --quiet src/stock_lstm/db/migrations/versions

lint: $(STAMP) ## ruff check + ruff format --check, and notebook 03's parameters current
	$(BIN)/ruff check src tests notebooks scripts bench
	$(BIN)/ruff format --check src tests notebooks scripts bench
	$(BIN)/python scripts/notebook_params.py --check

notebook-params: $(STAMP) ## Write notebook 03's training parameters from TrainParams
	$(BIN)/python scripts/notebook_params.py

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix src tests notebooks scripts bench
	$(BIN)/ruff format src tests notebooks scripts bench

clean: ## Remove the venv and caches (keeps data/, models/, reports/)
	rm -rf $(VENV) .pytest_cache .ruff_cache
