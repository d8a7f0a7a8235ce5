"""The production path: Airflow's scheduler, DAG processor and API server on loopback with
PostgreSQL as metadata database (LocalExecutor), runs triggered through the REST API the
way the UI's trigger form does, and scores written to a PostgreSQL warehouse.

The test starts and stops its own processes and databases.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from churn.generate import make_snapshots, write_snapshots
from tests.conftest import EXPECTED_OWNERS, PROJECT_DIR, free_port, stored_scores

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
SCORE_DATE = date(2026, 11, 20)
SCORING_ROWS = 1_000
RUN_TIMEOUT_SECONDS = 900


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


@dataclass
class Stack:
    api: httpx.Client
    warehouse_url: str
    sources: dict[str, Path]
    root: Path

    def trigger(self, conf: dict) -> httpx.Response:
        """What the UI's trigger form sends."""
        return self.api.post("/api/v2/dags/churn_pipeline/dagRuns", json={"logical_date": None, "conf": conf})

    def wait_for(self, run_id: str) -> str:
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            state = self.api.get(f"/api/v2/dags/churn_pipeline/dagRuns/{run_id}").json()["state"]
            if state in {"success", "failed"}:
                return state
            time.sleep(3)
        raise TimeoutError(f"run {run_id} did not finish in {RUN_TIMEOUT_SECONDS}s")

    def task_states(self, run_id: str) -> dict[str, str | None]:
        answer = self.api.get(f"/api/v2/dags/churn_pipeline/dagRuns/{run_id}/taskInstances").json()
        return {ti["task_id"]: ti["state"] for ti in answer["task_instances"]}

    def scores(self, score_date: date) -> pd.DataFrame:
        return stored_scores(self.warehouse_url, score_date)


def _stop(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def stack(postgres_url: str, tmp_path_factory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("scheduler")
    suffix = uuid.uuid4().hex[:8]
    sources = write_snapshots(make_snapshots(5_000, SCORING_ROWS, seed=11), root / "churn" / "sources")
    password = f"pw-{uuid.uuid4().hex}"
    (root / "passwords.json").write_text(json.dumps({"admin": password}))
    api_port = free_port()
    with scratch_databases(postgres_url, f"airflow_{suffix}", f"warehouse_{suffix}") as (
        metadata_url,
        warehouse_url,
    ):
        env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "AIRFLOW_HOME": str(root / "airflow"),
            "CHURN_HOME": str(root / "churn"),
            "GX_ANALYTICS_ENABLED": "false",
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_DIR / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(root / "passwords.json"),
            "AIRFLOW_CONN_CHURN_WAREHOUSE": warehouse_url.replace("postgresql+psycopg://", "postgresql://"),
        }
        for inherited in ("MLFLOW_TRACKING_URI", "CHURN_WAREHOUSE_URL"):
            env.pop(inherited, None)
        log = (root / "standalone.log").open("w")
        process = subprocess.Popen(
            [str(BIN / "airflow"), "standalone"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            base_url = f"http://127.0.0.1:{api_port}"
            deadline = time.monotonic() + 300
            token = None
            while time.monotonic() < deadline and token is None:
                assert process.poll() is None, (root / "standalone.log").read_text()[-5000:]
                with contextlib.suppress(httpx.HTTPError):
                    answer = httpx.post(f"{base_url}/auth/token", json={"username": "admin", "password": password})
                    if answer.status_code == 201 or answer.status_code == 200:
                        token = answer.json()["access_token"]
                time.sleep(2)
            assert token, (root / "standalone.log").read_text()[-5000:]
            api = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
            while time.monotonic() < deadline and api.get("/api/v2/dags/churn_pipeline").status_code != 200:
                time.sleep(2)
            yield Stack(api=api, warehouse_url=warehouse_url, sources=sources, root=root)
        finally:
            _stop(process)
            log.close()


def test_anonymous_requests_are_refused(stack: Stack):
    assert httpx.get(f"{stack.api.base_url}/api/v2/dags").status_code == 401


def test_ui_lists_the_seven_tasks_with_their_owners(stack: Stack):
    tasks = stack.api.get("/api/v2/dags/churn_pipeline/tasks").json()["tasks"]
    assert {task["task_id"]: task["owner"] for task in tasks} == EXPECTED_OWNERS


@pytest.mark.parametrize(
    ("conf", "named"),
    [({"score_date": "2026-02-30"}, "score_date"), ({"training_source": "s3://bucket/x.csv"}, "training_source")],
)
def test_bad_trigger_values_are_refused_before_any_run_exists(stack: Stack, conf, named):
    answer = stack.trigger(conf)
    assert answer.status_code == 400
    assert named in answer.json()["detail"]


def test_triggered_run_scores_into_postgres_then_a_broken_file_stops_at_validate(stack: Stack):
    assert stack.api.patch("/api/v2/dags/churn_pipeline", json={"is_paused": False}).status_code == 200

    good = stack.trigger({"score_date": SCORE_DATE.isoformat()})
    assert good.status_code == 200, good.text
    run_id = good.json()["dag_run_id"]
    assert stack.wait_for(run_id) == "success", (stack.root / "standalone.log").read_text()[-5000:]
    assert set(stack.task_states(run_id).values()) == {"success"}
    scores = stack.scores(SCORE_DATE)
    assert len(scores) == SCORING_ROWS
    assert scores["customer_id"].is_unique
    assert set(scores["run_id"]) == {run_id}

    training = pd.read_csv(stack.sources["training"], dtype="string", keep_default_na=False)
    training.loc[training.index[:2], "Contract"] = "Three year"
    broken = stack.root / "broken_training.csv"
    training.to_csv(broken, index=False)
    bad = stack.trigger({"score_date": SCORE_DATE.isoformat(), "training_source": str(broken)})
    assert bad.status_code == 200, bad.text
    bad_run_id = bad.json()["dag_run_id"]
    assert stack.wait_for(bad_run_id) == "failed"
    states = stack.task_states(bad_run_id)
    assert states["ingest"] == "success" and states["validate"] == "failed"
    assert states["score"] in {"upstream_failed", None}
    pd.testing.assert_frame_equal(stack.scores(SCORE_DATE), scores)
