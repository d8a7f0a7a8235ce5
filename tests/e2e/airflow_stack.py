"""What the end-to-end tests that run Airflow's real components share: scratch PostgreSQL
databases, the environment that points Airflow and the pipeline at them, starting and
stopping component processes, and the REST API client that triggers and follows runs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pandas as pd
import sqlalchemy as sa

from tests.conftest import INHERITED_SETTINGS, PROJECT_DIR, free_port, stored_scores

BIN = Path(sys.executable).parent
RUN_TIMEOUT_SECONDS = 900
FINISHED_RUN_STATES = {"success", "failed"}


@contextlib.contextmanager
def scratch_databases(postgres_url: str, *names: str) -> Iterator[list[str]]:
    """Create empty databases next to ``postgres_url``; drop them afterwards."""
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    base = sa.engine.make_url(postgres_url)
    with admin.connect() as connection:
        for name in names:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield [base.set(database=name).render_as_string(hide_password=False) for name in names]
    finally:
        with admin.connect() as connection:
            for name in names:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def days_before_today(days: int) -> date:
    """A score date ``days`` before today (UTC). Runs triggered through the API are queued for
    now, and ingest refuses a score date more than 400 days before that: a fixed date in a
    test would start failing a year on."""
    return datetime.now(UTC).date() - timedelta(days=days)


def airflow_environment(
    root: Path, *, metadata_url: str, warehouse_url: str, api_port: int, password_file: Path
) -> dict[str, str]:
    """The environment every component of one test's Airflow shares: its home, the project's
    DAGs and plugins, PostgreSQL metadata, the API server on a loopback port (also the
    Execution API the task processes call), the simple auth manager's ``admin`` and the
    warehouse Connection. Settings of the developer's own setup, or exported by earlier tests
    (MLflow exports its tracking URI), are not inherited."""
    env = {
        **{name: value for name, value in os.environ.items() if name not in INHERITED_SETTINGS},
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "AIRFLOW_HOME": str(root / "airflow"),
        "CHURN_HOME": str(root / "churn"),
        "GX_ANALYTICS_ENABLED": "false",
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_DIR / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_DIR / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        # Separately started components must sign and check the same tokens.
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(password_file),
        "AIRFLOW_CONN_CHURN_WAREHOUSE": warehouse_url.replace("postgresql+psycopg://", "postgresql://"),
    }
    return env


@dataclass
class Setting:
    """What a stack is started with: its environment, snapshots and admin password, the API
    server's port, and the scratch databases."""

    env: dict[str, str]
    sources: dict[str, Path]
    password: str
    api_port: int
    metadata_url: str
    warehouse_url: str


@contextlib.contextmanager
def stack_setting(
    postgres_url: str, root: Path, *, training_rows: int, scoring_rows: int, seed: int
) -> Iterator[Setting]:
    """Generated snapshots, an admin password, a free port for the API server, and scratch
    metadata and warehouse databases next to ``postgres_url``, dropped afterwards."""
    from churn.generate import make_snapshots, write_snapshots

    suffix = uuid.uuid4().hex[:8]
    sources = write_snapshots(make_snapshots(training_rows, scoring_rows, seed=seed), root / "churn" / "sources")
    password = f"pw-{uuid.uuid4().hex}"
    (root / "passwords.json").write_text(json.dumps({"admin": password}))
    api_port = free_port()
    with scratch_databases(postgres_url, f"airflow_{suffix}", f"warehouse_{suffix}") as (
        metadata_url,
        warehouse_url,
    ):
        env = airflow_environment(
            root,
            metadata_url=metadata_url,
            warehouse_url=warehouse_url,
            api_port=api_port,
            password_file=root / "passwords.json",
        )
        yield Setting(env, sources, password, api_port, metadata_url, warehouse_url)


