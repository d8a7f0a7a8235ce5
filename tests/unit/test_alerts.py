"""Incident response by the matrix: who an alert is addressed to, what it says, and its local
record (file and warehouse table), written once however often a callback runs."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time

import pytest
import sqlalchemy as sa

from churn.alerts import (
    ALERTS_FILE,
    addressees,
    alerts_table,
    deadline_missed_alert,
    error_head,
    phase_for_task,
    read_alerts,
    recipients,
    record_alert,
    scores_due_schedule,
    task_failure_alert,
)
from churn.documents import ConfigurationError, parse_document
from churn.raci import load_matrix, load_raci
from churn.settings import PROJECT_DIR, AlertRoute, PipelineConfig, load_settings
from churn.warehouse import warehouse_engine

BUNDLED = (PROJECT_DIR / "include" / "churn" / "pipeline.yaml").read_text()
# The matrix, restated: who must act (R, A) and who is informed, per task.
EXPECTED_ADDRESSEES = {
    "ingest": (("data_engineer",), ("ml_engineer", "mlops_engineer", "devops_engineer")),
    "validate": (("data_engineer",), ("devops_engineer", "product_manager")),
    "feature": (("data_scientist", "ml_engineer"), ("mlops_engineer", "devops_engineer", "product_manager")),
    "package": (("ml_engineer",), ("data_engineer", "product_manager")),
    "score": (("mlops_engineer",), ("data_scientist", "data_engineer", "product_manager")),
}
NOW = datetime(2026, 11, 29, 3, 4, 5, tzinfo=UTC)


def failure(task_id: str = "validate", error: BaseException | str = "contract broken", **changes):
    return task_failure_alert(
        **{
            "dag_id": "churn_pipeline",
            "run_id": "manual__2026-11-29T02:00:00+00:00",
            "task_id": task_id,
            "map_index": -1,
            "try_number": 1,
            "error": error,
            "log_url": "http://localhost:8080/dags/churn_pipeline/runs/r/tasks/validate?try_number=1",
            "score_date": date(2026, 11, 29),
            "error_lines": 3,
            "now": NOW,
            **changes,
        }
    )


@pytest.mark.parametrize(("task_id", "expected"), EXPECTED_ADDRESSEES.items())
def test_an_alert_goes_to_the_responsible_and_accountable_and_informs_the_informed(task_id, expected):
    alert = failure(task_id)
    assert (alert.to, alert.informed) == expected
    row = load_raci()[task_id]
    assert not set(row.consulted) & {*alert.to, *alert.informed}  # consulted roles are not written to


def test_every_phase_is_addressed_to_exactly_its_r_and_a_and_its_i():
    for row in load_matrix().phases:
        to, informed = addressees(row)
        assert set(to) == {row.responsible, row.accountable} and len(to) == len(set(to))
        assert set(informed) == set(row.informed) - set(to)


@pytest.mark.parametrize("task_id", ["score.plan", "score.partition", "score.publish"])
def test_a_step_of_the_score_group_answers_to_the_deployment_phase(task_id):
    assert phase_for_task(task_id).phase == "Deployment"
    assert failure(task_id).to == ("mlops_engineer",)


def test_the_approval_gate_answers_to_model_evaluation():
    assert phase_for_task("approve").phase == "Model Evaluation"
    assert failure("approve").to == ("data_scientist",)


def test_a_task_the_matrix_does_not_name_goes_to_incident_response():
    alert = failure("a_task_nobody_owns")
    assert alert.phase == "Incident Response"
    assert alert.to == ("mlops_engineer", "product_manager") and alert.informed == ("data_scientist",)


def test_the_message_quotes_the_first_lines_of_the_error_with_passwords_masked():
    error = RuntimeError(
        "could not reach postgresql://churn:s3cret@db:5432/warehouse\nsecond\nthird\nfourth\nfifth"
    )
    alert = failure(error=error)
    assert alert.error.splitlines()[:3] == [
        "RuntimeError: could not reach postgresql://churn:***@db:5432/warehouse",
        "second",
        "third",
    ]
    assert "fourth" not in alert.error and "2 more lines in the log" in alert.error
    assert "s3cret" not in alert.text()
    assert error_head("one line", 3) == "one line"


def test_the_message_names_the_task_try_log_and_roles():
    alert = failure("score.partition", map_index=2, try_number=3)
    text = alert.text()
    assert "score.partition[2] failed (try 3)" in alert.subject()
    assert alert.log_url in text and "To (Responsible, Accountable): mlops_engineer" in text
    assert "Informed: data_scientist, data_engineer, product_manager" in text


def test_a_missed_deadline_is_addressed_to_the_score_phase():
    alert = deadline_missed_alert(
        dag_id="churn_pipeline",
        run_id="scheduled__2026-11-29T02:00:00+00:00",
        score_date=date(2026, 11, 29),
        deadline=datetime(2026, 11, 29, 6, tzinfo=UTC),
        log_url=None,
    )
    assert (alert.kind, alert.phase, alert.task_id, alert.try_number) == (
        "deadline_missed",
        "Deployment",
        None,
        None,
    )
    assert (alert.to, alert.informed) == EXPECTED_ADDRESSEES["score"]
    assert "due by 2026-11-29T06:00:00+00:00" in alert.error


def test_the_scores_due_check_runs_daily_at_the_due_time():
    assert scores_due_schedule(time(6, 0)) == "0 6 * * *"
    assert scores_due_schedule(time(5, 30)) == "30 5 * * *"


def test_recipients_are_the_roles_addresses_once_each():
    routes = {
        "data_engineer": AlertRoute(email=("de@example.com", "oncall@example.com")),
        "devops_engineer": AlertRoute(email=("oncall@example.com",)),
        "product_manager": AlertRoute(page="https://chat.example.com/pm"),
    }
    assert recipients(("data_engineer", "devops_engineer", "product_manager"), routes) == [
        "de@example.com",
        "oncall@example.com",
    ]


def stored_alerts(url: str) -> list[dict]:
    engine = warehouse_engine(url)
    try:
        with engine.connect() as connection:
            table = alerts_table(sa.MetaData(), "churn_alerts", None)
            return [dict(row._mapping) for row in connection.execute(sa.select(table))]
    finally:
        engine.dispose()


def test_an_alert_is_recorded_once_in_the_table_and_the_file(settings):
    alert = failure()
    assert record_alert(alert, settings) is True
    assert record_alert(alert, settings) is False  # the callback ran twice: nothing new
    (row,) = stored_alerts(settings.warehouse_url)
    assert (row["kind"], row["task_id"], row["try_number"], row["to_roles"], row["informed_roles"]) == (
        "task_failure",
        "validate",
        1,
        "data_engineer",
        "devops_engineer,product_manager",
    )
    assert row["log_url"] == alert.log_url and row["score_date"] == date(2026, 11, 29)
    (line,) = read_alerts(settings.state_dir / ALERTS_FILE)
    assert line["alert_key"] == alert.key and line["to"] == ["data_engineer"]


def test_each_try_and_each_kind_is_an_alert_of_its_own(settings):
    for alert in (failure(try_number=1), failure(try_number=2), failure(map_index=0), failure(map_index=1)):
        assert record_alert(alert, settings)
    assert len(stored_alerts(settings.warehouse_url)) == 4
    assert len(read_alerts(settings.state_dir / ALERTS_FILE)) == 4


def test_an_unwritable_warehouse_still_leaves_the_alert_in_the_file(settings, tmp_path):
    blocked = tmp_path / "not_a_folder"
    blocked.write_text("a file where the database's folder should be")
    broken = settings.overridden(warehouse_url=f"sqlite:///{blocked / 'warehouse.db'}")
    assert record_alert(failure(), broken) is True
    assert len(read_alerts(settings.state_dir / ALERTS_FILE)) == 1


def test_an_alert_whose_warehouse_connection_is_unreadable_goes_to_the_file_only(settings):
    assert record_alert(failure(), settings, in_warehouse=False) is True
    assert len(read_alerts(settings.state_dir / ALERTS_FILE)) == 1
    assert not sa.inspect(warehouse_engine(settings.warehouse_url)).has_table("churn_alerts")


def test_alerts_are_recorded_once_in_postgresql(postgres_url, settings):
    config = settings.config.model_copy(
        update={"alerts": settings.config.alerts.model_copy(update={"table": f"churn_alerts_{NOW:%H%M%S}"})}
    )
    on_postgres = settings.overridden(warehouse_url=postgres_url, config=config)
    alert = failure(run_id=f"pg-{datetime.now(UTC).timestamp()}")
    engine = warehouse_engine(postgres_url)
    table = alerts_table(sa.MetaData(), config.alerts.table, None)
    try:
        assert record_alert(alert, on_postgres) is True
        assert record_alert(alert, on_postgres) is False
        with engine.connect() as connection:
            assert connection.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 1
    finally:
        with engine.begin() as connection:
            table.drop(connection, checkfirst=True)
        engine.dispose()


def config_with(old: str, new: str) -> PipelineConfig:
    assert old in BUNDLED
    return parse_document(PipelineConfig, BUNDLED.replace(old, new), "pipeline.yaml")


def test_the_bundled_routes_reach_every_role():
    alerts = load_settings().config.alerts
    assert set(alerts.routes) == set(load_matrix().roles)
    assert alerts.scores_due == time(6, 0) and alerts.table == "churn_alerts"


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("data_engineer: {email", "data_engneer: {email", "routes for roles raci.yaml does not name"),
        ("{email: [data-engineers@example.com]}", "{emails: [data-engineers@example.com]}", "unknown key"),
        ("[data-engineers@example.com]", "[data-engineers]", "is not an e-mail address"),
        (
            "{email: [data-engineers@example.com]}",
            "{webhook_conn_id: de_hook}",
            "a route needs an e-mail address or a page",
        ),
        (
            "{email: [data-engineers@example.com]}",
            "{page: 'https://bot:token@chat.example.com/de'}",
            "not an http(s) URL without a login",
        ),
        (
            "{email: [data-engineers@example.com]}",
            "{email: [a@example.com], webhook_conn_id: 'de hook'}",
            "not an Airflow Connection id",
        ),
        ('scores_due: "06:00"', "scores_due: 6:00", "a time of day in quotes"),
        ('scores_due: "06:00"', 'scores_due: "25:00"', "scores_due"),
        ("table: churn_alerts", "table: churn-alerts", "not a valid SQL identifier"),
        ("error_lines: 12", "error_lines: 0", "error_lines"),
        ("smtp_conn_id: smtp_default", "smtp_conn: smtp_default", "unknown key 'alerts.smtp_conn'"),
    ],
)
def test_a_wrong_alerts_setting_is_refused_by_name(old, new, named):
    with pytest.raises(ConfigurationError, match=re.escape(named)):
        config_with(old, new)
