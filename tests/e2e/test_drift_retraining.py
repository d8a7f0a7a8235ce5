"""End to end through Airflow's scheduler (``airflow standalone``: scheduler, LocalExecutor,
API server): drift injected with the data generator makes ``monitor`` emit the ``churn_drift``
asset's event, from which the scheduler starts a retraining run by itself (run type
``asset_triggered``). That run waits in ``approve`` for the Retraining phase's Accountable
role, answered through the REST API: approved, it moves the champion and rescores the date;
rejected, the champion stays and keeps the date.

A drift-triggered run's score date is the day it was queued for, today, and a date before one
already scored is a backfill that never promotes, so every run here is for today: the nightly
run that unpausing starts (the scheduler must schedule for asset-triggered runs) promotes the
first champion, and manual reruns of today bring the drifted scoring snapshot (a rerun keeps
the date's model, so its monitor compares the drifted customers with that model's training data).

The default training snapshot, which a drift-triggered run reads, is rewritten before each
drift so its challenger differs from the champion and beats it on test rows the champion never
trained on: first new customers' drifted bills with every label flipped (customers now churn
the other way), a new version; then the original snapshot again, whose refit is the first
champion's version.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from churn.handoffs import PackageResult
from churn.manifest import read_manifests
from churn.settings import Settings, load_settings
from churn.tracking import champion_version, use_mlflow
from churn.warehouse import monitoring_table, warehouse_engine
from tests.conftest import free_port
from tests.e2e.airflow_stack import (
    Stack,
    airflow_environment,
    answer_request,
    running_standalone,
    waiting_request,
)
from tests.e2e.deployment import e2e_pipeline_config

pytestmark = pytest.mark.e2e

TRAINING_ROWS, SCORING_ROWS, SEED = 2_000, 600, 7
# Higher bills for every customer and 90% on month-to-month contracts: both PSI far above 0.25.
SHIFTS = {"MonthlyCharges": "+40", "Contract": "Month-to-month@0.9"}
PASSWORD = f"pw-{uuid.uuid4().hex}"
WAIT_SECONDS = 900


def today() -> date:
    """The date a drift-triggered run scores: the day it is queued for."""
    return datetime.now(UTC).date()


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory) -> dict[str, Path]:
    """The generated snapshots, the same customers' drifted scoring snapshot, and the first
    retraining's training snapshot: new customers' drifted bills, every label flipped."""
    from churn.generate import as_public_csv_text, make_snapshots, shift_features, write_snapshots

    root = tmp_path_factory.mktemp("drift_retraining_sources")
    generated = make_snapshots(TRAINING_ROWS, SCORING_ROWS, seed=SEED)
    original = write_snapshots(generated, root / "original")
    drifted = write_snapshots(
        make_snapshots(TRAINING_ROWS, SCORING_ROWS, seed=SEED, shifts=SHIFTS), root / "drifted"
    )
    # New customers: the challenger is compared with the champion only on rows it never trained on.
    later = make_snapshots(TRAINING_ROWS, SCORING_ROWS, seed=SEED + 1)
    training = shift_features(
        later.training, {"MonthlyCharges": SHIFTS["MonthlyCharges"]}, np.random.default_rng(SEED)
    )
    training["Churn"] = training["Churn"].map({"Yes": "No", "No": "Yes"})
    retraining = root / "retraining_training.csv"
    as_public_csv_text(training).to_csv(retraining, index=False)
    return {
        "training": original["training"],
        "scoring": original["scoring"],
        "drifted_scoring": drifted["scoring"],
        "retraining_training": retraining,
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory, snapshots) -> Iterator[Stack]:
    """Airflow standalone on SQLite metadata, with the pipeline's SQLite warehouse and MLflow
    store under CHURN_HOME, whose default snapshots start as the generated ones. The scheduler
    schedules (asset-triggered runs need it), so unpausing starts today's nightly run."""
    root = tmp_path_factory.mktemp("drift_retraining")
    sources = root / "churn" / "sources"
    sources.mkdir(parents=True)
    shutil.copy(snapshots["training"], sources / "training.csv")
    shutil.copy(snapshots["scoring"], sources / "scoring.csv")
    (root / "passwords.json").write_text(json.dumps({"admin": PASSWORD}))
    env = airflow_environment(
        root,
        metadata_url=f"sqlite:///{root / 'airflow' / 'airflow.db'}",
        warehouse_url="",
        api_port=free_port(),
        password_file=root / "passwords.json",
    )
    env.pop("AIRFLOW_CONN_CHURN_WAREHOUSE")  # the embedded default: CHURN_HOME/warehouse.db
    env["CHURN_PIPELINE_CONFIG"] = str(e2e_pipeline_config(root / "pipeline.yaml"))
    with running_standalone(env, root, PASSWORD) as (api, logs):
        assert api.patch("/api/v2/dags/churn_pipeline", json={"is_paused": False}).status_code == 200
        default_sources = {"training": sources / "training.csv", "scoring": sources / "scoring.csv"}
        yield Stack(
            api=api, warehouse_url=load_settings(env).warehouse_url, sources=default_sources, root=root, logs=logs
        )


