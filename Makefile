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

# The local UIs of `make airflow` and `make mlflow`: on this machine only (127.0.0.1) unless
# UI_HOST says otherwise (0.0.0.0: every interface). Exported for the demo's hints.
export UI_HOST ?= 127.0.0.1
export AIRFLOW_PORT ?= 8080
export MLFLOW_PORT ?= 5000
# Where Airflow's links and its tasks' Execution API calls reach the API server.
AIRFLOW_URL = http://$(if $(filter 0.0.0.0 ::,$(UI_HOST)),127.0.0.1,$(UI_HOST)):$(AIRFLOW_PORT)

SCORE_DATE ?= $(shell date -u +%F)
TRAINING_ROWS ?= 20000
SCORING_ROWS ?= 5000

.PHONY: install lock data airflow-db demo scores forget-date raci test test-fast lint airflow mlflow bench-score bench-phases bench-dag bench-stages clean

# pyproject.toml declares the dependencies (the `dev` extra adds the test tools); constraints.txt
# locks every transitive version. Airflow's own constraints file is used first when reachable.
AIRFLOW_VERSION := $(shell sed -n 's/^ *"apache-airflow==\([^"]*\)".*/\1/p' pyproject.toml)
POSTGRES_PROVIDER_VERSION := $(shell sed -n 's/^ *"apache-airflow-providers-postgres==\([^"]*\)".*/\1/p' pyproject.toml)
PYTHON_MINOR = $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
AIRFLOW_CONSTRAINTS_URL = https://raw.githubusercontent.com/apache/airflow/constraints-$(AIRFLOW_VERSION)/constraints-$(PYTHON_MINOR).txt
AIRFLOW_CONSTRAINTS := $(VENV)/airflow-constraints.txt
LOCK_VENV ?= $(or $(TMPDIR),/tmp)/churn-pipeline-lock-venv

# The Compose Specification's JSON schema (the official one, draft 2020-12), as check-jsonschema
# vendors it in its PyPI wheel, for the test that validates docker-compose.yaml where no Docker
# engine runs. The wheel is only unpacked; its code is never installed or run.
COMPOSE_SCHEMA := $(VENV)/share/compose-spec/compose_spec.json
COMPOSE_SCHEMA_VERSION := 0.39.0
COMPOSE_SCHEMA_WHEEL := $(VENV)/share/compose-spec/check_jsonschema-$(COMPOSE_SCHEMA_VERSION)-py3-none-any.whl

# Fetches Airflow's constraints with a 10 s limit on the whole attempt (DNS included) and says
# in one line whether they are used; never fails the install.
define FETCH_AIRFLOW_CONSTRAINTS
import sys, threading, urllib.request

url, dest = sys.argv[1:]
result = {}


def fetch():
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            result["text"] = response.read()
    except Exception as error:
        result["error"] = error


thread = threading.Thread(target=fetch, daemon=True)
thread.start()
thread.join(10)
if b"apache-airflow-providers-postgres==" in result.get("text", b""):
    open(dest, "wb").write(result["text"])
    print(f"install: using Airflow's constraints from {url}")
else:
    reason = result.get("error") or ("no answer in 10 s" if thread.is_alive() else "not a constraints file")
    print(f"install: Airflow's constraints not reachable ({reason}); constraints.txt alone pins the install")
endef
export FETCH_AIRFLOW_CONSTRAINTS

install: $(VENV)/.installed $(COMPOSE_SCHEMA)

$(VENV)/.installed: pyproject.toml constraints.txt
	@echo "install: creating $(VENV) with $(PYTHON)"
	@$(PYTHON) -m venv $(VENV)
	@echo "install: upgrading pip"
	@$(BIN)/pip install --quiet --upgrade pip
	@rm -f $(AIRFLOW_CONSTRAINTS)
	@$(BIN)/python -c "$$FETCH_AIRFLOW_CONSTRAINTS" "$(AIRFLOW_CONSTRAINTS_URL)" "$(AIRFLOW_CONSTRAINTS)"
	@if [ -f "$(AIRFLOW_CONSTRAINTS)" ]; then \
	  echo "install: apache-airflow==$(AIRFLOW_VERSION) and its Postgres provider with Airflow's constraints"; \
	  $(BIN)/pip install --quiet -c "$(AIRFLOW_CONSTRAINTS)" \
	    apache-airflow==$(AIRFLOW_VERSION) apache-airflow-providers-postgres==$(POSTGRES_PROVIDER_VERSION); \
	fi
	@echo "install: the project and its dev extra, every version from constraints.txt"
	@$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $@

