# Quick start: `make demo` (set up + run the three routes on the bundled demo data)
#              `make test` (set up + run the test suite)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export KEDRO_DISABLE_TELEMETRY := true
export MLFLOW_DISABLE_TELEMETRY ?= true

.PHONY: setup demo test lint demo-data clean-outputs mlflow-ui

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: setup
	$(BIN)/kedro run --pipelines=in_domain,out_of_domain,two_stage

test: setup
	$(BIN)/python -m pytest

# Browse the tracked runs (MLflow's UI on http://127.0.0.1:5000, local store in mlruns/).
mlflow-ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --port 5000

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

# Rebuild data/01_raw/demo_{source,target}.zip from the seeded generator.
demo-data: setup
	$(BIN)/python -m plankton_kedro.demo_data --out data/01_raw

# Delete every run output (versions included) under data/02_intermediate … 08_reporting.
clean-outputs:
	find data/0[2-8]_* -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
