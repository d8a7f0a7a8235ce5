"""Incident response through Airflow's real components: a run that fails at ``validate`` on a
broken training file tells exactly the roles the matrix names (in ``churn_alerts``, the alerts
file, and a webhook on loopback through Airflow's HttpNotifier), and the check of a past date's
scores (the ``churn_scores_due`` DAG) leaves a deadline alert for the score phase.

The scheduler, DAG processor, triggerer and API server run as ``airflow standalone`` with
PostgreSQL as metadata database.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import sqlalchemy as sa
import yaml

from churn.alerts import ALERTS_FILE, alerts_table, read_alerts
from churn.generate import make_snapshots
from tests.conftest import write_csv
from tests.e2e.airflow_stack import (
    Stack,
    days_before_today,
    running_standalone,
    stack_setting,
)
from tests.e2e.deployment import e2e_pipeline_config
from tests.unit.test_incident_response import WebhookReceiver, receiving_webhooks

pytestmark = pytest.mark.e2e

# A past date: its scores were due at 06:00 UTC that day, long before the run is even created.
LATE_DATE = days_before_today(10)
ALERT_WAIT_SECONDS = 300


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookReceiver]:
    with receiving_webhooks() as server:
        yield server


@pytest.fixture(scope="module")
def stack(postgres_url: str, tmp_path_factory, webhook: WebhookReceiver) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("incident_response")
    # Too few training rows for the contract: the scheduled run that unpausing starts fails
    # at validate at once instead of training for minutes.
    with stack_setting(postgres_url, root, training_rows=300, scoring_rows=50, seed=13) as setting:
        config_path = e2e_pipeline_config(root / "pipeline.yaml")
        config = yaml.safe_load(config_path.read_text())
        config["alerts"]["routes"]["data_engineer"]["webhook_conn_id"] = "data_team_hook"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        setting.env.update(
            {
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "CHURN_PIPELINE_CONFIG": str(config_path),
                # The webhook's URL (a real one carries a token) is in the Connection only.
                "AIRFLOW_CONN_DATA_TEAM_HOOK": json.dumps(
                    {"conn_type": "http", "host": f"{webhook.url}/hooks/data-team/t0ken"}
                ),
            }
        )
        with running_standalone(setting.env, root, setting.password) as (api, logs):
            yield Stack(
                api=api, warehouse_url=setting.warehouse_url, sources=setting.sources, root=root, logs=logs
            )


def stored_alerts(stack: Stack, run_id: str) -> list[dict]:
    engine = sa.create_engine(stack.warehouse_url)
    table = alerts_table(sa.MetaData(), "churn_alerts", None)
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table(table.name):
                return []
            return [
                dict(row._mapping) for row in connection.execute(sa.select(table).where(table.c.run_id == run_id))
            ]
    finally:
        engine.dispose()


def wait_for_alert(stack: Stack, run_id: str, kind: str) -> dict:
    deadline = time.monotonic() + ALERT_WAIT_SECONDS
    while time.monotonic() < deadline:
        found = [alert for alert in stored_alerts(stack, run_id) if alert["kind"] == kind]
        if found:
            (alert,) = found
            return alert
        time.sleep(2)
    raise AssertionError(f"no {kind} alert for {run_id} in {ALERT_WAIT_SECONDS} s\n{stack.log_tails()}")


def posted_for(webhook: WebhookReceiver, run_id: str, kind: str) -> dict:
    """The one message of ``kind`` about ``run_id`` the webhook received (sent just after the
    alert is recorded)."""
    deadline = time.monotonic() + 60
    while True:
        posted = [
            hook for hook in webhook.received if (hook["json"]["run_id"], hook["json"]["kind"]) == (run_id, kind)
        ]
        if posted or time.monotonic() > deadline:
            (message,) = posted
            return message
        time.sleep(1)


def test_a_late_run_failing_at_validate_tells_exactly_the_matrixs_roles(stack: Stack, webhook: WebhookReceiver):
    training = make_snapshots(1000, 50, seed=7).training
    training["tenure"] = training["tenure"].astype("string")
    training.loc[training.index[:3], "tenure"] = "twelve"
    broken = write_csv(training, stack.root / "broken" / "training.csv")
    assert stack.api.patch("/api/v2/dags/churn_pipeline", json={"is_paused": False}).status_code == 200

    answer = stack.api.post(
        "/api/v2/dags/churn_pipeline/dagRuns",
        json={"logical_date": f"{LATE_DATE}T02:00:00Z", "conf": {"training_source": str(broken)}},
    )
    assert answer.status_code == 200, answer.text
    run_id = answer.json()["dag_run_id"]
    assert stack.wait_for(run_id) == "failed", stack.log_tails()
    assert stack.task_states(run_id)["validate"] == "failed"

    # The failure: one alert, for validate, to data_engineer (Responsible and Accountable),
    # informing the matrix's Informed roles; never the Consulted ones.
    failed = wait_for_alert(stack, run_id, "task_failure")
    assert (failed["task_id"], failed["phase"], failed["try_number"]) == ("validate", "Data Validation", 1)
    assert failed["to_roles"] == "data_engineer"
    assert failed["informed_roles"] == "devops_engineer,product_manager"
    assert failed["score_date"] == LATE_DATE
    assert f"/dags/churn_pipeline/runs/{quote(run_id)}/tasks/validate" in failed["log_url"]
    assert "try_number=1" in failed["log_url"]
    assert "tenure" in failed["error"] and "twelve" in failed["error"]
    assert [alert["task_id"] for alert in stored_alerts(stack, run_id) if alert["kind"] == "task_failure"] == [
        "validate"
    ]
    # The same message reached data_engineer's webhook, whose URL only the Connection knows.
    posted = posted_for(webhook, run_id, "task_failure")
    assert posted["path"] == "/hooks/data-team/t0ken"
    assert (posted["json"]["task_id"], posted["json"]["to"]) == ("validate", ["data_engineer"])

    # The deadline: at 06:00 UTC on the score date, churn_scores_due finds no scores for it and
    # tells the score phase's owners.
    assert stack.api.patch("/api/v2/dags/churn_scores_due", json={"is_paused": False}).status_code == 200
    answer = stack.api.post(
        "/api/v2/dags/churn_scores_due/dagRuns", json={"logical_date": f"{LATE_DATE}T06:00:00Z"}
    )
    assert answer.status_code == 200, answer.text
    check_id = answer.json()["dag_run_id"]
    late = wait_for_alert(stack, check_id, "deadline_missed")
    assert (late["phase"], late["task_id"], late["score_date"]) == ("Deployment", None, LATE_DATE)
    assert late["to_roles"] == "mlops_engineer"
    assert late["informed_roles"] == "data_scientist,data_engineer,product_manager"
    assert f"due by {LATE_DATE}T06:00:00+00:00" in late["error"]
    # data_engineer is informed of it, on the same webhook.
    assert posted_for(webhook, check_id, "deadline_missed")["json"]["informed"] == [
        "data_scientist",
        "data_engineer",
        "product_manager",
    ]

    # Both are in the alerts file too, the embedded default's record.
    recorded = [
        line["kind"]
        for line in read_alerts(stack.root / "churn" / ALERTS_FILE)
        if line["run_id"] in {run_id, check_id}
    ]
    assert sorted(recorded) == ["deadline_missed", "task_failure"]