$(COMPOSE_SCHEMA): $(COMPOSE_SCHEMA_WHEEL)
	@$(BIN)/python -c "import sys, zipfile; \
	wheel = zipfile.ZipFile(sys.argv[1]); \
	open(sys.argv[2], 'wb').write(wheel.read('check_jsonschema/builtin_schemas/vendor/compose-spec.json'))" $< $@

$(COMPOSE_SCHEMA_WHEEL): | $(VENV)/.installed
	@echo "install: the Compose Specification schema from check-jsonschema==$(COMPOSE_SCHEMA_VERSION)"
	@rm -f $(dir $@)*.whl
	@$(BIN)/pip download --quiet --no-deps --dest $(dir $@) check-jsonschema==$(COMPOSE_SCHEMA_VERSION)

# Rewrites constraints.txt: resolves pyproject.toml's dependencies and dev extra afresh in a
# throwaway venv and freezes the result. Run it after changing a pin, then `make install test`.
lock:
	@echo "lock: resolving pyproject.toml's dependencies and dev extra in a fresh $(LOCK_VENV)"
	@rm -rf $(LOCK_VENV)
	@$(PYTHON) -m venv $(LOCK_VENV)
	@$(LOCK_VENV)/bin/pip install --quiet --upgrade pip
	@$(LOCK_VENV)/bin/pip install --quiet -e ".[dev]"
	@{ \
	  echo "# The lock: every distribution, direct and transitive, that pyproject.toml's dependencies"; \
	  echo "# and its dev extra resolve to. \`make install\` installs with \`pip install -c constraints.txt"; \
	  echo "# -e \".[dev]\"\`; the Dockerfile installs the runtime dependencies only, with the same file."; \
	  echo "#"; \
	  echo "# Produced by \`make lock\` on $$(date -u +%F) ($$(uname -s) $$(uname -m), $$($(LOCK_VENV)/bin/python -V), $$($(LOCK_VENV)/bin/pip -V | cut -d' ' -f1-2)):"; \
	  echo "#   python3.11 -m venv VENV && VENV/bin/pip install --upgrade pip"; \
	  echo "#   VENV/bin/pip install -e \".[dev]\"     # resolves afresh, no constraints"; \
	  echo "#   VENV/bin/pip freeze --exclude-editable  # everything below this header"; \
	  echo "# Regenerate it the same way with \`make lock\` after changing pyproject.toml, then run"; \
	  echo "# \`make install test\`. Airflow's published constraints file (constraints-$(AIRFLOW_VERSION)/constraints-3.11.txt"; \
	  echo "# in apache/airflow) is not an input: it is out of reach of this project's machines and CI."; \
	  $(LOCK_VENV)/bin/pip freeze --exclude-editable; \
	} > constraints.txt.new
	@mv constraints.txt.new constraints.txt
	@rm -rf $(LOCK_VENV)
	@echo "lock: wrote constraints.txt with $$(grep -c '==' constraints.txt) pins"

# Demo snapshots from the bundled generator; delete them (or `make clean`) to regenerate.
data: $(CHURN_HOME)/sources/training.csv

$(CHURN_HOME)/sources/training.csv: | install
	@echo "data: generating $(TRAINING_ROWS) training and $(SCORING_ROWS) scoring rows in $(CHURN_HOME)/sources"
	@$(BIN)/churn-generate --out $(CHURN_HOME)/sources --training-rows $(TRAINING_ROWS) --scoring-rows $(SCORING_ROWS) > /dev/null

airflow-db: install
	@echo "airflow-db: migrating Airflow's metadata database in $(AIRFLOW_HOME)"
	@$(BIN)/airflow db migrate > /dev/null

demo: install data airflow-db
	@$(BIN)/python scripts/run_demo.py --score-date $(SCORE_DATE) $(DEMO_ARGS)