@pytest.fixture(scope="module")
def settings(stack: Stack) -> Settings:
    settings = load_settings({"CHURN_HOME": str(stack.root / "churn")})
    use_mlflow(settings)
    return settings


def runs_of_type(stack: Stack, run_type: str) -> list[dict]:
    answer = stack.api.get("/api/v2/dags/churn_pipeline/dagRuns", params={"limit": 100})
    answer.raise_for_status()
    return sorted(
        (run for run in answer.json()["dag_runs"] if run["run_type"] == run_type), key=lambda run: run["run_after"]
    )


def new_run(stack: Stack, run_type: str, known: set[str]) -> dict:
    """The first run of ``run_type`` not in ``known``, once the scheduler has created it."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        for run in runs_of_type(stack, run_type):
            if run["dag_run_id"] not in known:
                return run
        time.sleep(2)
    raise TimeoutError(f"no new {run_type} run\n{stack.log_tails()}")


def drift_events(stack: Stack) -> list[dict]:
    """The ``churn_drift`` asset's events, as the REST API lists them."""
    answer = stack.api.get("/api/v2/assets/events", params={"limit": 100})
    answer.raise_for_status()
    return sorted(
        (event for event in answer.json()["asset_events"] if event["name"] == "churn_drift"), key=lambda e: e["id"]
    )


def finished(stack: Stack, run_id: str) -> str:
    return stack.wait_for(quote(run_id, safe=""))


def packaged(settings: Settings, score_date: date, run_id: str) -> PackageResult:
    return read_manifests(settings.run_dir(score_date.isoformat(), run_id))["package"]


def monitored(stack: Stack, run_id: str) -> pd.DataFrame:
    """The feature PSI rows ``run_id``'s monitor wrote to ``churn_monitoring``, by feature."""
    engine = warehouse_engine(stack.warehouse_url)
    table = monitoring_table(sa.MetaData(), "churn_monitoring", None)
    try:
        with engine.connect() as connection:
            stored = pd.read_sql(sa.select(table).where(table.c.run_id == run_id), connection)
    finally:
        engine.dispose()
    return stored[stored["metric"] == "feature_psi"].set_index("feature")


def drifted_rerun(stack: Stack, scoring: Path, training: Path) -> dict:
    """A manual run of today on ``scoring`` (a rerun, unless the nightly run was for yesterday:
    then it trains on ``training``); it finishes, and its monitor's drift event is recorded."""
    events = len(drift_events(stack))
    conf = {"score_date": today().isoformat(), "scoring_source": str(scoring), "training_source": str(training)}
    started = stack.trigger(conf)
    assert started.status_code == 200, started.text
    run_id = started.json()["dag_run_id"]
    assert finished(stack, run_id) == "success", stack.log_tails()
    new_events = drift_events(stack)[events:]
    return {"run_id": run_id, "events": new_events}


@pytest.fixture(scope="module")
def nightly_run(stack: Stack) -> dict:
    """The nightly run unpausing started: no champion to compare with, so it promotes at once."""
    run = new_run(stack, "scheduled", set())
    assert finished(stack, run["dag_run_id"]) == "success", stack.log_tails()
    return run


@pytest.fixture(scope="module")
def first_drift(stack: Stack, settings, snapshots, nightly_run) -> dict:
    """Today rerun on the drifted scoring snapshot. The default training snapshot is the
    retraining's from now on, so the run drift starts learns from it."""
    shutil.copy(snapshots["retraining_training"], stack.sources["training"])
    rerun = drifted_rerun(stack, snapshots["drifted_scoring"], snapshots["training"])
    rerun["champion"] = str(champion_version(settings).version)
    return rerun


@pytest.fixture(scope="module")
def approved_retraining(stack: Stack, settings, first_drift) -> dict:
    run = new_run(stack, "asset_triggered", set())
    detail = waiting_request(stack, run["dag_run_id"])
    package_before = stack.task_states(quote(run["dag_run_id"], safe=""))["package"]
    approved = answer_request(stack.api, run["dag_run_id"], "Approve")
    assert approved.status_code == 200, approved.text
    state = finished(stack, run["dag_run_id"])
    return {
        "run": run,
        "detail": detail,
        "package_before": package_before,
        "answer": approved.json(),
        "state": state,
    }


