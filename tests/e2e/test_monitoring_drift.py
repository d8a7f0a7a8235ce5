"""End to end: a run on drifted scoring data monitors the date, writes ``churn_monitoring``
and emits the drift asset's event, which queues a retraining run of the DAG.

The run goes through ``airflow dags test`` in a deployment of its own; what Airflow recorded
(asset events, the queue the scheduler creates asset-triggered runs from) is read with
Airflow's own models in a process that has the deployment's configuration.
"""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest
import sqlalchemy as sa

from churn.warehouse import monitoring_table, warehouse_engine
from tests.conftest import SCORE_DATE
from tests.e2e.deployment import BIN, Deployment, deploy, e2e_pipeline_config

pytestmark = pytest.mark.e2e

TRAINING_ROWS, SCORING_ROWS = 5_000, 2_000
SHIFTS = ["MonthlyCharges=+30", "Contract=Month-to-month@0.8"]
# Asks Airflow, as its scheduler would, what the drift asset recorded and which DAGs it makes due.
AIRFLOW_PROBE = """
import json
from sqlalchemy import select
from airflow.models.asset import AssetDagRunQueue, AssetEvent
from airflow.models.dag import DagModel
from airflow.utils.session import create_session

with create_session() as session:
    events = [
        {"asset": event.asset.name, "extra": event.extra, "task": event.source_task_id,
         "run": event.source_run_id, "aliases": [alias.name for alias in event.source_aliases]}
        for event in session.scalars(select(AssetEvent).order_by(AssetEvent.id))
    ]
    queued = [row.target_dag_id for row in session.scalars(select(AssetDagRunQueue))]
    _, due = DagModel.dags_needing_dagruns(session)
    print(json.dumps({"events": events, "queued": queued, "due": sorted(due)}))
"""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Deployment:
    root = tmp_path_factory.mktemp("e2e_drift")
    # Airflow queues asset-triggered runs for unpaused DAGs only (no scheduler runs here).
    return deploy(
        root,
        TRAINING_ROWS,
        SCORING_ROWS,
        CHURN_PIPELINE_CONFIG=str(e2e_pipeline_config(root / "pipeline.yaml")),
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="False",
    )


@pytest.fixture(scope="module")
def drifted_run(deployment: Deployment) -> dict:
    drifted = deployment.root / "drifted"
    generate = [str(BIN / "churn-generate"), "--out", str(drifted), "--training-rows", str(TRAINING_ROWS)]
    generate += ["--scoring-rows", str(SCORING_ROWS), *(f"--shift={shift}" for shift in SHIFTS)]
    subprocess.run(generate, env=deployment.env, check=True, capture_output=True)
    result = deployment.trigger(score_date=SCORE_DATE.isoformat(), scoring_source=str(drifted / "scoring.csv"))
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    run = deployment.latest_run()
    probe = subprocess.run(
        [str(BIN / "python"), "-c", AIRFLOW_PROBE], env=deployment.env, capture_output=True, text=True, check=True
    )
    return {"run": run, "log": result.stdout + result.stderr, "airflow": json.loads(probe.stdout.splitlines()[-1])}


def test_the_drifted_run_succeeds_and_monitor_says_what_drifted(deployment: Deployment, drifted_run):
    assert drifted_run["run"]["state"] == "success"
    assert deployment.task_states(drifted_run["run"]["run_id"])["monitor"] == "success"
    assert "monitor: version 1 against its training data: features above PSI 0.25: " in drifted_run["log"]
    assert "retraining requested: " in drifted_run["log"]


def test_churn_monitoring_holds_the_dates_metrics(deployment: Deployment, drifted_run):
    engine = warehouse_engine(deployment.settings.warehouse_url)
    table = monitoring_table(sa.MetaData(), "churn_monitoring", None)
    with engine.connect() as connection:
        stored = pd.read_sql(sa.select(table), connection)
    engine.dispose()
    assert set(stored["score_date"]) == {SCORE_DATE}
    assert set(stored["run_id"]) == {drifted_run["run"]["run_id"]}
    psi = stored[stored["metric"] == "feature_psi"].set_index("feature")
    assert psi.loc["MonthlyCharges", "value"] > 0.25 and bool(psi.loc["MonthlyCharges", "drifted"])
    assert bool(psi.loc["Contract", "drifted"]) and not bool(psi.loc["gender", "drifted"])
    run_dir = deployment.settings.run_dir(SCORE_DATE.isoformat(), drifted_run["run"]["run_id"])
    assert "MonthlyCharges" in (run_dir / "monitoring" / "report.html").read_text()


def test_drift_emits_the_drift_assets_event_naming_the_drifted_features(drifted_run):
    events = drifted_run["airflow"]["events"]
    drift = [event for event in events if event["asset"] == "churn_drift"]
    assert len(drift) == 1
    [event] = drift
    assert (event["task"], event["run"], event["aliases"]) == (
        "monitor",
        drifted_run["run"]["run_id"],
        ["churn_drift_detected"],
    )
    assert {"MonthlyCharges", "Contract"} <= set(event["extra"]["drifted_features"])
    assert all(psi > 0.25 for psi in event["extra"]["drifted_features"].values())
    assert event["extra"]["score_date"] == SCORE_DATE.isoformat()
    # publishing the scores is the churn_scores asset's event, once per run
    assert [event["task"] for event in events if event["asset"] == "churn_scores"] == ["score.publish"]


def test_the_drift_event_makes_the_dag_due_for_an_asset_triggered_run(drifted_run):
    assert drifted_run["airflow"]["queued"] == ["churn_pipeline"]
    assert drifted_run["airflow"]["due"] == ["churn_pipeline"]