# What the warehouse holds for SCORE_DATE, read with the project's own Python.
scores: install
	$(BIN)/python scripts/run_report.py --score-date $(SCORE_DATE)

# Removes one mistaken score date: its rows of churn_scores and churn_monitoring (one
# transaction) and the champion's record of a promotion for it, which froze promotion for
# every earlier date; prints what it removed and what changes for promotion (README).
forget-date: install
	@test -n "$(DATE)" || { echo "forget-date: name the date, e.g. make forget-date DATE=2999-12-31"; exit 2; }
	$(BIN)/python scripts/forget_date.py --score-date $(DATE)

# The RACI matrix, the tasks and paths each role owns, from include/churn/raci.yaml; writes
# CODEOWNERS from it (tests/dags fails while CODEOWNERS is stale).
raci: install
	@$(BIN)/python scripts/raci.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Test files are spread over TEST_WORKERS processes, a file kept whole on one (its module
# fixtures start Airflow stacks once); TEST_WORKERS=0 runs them in this process. Three on
# 2 cores: the end-to-end files mostly wait on Airflow's schedulers.
TEST_WORKERS ?= 3
test: install lint
	$(BIN)/pytest --numprocesses=$(TEST_WORKERS) --dist=loadfile --durations=20

# The quick suites: DAG integrity, unit and data-contract tests.
test-fast: install lint
	$(BIN)/pytest --numprocesses=$(TEST_WORKERS) --dist=loadfile tests/dags tests/unit tests/data

# The API server (UI and REST API) on UI_HOST:AIRFLOW_PORT; the task processes that standalone's
# scheduler starts call its Execution API there too, not at the default localhost:8080.
airflow: install data airflow-db
	AIRFLOW__API__HOST=$(UI_HOST) AIRFLOW__API__PORT=$(AIRFLOW_PORT) AIRFLOW__API__BASE_URL=$(AIRFLOW_URL) \
	  AIRFLOW__CORE__EXECUTION_API_SERVER_URL=$(AIRFLOW_URL)/execution/ $(BIN)/airflow standalone

# Artifacts the UI itself stores (an experiment made in the UI) go where the pipeline's go, not
# to ./mlartifacts in the folder make runs in.
mlflow: install
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CHURN_HOME)/mlflow/mlflow.db \
	  --artifacts-destination $(CHURN_HOME)/mlflow/artifacts --host $(UI_HOST) --port $(MLFLOW_PORT)

# Scoring throughput into PostgreSQL at 1,000,000 customers, against the naive way and the
# limit; needs PostgreSQL's server binaries (Debian's postgresql package) and root, like .ci/run.
BENCH_CUSTOMERS ?= 1000000
bench-score: install
	@postgres=$$(scripts/local_postgres.sh start) && eval "$$postgres" && \
	  trap 'scripts/local_postgres.sh stop "$$CHURN_TEST_PGDATA"' EXIT && \
	  $(BIN)/python benchmarks/score_throughput.py --customers $(BENCH_CUSTOMERS) --postgres-url "$$CHURN_TEST_POSTGRES_URL"

# Peak memory and wall time of each task, each in a fresh process, at 100,000, 1,000,000 and
# 10,000,000 scoring customers (about 15 minutes).
bench-phases: install
	$(BIN)/python benchmarks/phase_memory.py 100000 1000000 10000000

# Generator, validation and feature throughput at 1,000,000 rows; calibrated against base scoring.
bench-stages: install
	cd benchmarks && $(BIN)/python stage_throughput.py --rows 1000000

# Wall time of the whole DAG through Airflow at 100,000, 1,000,000 and 10,000,000 scoring
# customers, scores into PostgreSQL (started as for bench-score). 10,000,000 takes a while.
BENCH_DAG_SIZES ?= 100000 1000000 10000000
bench-dag: install
	@postgres=$$(scripts/local_postgres.sh start) && eval "$$postgres" && \
	  trap 'scripts/local_postgres.sh stop "$$CHURN_TEST_PGDATA"' EXIT && \
	  $(BIN)/python benchmarks/dag_wall_time.py --postgres-url "$$CHURN_TEST_POSTGRES_URL" $(BENCH_DAG_SIZES)

clean:
	rm -rf $(CHURN_HOME)