@pytest.fixture(scope="module")
def rejected_retraining(stack: Stack, settings, snapshots, approved_retraining) -> dict:
    """Drift again (the drifted snapshot's contracts against the champion's training data),
    with the original training snapshot as the default again; the retraining is rejected."""
    champion = str(champion_version(settings).version)
    shutil.copy(snapshots["training"], stack.sources["training"])
    rerun = drifted_rerun(stack, snapshots["drifted_scoring"], snapshots["training"])
    run = new_run(stack, "asset_triggered", {approved_retraining["run"]["dag_run_id"]})
    detail = waiting_request(stack, run["dag_run_id"])
    rejected = answer_request(stack.api, run["dag_run_id"], "Reject")
    assert rejected.status_code == 200, rejected.text
    state = finished(stack, run["dag_run_id"])
    return {"rerun": rerun, "run": run, "detail": detail, "champion": champion, "state": state}


def test_the_nightly_run_promotes_a_champion_and_finds_no_drift(stack: Stack, settings, nightly_run):
    run_id = nightly_run["dag_run_id"]
    assert set(stack.task_states(quote(run_id, safe="")).values()) == {"success"}
    # Its score date is its logical date's: today, unless started before 02:00 UTC.
    record = packaged(settings, date.fromisoformat(nightly_run["logical_date"][:10]), run_id)
    assert record.promoted is True and record.approval is None
    assert not monitored(stack, run_id)["drifted"].any()
    assert drift_events(stack) == []


def test_drift_in_the_scoring_snapshot_emits_the_drift_event(stack: Stack, first_drift):
    [event] = first_drift["events"]
    assert (event["source_task_id"], event["source_run_id"]) == ("monitor", first_drift["run_id"])
    drifted = event["extra"]["drifted_features"]
    assert {"MonthlyCharges", "Contract"} <= set(drifted) and all(psi > 0.25 for psi in drifted.values())
    assert event["extra"]["score_date"] == today().isoformat()
    # The rerun kept the date's model: the champion scored the drifted customers.
    assert set(stack.scores(today())["model_version"]) == {first_drift["champion"]}


def test_the_drift_event_starts_a_retraining_run_that_waits_for_the_retraining_accountable(
    stack: Stack, first_drift, approved_retraining
):
    run = approved_retraining["run"]
    assert run["run_type"] == "asset_triggered" and run["logical_date"] is None
    detail = approved_retraining["detail"]
    assert detail["assigned_users"] == [{"id": "admin", "name": "admin"}]
    assert detail["options"] == ["Approve", "Reject"] and detail["defaults"] == ["Reject"]
    assert f"Promote the churn model of {today()}?" in detail["subject"]
    assert detail["subject"].endswith("; a drift-triggered run")
    body = detail["body"]
    assert "monitoring found drift and triggered this retraining run (Retraining)" in body
    assert "| drifted feature | PSI |" in body and "| MonthlyCharges |" in body and "| Contract |" in body
    assert f"- run id: {first_drift['run_id']}" in body
    assert approved_retraining["package_before"] is None


def test_an_approved_retraining_moves_the_champion_and_rescores_the_date(
    stack: Stack, settings, first_drift, approved_retraining
):
    run_id = approved_retraining["run"]["dag_run_id"]
    assert approved_retraining["state"] == "success", stack.log_tails()
    assert approved_retraining["answer"]["responded_by"]["name"] == "admin"
    record = packaged(settings, today(), run_id)
    assert record.promoted is True and record.approval.decision == "approved"
    assert record.reused_existing_version is False
    champion = champion_version(settings)
    assert str(champion.version) == record.model_version != first_drift["champion"]
    scores = stack.scores(today())
    assert set(scores["model_version"]) == {record.model_version} and set(scores["run_id"]) == {run_id}
    # Its monitor measured drift (the default scoring snapshot against the drifted bills it
    # learnt from) but a run drift started emits no event: still the one that started it.
    assert bool(monitored(stack, run_id).loc["MonthlyCharges", "drifted"])
    assert [event["source_run_id"] for event in drift_events(stack)] == [first_drift["run_id"]]


def test_a_rejected_retraining_keeps_the_champion_on_the_date(stack: Stack, settings, rejected_retraining):
    rerun = rejected_retraining["rerun"]
    [event] = rerun["events"]
    assert event["source_run_id"] == rerun["run_id"] and "Contract" in event["extra"]["drifted_features"]
    champion = rejected_retraining["champion"]
    assert rejected_retraining["detail"]["assigned_users"] == [{"id": "admin", "name": "admin"}]
    run_id = rejected_retraining["run"]["dag_run_id"]
    assert rejected_retraining["state"] == "success", stack.log_tails()
    states = stack.task_states(quote(run_id, safe=""))
    assert {states[task] for task in ("train", "evaluate", "approve", "package", "score.publish")} == {"success"}
    record = packaged(settings, today(), run_id)
    assert record.promoted is False and record.champion_version == champion
    assert record.approval.decision == "rejected" and record.approval.responded_by == "admin"
    assert str(champion_version(settings).version) == champion
    scores = stack.scores(today())
    assert set(scores["model_version"]) == {champion} and set(scores["run_id"]) == {run_id}
    assert len(drift_events(stack)) == 2
