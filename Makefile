# Everything runs from the project's own virtualenv; all state goes under $(CHURN_HOME).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin

export CHURN_HOME ?= $(CURDIR)/.churn
export AIRFLOW_HOME ?= $(CHURN_HOME)/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export GX_ANALYTICS_ENABLED := false
# airflow standalone starts its components as `airflow ...` subprocesses found on PATH.
export PATH := $(BIN):$(PATH)

SCORE_DATE ?= $(shell date -u +%F)
TRAINING_ROWS ?= 20000
SCORING_ROWS ?= 5000

.PHONY: install data airflow-db demo test lint airflow mlflow clean

# The Compose Specification's JSON schema, taken from a PyPI wheel that ships it, for the
# test that validates docker-compose.yaml where no Docker engine runs. Its code is never run.
COMPOSE_SCHEMA := $(VENV)/share/compose-spec/compose_spec.json
COMPOSE_SCHEMA_WHEEL := docker-compose==1.29.2

install: $(VENV)/.installed $(COMPOSE_SCHEMA)

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(COMPOSE_SCHEMA): | $(VENV)/.installed
	$(BIN)/pip download --quiet --no-deps --dest $(VENV)/share/compose-spec $(COMPOSE_SCHEMA_WHEEL)
	$(BIN)/python -c "import glob, sys, zipfile; \
	wheel = zipfile.ZipFile(glob.glob('$(VENV)/share/compose-spec/docker_compose-*.whl')[0]); \
	open(sys.argv[1], 'wb').write(wheel.read('compose/config/compose_spec.json'))" $@

# Demo snapshots from the bundled generator; delete them (or `make clean`) to regenerate.
data: $(CHURN_HOME)/sources/training.csv

$(CHURN_HOME)/sources/training.csv: | install
	$(BIN)/churn-generate --out $(CHURN_HOME)/sources --training-rows $(TRAINING_ROWS) --scoring-rows $(SCORING_ROWS)

airflow-db: install
	$(BIN)/airflow db migrate > /dev/null

demo: install data airflow-db
	$(BIN)/python scripts/run_demo.py --score-date $(SCORE_DATE) $(DEMO_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: install lint
	$(BIN)/pytest

airflow: install data airflow-db
	$(BIN)/airflow standalone

mlflow: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CHURN_HOME)/mlflow/mlflow.db --host 127.0.0.1 --port 5000

clean:
	rm -rf $(CHURN_HOME)
