"""The production path: Airflow's scheduler, DAG processor and API server on loopback with
PostgreSQL as metadata database (LocalExecutor), runs triggered through the REST API the
way the UI's trigger form does, and scores written to a PostgreSQL warehouse.

The test starts and stops its own processes and databases.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pandas as pd
import pytest

from churn.raci import phase_task_id
from tests.conftest import EXPECTED_OWNERS
from tests.e2e.airflow_stack import (
    Stack,
    days_before_today,
    running_standalone,
    stack_setting,
)
from tests.e2e.deployment import e2e_pipeline_config

pytestmark = pytest.mark.e2e

SCORE_DATE = days_before_today(10)
SCORING_ROWS = 1_000


@pytest.fixture(scope="module")
def stack(postgres_url: str, tmp_path_factory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("scheduler")
    with stack_setting(postgres_url, root, training_rows=5_000, scoring_rows=SCORING_ROWS, seed=11) as setting:
        setting.env["AIRFLOW__CORE__EXECUTOR"] = "LocalExecutor"
        setting.env["CHURN_PIPELINE_CONFIG"] = str(e2e_pipeline_config(root / "pipeline.yaml"))
        with running_standalone(setting.env, root, setting.password) as (api, logs):
            yield Stack(
                api=api, warehouse_url=setting.warehouse_url, sources=setting.sources, root=root, logs=logs
            )


def test_anonymous_requests_are_refused(stack: Stack):
    assert httpx.get(f"{stack.api.base_url}/api/v2/dags").status_code == 401


def test_ui_lists_the_seven_phases_with_their_owners(stack: Stack):
    tasks = stack.api.get("/api/v2/dags/churn_pipeline/tasks").json()["tasks"]
    owners = {task["task_id"]: task["owner"] for task in tasks}
    # The score phase is a group of three tasks, each owned by the phase's Responsible role.
    assert {phase_task_id(task_id): owner for task_id, owner in owners.items()} == EXPECTED_OWNERS
    assert sorted(task_id for task_id in owners if task_id.startswith("score.")) == [
        "score.partition",
        "score.plan",
        "score.publish",
    ]


def test_a_date_that_does_not_exist_is_refused_before_any_run_exists(stack: Stack):
    # Sources are judged by ingest, in words (tests/unit/test_ingest.py): the form checks no pattern.
    answer = stack.trigger({"score_date": "2026-02-30"})
    assert answer.status_code == 400
    assert "score_date" in answer.json()["detail"]


def test_triggered_run_scores_into_postgres_then_a_broken_file_stops_at_validate(stack: Stack):
    assert stack.api.patch("/api/v2/dags/churn_pipeline", json={"is_paused": False}).status_code == 200

    good = stack.trigger({"score_date": SCORE_DATE.isoformat()})
    assert good.status_code == 200, good.text
    run_id = good.json()["dag_run_id"]
    assert stack.wait_for(run_id) == "success", stack.log_tails()
    # Unpausing starts the latest 02:00 slot's run, for a later date; when it scores first, this
    # run is a backfill, which cannot promote and so skips what it could not use.
    states = stack.task_states(run_id)
    skipped = {task for task, state in states.items() if state == "skipped"}
    assert skipped in (set(), {"train", "evaluate", "approve", "package"}), states
    assert set(states.values()) <= {"success", "skipped"}, states
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
    scoring = {states.get(task) for task in ("score.plan", "score.partition", "score.publish")}
    assert scoring <= {"upstream_failed", None}
    pd.testing.assert_frame_equal(stack.scores(SCORE_DATE), scores)
