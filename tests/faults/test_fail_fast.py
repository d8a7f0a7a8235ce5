"""Fail fast on what a retry cannot fix; retry outages. Both through real Airflow.

``airflow dags test`` runs the real DAG with Airflow's own retry rules (the DAG's two retries,
two minutes apart and growing): a task that fails with an outage goes ``up_for_retry`` and
waits for its next try; one that raises Airflow's ``AirflowFailException`` fails at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import replace
from datetime import date

import pytest
import sqlalchemy as sa
import yaml

from churn.errors import PhaseError
from churn.manifest import read_manifests
from tests.conftest import SCORE_DATE, free_port
from tests.e2e.airflow_stack import log_tails, start
from tests.e2e.deployment import BIN, Deployment, deploy, e2e_pipeline_config

RETRY_DELAY_SECONDS = 120  # the DAG's first retry waits at least this long


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Deployment:
    return deploy(tmp_path_factory.mktemp("fail_fast"), 1000, 200)


def sampling_too_few_rows_for_the_folds(deployment: Deployment) -> Deployment:
    """The deployment with ``training.max_rows`` at 10 and no search: train samples 10 rows of a
    valid snapshot, too few of each class for cross-validation's folds, and scikit-learn refuses
    the same way every time. (Validation refuses such a snapshot itself, so only a sample can be.)"""
    path = e2e_pipeline_config(deployment.root / "pipeline_ten_rows.yaml")
    config = yaml.safe_load(path.read_text())
    config["training"]["max_rows"] = 10
    # No search: which of its checks of a 10-row sample fails first depends on the time left.
    config["training"]["search"] = None
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return replace(deployment, env={**deployment.env, "CHURN_PIPELINE_CONFIG": str(path)})


def metadata_rows(deployment: Deployment, sql: str, *parameters: str) -> list[tuple]:
    """The rows ``sql`` finds in Airflow's metadata database (SQLite, in the deployment's
    Airflow home)."""
    engine = sa.create_engine(f"sqlite:///{deployment.root / 'airflow' / 'airflow.db'}")
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.exec_driver_sql(sql, parameters)]
    finally:
        engine.dispose()


def run_ids(deployment: Deployment) -> set[str]:
    return {run_id for (run_id,) in metadata_rows(deployment, "SELECT run_id FROM dag_run")}


def try_of(deployment: Deployment, run_id: str, task_id: str) -> tuple[int, str] | None:
    """The task's current try in the run, as (try number, state)."""
    sql = "SELECT try_number, state FROM task_instance WHERE run_id = ? AND task_id = ?"
    return next(iter(metadata_rows(deployment, sql, run_id, task_id)), None)


def tries_before(deployment: Deployment, run_id: str, task_id: str) -> list[int]:
    """The tries that failed and were left to a retry: Airflow records each in its task
    instance history as it goes ``up_for_retry``."""
    sql = "SELECT try_number FROM task_instance_history WHERE run_id = ? AND task_id = ?"
    return sorted(number for (number,) in metadata_rows(deployment, sql, run_id, task_id))


def seconds_to_run_end(deployment: Deployment, run_id: str, task_id: str) -> float:
    """Seconds from the task's start to the end of its run."""
    sql = (
        "SELECT (julianday(run.end_date) - julianday(ti.start_date)) * 86400 FROM task_instance ti "
        "JOIN dag_run run ON run.run_id = ti.run_id AND run.dag_id = ti.dag_id "
        "WHERE ti.run_id = ? AND ti.task_id = ?"
    )
    ((seconds,),) = metadata_rows(deployment, sql, run_id, task_id)
    return seconds


def test_a_deterministic_error_in_train_fails_the_task_at_once(deployment: Deployment):
    earlier_runs = run_ids(deployment)
    started = time.monotonic()
    result = sampling_too_few_rows_for_the_folds(deployment).trigger(score_date=SCORE_DATE.isoformat())
    took = time.monotonic() - started

    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-5000:]
    (run_id,) = run_ids(deployment) - earlier_runs
    states = deployment.task_states(run_id)
    assert [states[task] for task in ("ingest", "validate", "feature", "train")] == [
        "success",
        "success",
        "success",
        "failed",
    ]
    assert all(states[task] in {"upstream_failed", None} for task in ("evaluate", "package", "score.plan"))
    assert try_of(deployment, run_id, "train") == (1, "failed")
    assert tries_before(deployment, run_id, "train") == []  # never up_for_retry
    assert seconds_to_run_end(deployment, run_id, "train") < RETRY_DELAY_SECONDS, f"took {took:.0f} s"
    assert "train failed with ValueError, which a retry cannot fix" in output
    failure = read_manifests(deployment.settings.run_dir(SCORE_DATE.isoformat(), run_id))["failed"]
    assert (failure.phase, failure.error_type) == ("train", "ValueError")
    assert "Requesting 5-fold cross-validation but provided less than 5 examples" in failure.error
    assert PhaseError.__name__ in output


def test_an_unreachable_source_database_is_left_to_airflows_retries(deployment: Deployment, tmp_path):
    score_date = date(2026, 11, 28)
    closed = free_port()
    # churn_source: the Connection pipeline.yaml lets sql:// sources read through.
    env = {**deployment.env, "AIRFLOW_CONN_CHURN_SOURCE": f"postgresql://churn:placeholder@127.0.0.1:{closed}/crm"}
    conf = {"score_date": score_date.isoformat(), "training_source": "sql://churn_source/customers"}
    earlier_runs = run_ids(deployment)
    log = tmp_path / "dags_test.log"
    command = [str(BIN / "airflow"), "dags", "test", "churn_pipeline", score_date.isoformat()]
    process = start([*command, "--conf", json.dumps(conf)], env, log)
    try:
        deadline = time.monotonic() + 300
        ingest = None
        while time.monotonic() < deadline and process.poll() is None:
            new_runs = run_ids(deployment) - earlier_runs
            ingest = try_of(deployment, next(iter(new_runs)), "ingest") if new_runs else None
            if ingest and ingest[1] in {"up_for_retry", "failed", "success"}:
                break
            time.sleep(1)
    finally:
        # It would wait minutes for the retry, and shrugs off SIGTERM meanwhile; it has
        # nothing left to finish, so its process group is killed outright.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)

    assert ingest == (1, "up_for_retry"), log_tails([log])
    (run_id,) = run_ids(deployment) - earlier_runs
    assert tries_before(deployment, run_id, "ingest") == [1]  # kept for the retry
    failure = read_manifests(deployment.settings.run_dir(score_date.isoformat(), run_id))["failed"]
    assert (failure.phase, failure.error_type) == ("ingest", "OperationalError")
    assert f"127.0.0.1:{closed}" in failure.error or f"port {closed}" in failure.error