def start(command: list[str], env: Mapping[str, str], log_path: Path) -> subprocess.Popen:
    """Start ``command`` in a process group of its own, its output in ``log_path``."""
    with log_path.open("w") as log:
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    """Stop a process started by :func:`start`, and its group: politely, then for sure."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def log_tails(paths: list[Path], characters: int = 4000) -> str:
    """The end of each log, for an assertion message."""
    return "\n".join(
        f"--- {path.name} ---\n{path.read_text(errors='replace')[-characters:]}" for path in paths if path.exists()
    )


@dataclass
class Stack:
    """One test's running Airflow, seen through its REST API as the UI sees it."""

    api: httpx.Client
    warehouse_url: str
    sources: dict[str, Path]
    root: Path
    logs: list[Path] = field(default_factory=list)

    def trigger(self, conf: dict) -> httpx.Response:
        """What the UI's trigger form sends."""
        return self.api.post("/api/v2/dags/churn_pipeline/dagRuns", json={"logical_date": None, "conf": conf})

    def wait_for(self, run_id: str, timeout: float = RUN_TIMEOUT_SECONDS) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.api.get(f"/api/v2/dags/churn_pipeline/dagRuns/{run_id}").json()["state"]
            if state in FINISHED_RUN_STATES:
                return state
            time.sleep(1)
        raise TimeoutError(f"run {run_id} did not finish in {timeout}s\n{self.log_tails()}")

    def task_instances(self, run_id: str) -> list[dict]:
        """Every task instance of the run, one per map index of a mapped task."""
        answer = self.api.get(
            f"/api/v2/dags/churn_pipeline/dagRuns/{run_id}/taskInstances", params={"limit": 1000}
        )
        answer.raise_for_status()
        return answer.json()["task_instances"]

    def task_states(self, run_id: str) -> dict[str, str | None]:
        return {ti["task_id"]: ti["state"] for ti in self.task_instances(run_id)}

    def scores(self, score_date: date) -> pd.DataFrame:
        return stored_scores(self.warehouse_url, score_date)

    def log_tails(self) -> str:
        return log_tails(self.logs)


@contextlib.contextmanager
def running_standalone(
    env: Mapping[str, str], root: Path, password: str
) -> Iterator[tuple[httpx.Client, list[Path]]]:
    """``airflow standalone`` (scheduler, DAG processor, triggerer, API server) with ``env``, its
    output in ``root/standalone.log``: an API client signed in as ``admin``, and the logs a
    failure should show; stopped when the block ends."""
    logs = [root / "standalone.log"]
    process = start([str(BIN / "airflow"), "standalone"], env, logs[0])
    try:
        yield connect(f"http://127.0.0.1:{env['AIRFLOW__API__PORT']}", password, [process], logs), logs
    finally:
        stop(process)


def connect(base_url: str, password: str, processes: list[subprocess.Popen], logs: list[Path]) -> httpx.Client:
    """Log in as ``admin`` once the API server answers, and wait until it lists the DAG; fails
    early, with the components' logs, if one of them exits meanwhile."""
    deadline = time.monotonic() + 300
    token = None
    while time.monotonic() < deadline and token is None:
        for process in processes:
            assert process.poll() is None, f"{process.args} exited\n{log_tails(logs)}"
        with contextlib.suppress(httpx.HTTPError):
            answer = httpx.post(f"{base_url}/auth/token", json={"username": "admin", "password": password})
            if answer.status_code in {200, 201}:
                token = answer.json()["access_token"]
        time.sleep(1)
    assert token, log_tails(logs)
    api = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    while time.monotonic() < deadline and api.get("/api/v2/dags/churn_pipeline").status_code != 200:
        for process in processes:
            assert process.poll() is None, f"{process.args} exited\n{log_tails(logs)}"
        import_errors = api.get("/api/v2/importErrors").json()["import_errors"]
        assert not import_errors, "\n".join(error["stack_trace"] for error in import_errors)
        time.sleep(1)
    assert api.get("/api/v2/dags/churn_pipeline").status_code == 200, log_tails(logs)
    return api


# Airflow 3.3.2 races when an approval request is answered moments after its task began to
# wait: the scheduler, yet to process the executor's report that the waiting workload ended,
# finds the answered task queued again, fails that try, and the retry asks anew. A person
# takes longer than this; the tests wait as long before they answer.
ANSWER_AFTER_SECONDS = 10


def waiting_request(stack: Stack, run_id: str, timeout: float = RUN_TIMEOUT_SECONDS) -> dict:
    """The approve task's request in ``run_id``, once the task has waited for an answer for
    :data:`ANSWER_AFTER_SECONDS`."""
    deadline = time.monotonic() + timeout
    run = f"/api/v2/dags/churn_pipeline/dagRuns/{quote(run_id, safe='')}"
    while time.monotonic() < deadline:
        answer = stack.api.get(f"{run}/hitlDetails")
        answer.raise_for_status()
        for detail in answer.json()["hitl_details"]:
            if detail["task_instance"]["state"] == "awaiting_input":
                time.sleep(ANSWER_AFTER_SECONDS)
                return detail
        state = stack.api.get(run).json()["state"]
        assert state in {"queued", "running"}, f"the run ended {state} without asking\n{stack.log_tails()}"
        time.sleep(2)
    raise TimeoutError(f"no approval request in {run_id}\n{stack.log_tails()}")


def answer_request(client: httpx.Client, run_id: str, option: str) -> httpx.Response:
    """What the Required Actions page sends when a user chooses ``option``."""
    path = f"/api/v2/dags/churn_pipeline/dagRuns/{quote(run_id, safe='')}/taskInstances/approve/-1/hitlDetails"
    return client.patch(path, json={"chosen_options": [option]})
