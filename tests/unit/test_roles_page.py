"""The roles page's data and HTML: each phase's latest run and owner (Incident Response's
scores-due check, Retraining's drift-started run), the warehouse's scores, the latest monitored
date in full (one row per feature, drifted first) and the alerts newest raised first (absent
tables included), no champion, and the data and monitoring reports served only from inside
their folders."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from html import escape as html_escape
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from churn.alerts import record_alert, task_failure_alert
from churn.monitor import Metric, metric_rows
from churn.raci import load_matrix
from churn.roles_page import (
    ALERT_COLUMNS,
    ALERT_RAISED_AT,
    MONITORING_REPORT,
    RECENT_ROWS,
    ChampionModel,
    DagRunRecord,
    PageLinks,
    ReportNotFound,
    ScoresOfDay,
    TableExcerpt,
    TaskRecord,
    gather_roles_page,
    latest_monitoring_rows,
    latest_phase_runs,
    local_runs_dir,
    monitoring_figures,
    phase_state,
    recent_rows,
    render_alerts,
    render_roles_page,
    report_file,
    report_url,
    run_report_folder,
    scores_of_day,
)
from churn.warehouse import (
    WarehouseState,
    monitoring_table,
    replace_monitoring,
    replace_scores,
    scores_table,
    warehouse_engine,
)
from tests.conftest import EXPECTED_OWNERS, SCORE_DATE, score_rows

EARLIER_RUN = "scheduled__2026-11-28T02:00:00+00:00"
LATER_RUN = "manual__2026-11-29T02:00:00+00:00"
LINKS = PageLinks(page_prefix="/churn-roles", mlflow_ui="http://127.0.0.1:5000")
START = datetime(2026, 11, 29, 2, tzinfo=UTC)


def record(
    task_id: str,
    run_id: str,
    state: str | None,
    seconds: float = 10,
    offset: float = 0,
    dag_id: str = "churn_pipeline",
    run_after: datetime | None = None,
) -> TaskRecord:
    run_after = run_after or (START if run_id == LATER_RUN else START - timedelta(days=1))
    started = run_after + timedelta(seconds=offset)
    return TaskRecord(task_id, run_id, run_after, state, started, started + timedelta(seconds=seconds), dag_id)


def test_each_phase_shows_its_owner_and_its_latest_run():
    records = [
        record("ingest", EARLIER_RUN, "success"),
        record("validate", EARLIER_RUN, "success"),
        record("ingest", LATER_RUN, "success", seconds=3),
        record("validate", LATER_RUN, "failed", seconds=4),
        record("feature", LATER_RUN, "upstream_failed", seconds=0),
        record("train", LATER_RUN, None),  # created, never ran: the earlier run is the latest that did
        record("train", EARLIER_RUN, "success", seconds=61),
    ]
    runs = {run.task_id: run for run in latest_phase_runs(load_matrix(), records)}

    for task_id, owner in EXPECTED_OWNERS.items():
        assert runs[task_id].owner == owner
    assert (runs["ingest"].run_id, runs["ingest"].state, runs["ingest"].seconds) == (LATER_RUN, "success", 3)
    assert (runs["validate"].run_id, runs["validate"].state) == (LATER_RUN, "failed")
    assert runs["feature"].state == "upstream_failed"
    assert (runs["train"].run_id, runs["train"].state, runs["train"].seconds) == (EARLIER_RUN, "success", 61)
    assert (runs["evaluate"].run_id, runs["evaluate"].state, runs["evaluate"].seconds) == (None, None, None)
    # Incident Response (its check never ran) and Retraining (no drift-started run) are listed
    # with their owner and no run.
    by_phase = {run.phase: run for run in latest_phase_runs(load_matrix(), records)}
    assert (by_phase["Incident Response"].task_id, by_phase["Incident Response"].run_id) == (
        "check_scores_written",
        None,
    )
    assert (by_phase["Incident Response"].owner, by_phase["Retraining"].owner) == ("mlops_engineer", "ml_engineer")
    assert (by_phase["Retraining"].whole_run, by_phase["Retraining"].run_id) == (True, None)


def test_incident_response_is_the_scores_due_checks_latest_run_and_retraining_the_latest_drift_run(settings):
    due_earlier, due_later = "scheduled__2026-11-29T06:00:00+00:00", "scheduled__2026-11-30T06:00:00+00:00"
    checks = {"dag_id": "churn_scores_due"}
    records = [
        record(
            "check_scores_written", due_later, "failed", seconds=7, run_after=START + timedelta(days=1), **checks
        ),
        record("check_scores_written", due_earlier, "success", seconds=2, run_after=START, **checks),
        # A task of that name in another DAG is not the check; the check's DAG has no pipeline phase.
        record("check_scores_written", LATER_RUN, "success", seconds=99, run_after=START + timedelta(days=2)),
        record("monitor", due_later, "failed", run_after=START + timedelta(days=1), **checks),
    ]
    drift_runs = [
        DagRunRecord(
            "asset_triggered__2026-11-29T03:00:00+00:00", START, "success", START, START + timedelta(minutes=4)
        ),
        DagRunRecord(
            "asset_triggered__2026-11-30T03:00:00+00:00", START + timedelta(days=1), "running", START, None
        ),
    ]
    phases = {run.phase: run for run in latest_phase_runs(load_matrix(), records, drift_runs)}

    incident = phases["Incident Response"]
    assert (incident.dag_id, incident.task_id, incident.run_id, incident.state, incident.seconds) == (
        "churn_scores_due",
        "check_scores_written",
        due_later,
        "failed",
        7,
    )
    assert phases["Monitoring Setup"].run_id is None
    retraining = phases["Retraining"]
    assert (retraining.run_id, retraining.state, retraining.seconds) == (drift_runs[1].run_id, "running", None)
    finished = {run.phase: run for run in latest_phase_runs(load_matrix(), records, drift_runs[:1])}["Retraining"]
    assert (finished.state, finished.seconds) == ("success", 240)

    html = render_roles_page(gather_roles_page(load_matrix(), records, settings, SCORE_DATE, drift_runs), LINKS)
    incident_row = re.search(r"<tr><td>Incident Response</td>.*?</tr>", html).group(0)
    assert "<code>check_scores_written</code>" in incident_row and "in churn_scores_due" in incident_row
    assert 'class="state state-failed"' in incident_row and "7 s" in incident_row
    assert f'href="/dags/churn_scores_due/runs/{quote(due_later, safe="")}"' in incident_row
    retraining_row = re.search(r"<tr><td>Retraining</td>.*?</tr>", html).group(0)
    assert "drift-started run of <code>churn_pipeline</code>" in retraining_row
    assert 'class="state state-running"' in retraining_row
    assert "no task yet" not in html


def test_the_score_group_is_one_phase_its_worst_state_from_first_start_to_last_end():
    records = [
        record("score.plan", LATER_RUN, "success", seconds=5),
        record("score.partition", LATER_RUN, "success", seconds=20, offset=5),
        record("score.partition", LATER_RUN, "failed", seconds=30, offset=5),
        record("score.publish", LATER_RUN, "upstream_failed", seconds=0, offset=40),
    ]
    (score,) = [run for run in latest_phase_runs(load_matrix(), records) if run.task_id == "score"]
    assert score.state == "failed"
    assert score.seconds == 40


def test_the_approval_gate_is_a_step_of_model_evaluation():
    records = [
        record("evaluate", LATER_RUN, "success", seconds=12),
        record("approve", LATER_RUN, "awaiting_input", seconds=300, offset=12),
    ]
    by_phase = {run.phase: run for run in latest_phase_runs(load_matrix(), records)}
    evaluation = by_phase["Model Evaluation"]
    assert (evaluation.task_id, evaluation.state, evaluation.seconds) == ("evaluate", "awaiting_input", 312)
    assert all(run.task_id != "approve" for run in by_phase.values())


def test_a_phase_state_is_its_worst_tasks():
    assert phase_state(["success", "skipped"]) == "skipped"
    assert phase_state(["success", "running"]) == "running"
    assert phase_state(["success", "failed", "upstream_failed"]) == "failed"
    assert phase_state(["a_state_airflow_adds_later"]) == "a_state_airflow_adds_later"
    assert phase_state([]) is None


@pytest.fixture
def warehouse(settings) -> sa.Engine:
    settings.state_dir.mkdir(parents=True)
    engine = warehouse_engine(settings.warehouse_url)
    yield engine
    engine.dispose()


def test_an_absent_monitoring_or_alerts_table_reads_as_none(settings, warehouse):
    assert latest_monitoring_rows(warehouse, settings.config.monitoring.table, None) == []
    assert recent_rows(warehouse, settings.config.alerts.table, None, ALERT_RAISED_AT) is None
    assert monitoring_figures([]) is None


def write_monitoring(engine: sa.Engine, score_date: date, metrics: list[Metric], run_id: str = LATER_RUN) -> None:
    """``metrics`` as the monitor task writes them for ``score_date``."""
    table = monitoring_table(sa.MetaData(), "churn_monitoring", None)
    replace_monitoring(engine, table, score_date, metric_rows(metrics, run_id, "3", START))


def feature_metrics(feature: str, psi: float, *, categorical: bool = False, missing: float = 0.0) -> list[Metric]:
    """A feature's rows of ``churn_monitoring`` (threshold 0.25), as churn.monitor makes them."""
    metrics = [Metric("feature_psi", feature, psi, threshold=0.25)]
    if categorical:
        metrics.append(Metric("unseen_category_share", feature, 0.05, reference_value=0.0, detail="unseen: Fibre"))
    return [*metrics, Metric("missing_rate", feature, missing, reference_value=0.01)]


PREDICTIONS = [
    Metric("prediction_psi", None, 0.31, threshold=0.1),
    Metric("churn_probability_mean", None, 0.42, reference_value=0.27),
    Metric("risk_band_share", "low", 0.5, reference_value=0.6),
    Metric("risk_band_share", "high", 0.2, reference_value=0.1),
    Metric("realised_roc_auc", None, 0.81, detail="scores of 2026-11-01 for 250 customers"),
]


def test_the_latest_monitored_date_is_read_whole_however_many_rows_it_has(settings, warehouse):
    calm = [metric for index in range(30) for metric in feature_metrics(f"feature_{index:02}", 0.01)]
    write_monitoring(
        warehouse, SCORE_DATE - timedelta(days=1), feature_metrics("only_yesterday", 0.9), EARLIER_RUN
    )
    # The drifted feature sorts last by name and by insertion: a cut-off read would lose it.
    write_monitoring(warehouse, SCORE_DATE, [*calm, *PREDICTIONS, *feature_metrics("zz_drifted", 0.4)])

    rows = latest_monitoring_rows(warehouse, settings.config.monitoring.table, None)
    assert len(rows) == 30 * 2 + len(PREDICTIONS) + 2 > RECENT_ROWS
    assert {row["score_date"] for row in rows} == {SCORE_DATE}
    figures = monitoring_figures(rows)
    assert (figures.score_date, figures.run_id, figures.model_version) == (SCORE_DATE, LATER_RUN, "3")
    assert len(figures.features) == 31
    assert figures.features[0].feature == "zz_drifted" and figures.features[0].drifted
    assert "only_yesterday" not in {feature.feature for feature in figures.features}


def test_monitoring_reads_as_one_row_per_feature_drifted_first_with_the_predictions_figures():
    rows = metric_rows(
        [
            *feature_metrics("tenure", 0.02),
            *feature_metrics("Contract", 0.3, categorical=True, missing=0.1),
            *feature_metrics("MonthlyCharges", 0.6),
            *feature_metrics("gender", 0.05, categorical=True),
            *PREDICTIONS,
        ],
        LATER_RUN,
        "3",
        START,
    ).assign(score_date=SCORE_DATE)
    figures = monitoring_figures(rows.to_dict("records"))

    assert [(f.feature, f.drifted) for f in figures.features] == [
        ("MonthlyCharges", True),
        ("Contract", True),
        ("gender", False),
        ("tenure", False),
    ]
    contract = figures.features[1]
    assert (contract.psi, contract.threshold, contract.unseen_share, contract.unseen_detail) == (
        0.3,
        0.25,
        0.05,
        "unseen: Fibre",
    )
    assert (contract.missing_rate, contract.training_missing_rate) == (0.1, 0.01)
    assert figures.features[3].unseen_share is None  # a number has no categories
    assert (figures.prediction_psi, figures.prediction_psi_threshold, figures.prediction_drifted) == (
        0.31,
        0.1,
        True,
    )
    assert (figures.probability_mean, figures.training_probability_mean) == (0.42, 0.27)
    assert [(band.band, band.share, band.training_share) for band in figures.risk_bands] == [
        ("low", 0.5, 0.6),
        ("high", 0.2, 0.1),
    ]
    assert (figures.realised_roc_auc, figures.realised_detail) == (0.81, "scores of 2026-11-01 for 250 customers")

    calm = monitoring_figures(
        metric_rows([*feature_metrics("tenure", 0.02), PREDICTIONS[1]], LATER_RUN, "3", START)
        .assign(score_date=SCORE_DATE)
        .to_dict("records")
    )
    assert not calm.prediction_drifted and calm.prediction_psi is None and calm.realised_roc_auc is None


def raise_alert(settings, task_id: str, score_date: date, raised: datetime) -> None:
    alert = task_failure_alert(
        dag_id="churn_pipeline",
        run_id=f"manual__{score_date}",
        task_id=task_id,
        map_index=None,
        try_number=1,
        error="ValueError: broken",
        log_url=None,
        score_date=score_date,
        error_lines=5,
        now=raised,
    )
    assert record_alert(alert, settings)


def test_alerts_come_newest_raised_first_whatever_their_score_date(settings, warehouse):
    raise_alert(settings, "validate", SCORE_DATE, START)
    raise_alert(settings, "train", SCORE_DATE - timedelta(days=3), START + timedelta(hours=2))  # a late backfill
    raise_alert(settings, "ingest", SCORE_DATE - timedelta(days=1), START + timedelta(hours=1))

    alerts = recent_rows(warehouse, settings.config.alerts.table, None, ALERT_RAISED_AT, ALERT_COLUMNS)
    assert alerts.columns == list(ALERT_COLUMNS)
    assert [row[alerts.columns.index("task_id")] for row in alerts.rows] == ["train", "ingest", "validate"]
    everything = recent_rows(warehouse, settings.config.alerts.table, None, ALERT_RAISED_AT)
    assert "alert_key" in everything.columns and len(everything.rows) == 3
    html = render_alerts(alerts)
    assert (
        html.index("<code>train</code>") < html.index("<code>ingest</code>") < html.index("<code>validate</code>")
    )


def test_scores_of_today_or_else_of_the_latest_date(settings, warehouse):
    assert scores_of_day(settings, SCORE_DATE).score_date is None  # no warehouse yet
    with warehouse.connect():
        pass
    assert scores_of_day(settings, SCORE_DATE).score_date is None  # no table yet

    table = scores_table(sa.MetaData(), "churn_scores", None)
    replace_scores(warehouse, table, SCORE_DATE, score_rows(range(3), band="low"))
    replace_scores(warehouse, table, SCORE_DATE - timedelta(days=1), score_rows(range(5), band="high"))

    today = scores_of_day(settings, SCORE_DATE)
    assert (today.score_date, today.state.rows, today.state.risk_bands) == (SCORE_DATE, 3, {"low": 3})
    later = scores_of_day(settings, SCORE_DATE + timedelta(days=1))
    assert (later.score_date, later.state.rows) == (SCORE_DATE, 3)


def test_an_alert_reads_as_what_happened_to_whom_and_where():
    columns = list(ALERT_COLUMNS)
    failure = dict.fromkeys(columns) | {
        "created_at": START,
        "kind": "task_failure",
        "phase": "Data Validation",
        "task_id": "validate",
        "try_number": 2,
        "run_id": LATER_RUN,
        "score_date": SCORE_DATE,
        "to_roles": "data_engineer",
        "informed_roles": "devops_engineer,product_manager",
        "error": "ContractViolation: <tenure> " + "x" * 200,
    }
    deadline = failure | {"kind": "deadline_missed", "task_id": None, "try_number": None, "score_date": None}
    alerts = TableExcerpt("churn_alerts", columns, [tuple(row[c] for c in columns) for row in (failure, deadline)])
    html = render_alerts(alerts)

    assert "2 alerts of <code>churn_alerts</code>, the newest raised first." in html
    first, second = re.findall(r"<tr><td.*?</tr>", html)
    assert "2026-11-29 02:00" in first and "task failure of <code>validate</code> (try 2)" in first
    assert "<td>data_engineer</td><td>devops_engineer, product_manager</td>" in first
    assert "score date 2026-11-29" in first and "&lt;tenure&gt;" in first
    assert f'title="{html_escape(failure["error"])}"' in first and "x" * 200 + "<" not in first
    assert "<td>deadline missed</td>" in second and "score date unknown" in second
    assert render_alerts(None) == '<p class="empty">No alerts: none has ever been raised.</p>'
    assert render_alerts(TableExcerpt("churn_alerts", columns, [])) == '<p class="empty">No alerts.</p>'


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    """A run folder with a two-file report, and a secret next to the report."""
    run = tmp_path / "runs" / "score_date=2026-11-29" / "run_id=manual__2026-11-29T02_00_00_00_00"
    (run / "data_docs" / "static").mkdir(parents=True)
    (run / "data_docs" / "index.html").write_text("<html>report</html>")
    (run / "data_docs" / "static" / "style.css").write_text("body {}")
    (run / "manifests").mkdir()
    (run / "manifests" / "failed.json").write_text("{}")
    (run / "monitoring").mkdir()
    (run / "monitoring" / "report.html").write_text("<html>monitoring</html>")
    (tmp_path / "secret.txt").write_text("secret")
    return tmp_path / "runs"


def test_a_report_file_is_served_from_its_run_folder(runs_dir):
    assert report_file(runs_dir, LATER_RUN, "index.html").read_text() == "<html>report</html>"
    assert report_file(runs_dir, LATER_RUN, "static/style.css").name == "style.css"
    assert run_report_folder(runs_dir, LATER_RUN) is not None
    assert report_url("/churn-roles", LATER_RUN) == (
        "/churn-roles/runs/manual__2026-11-29T02%3A00%3A00%2B00%3A00/report/index.html"
    )


@pytest.mark.parametrize(
    "path",
    [
        "../manifests/failed.json",
        "static/../../manifests/failed.json",
        "/etc/passwd",
        "../../../secret.txt",
        "",
        "static",
    ],
)
def test_nothing_outside_the_report_folder_is_served(runs_dir, path):
    with pytest.raises(ReportNotFound):
        report_file(runs_dir, LATER_RUN, path)


@pytest.mark.parametrize(
    "path", ["../data_docs/index.html", "../manifests/failed.json", "/etc/passwd", "../../../secret.txt", ""]
)
def test_the_monitoring_report_is_served_from_its_folder_and_nothing_outside_it(runs_dir, path):
    assert report_file(runs_dir, LATER_RUN, "report.html", MONITORING_REPORT).read_text() == (
        "<html>monitoring</html>"
    )
    with pytest.raises(ReportNotFound):
        report_file(runs_dir, LATER_RUN, path, MONITORING_REPORT)
    with pytest.raises(ReportNotFound, match="has no monitoring report"):
        report_file(runs_dir, EARLIER_RUN, "report.html", MONITORING_REPORT)


def test_a_link_out_of_the_report_folder_is_not_followed(runs_dir):
    folder = run_report_folder(runs_dir, LATER_RUN)
    os.symlink(runs_dir.parent / "secret.txt", folder / "escape.txt")
    with pytest.raises(ReportNotFound):
        report_file(runs_dir, LATER_RUN, "escape.txt")


def test_a_run_without_a_report_has_none(runs_dir):
    assert run_report_folder(runs_dir, EARLIER_RUN) is None
    with pytest.raises(ReportNotFound, match="has no data report"):
        report_file(runs_dir, EARLIER_RUN, "index.html")


def test_run_folders_on_object_storage_are_not_served_from_disk(settings):
    assert local_runs_dir(settings) == settings.state_dir / "runs"
    assert local_runs_dir(settings.overridden(runs_base="s3://aws_default@bucket/runs")) is None
    assert local_runs_dir(settings.overridden(runs_base="/data/runs")) == Path("/data/runs")


def test_an_empty_deployment_says_what_is_missing(settings):
    page = gather_roles_page(load_matrix(), [], settings, SCORE_DATE)
    assert (page.champion, page.monitoring, page.alerts, page.scores.score_date) == (None, None, None, None)
    assert not Path(settings.warehouse_url.removeprefix("sqlite:///")).exists()  # reading created none

    html = render_roles_page(page, LINKS)
    assert "No champion yet" in html
    assert "No monitoring yet" in html
    assert "No alerts" in html
    assert "No scores yet" in html
    for owner in set(EXPECTED_OWNERS.values()):
        assert owner in html


def test_monitoring_figures_and_alerts_are_shown_once_their_tables_exist(settings, warehouse):
    metrics = [*feature_metrics("tenure", 0.02), *feature_metrics("MonthlyCharges", 0.6), *PREDICTIONS]
    write_monitoring(warehouse, SCORE_DATE, metrics)
    raise_alert(settings, "validate", SCORE_DATE, START)

    page = gather_roles_page(load_matrix(), [], settings, SCORE_DATE)
    assert [feature.feature for feature in page.monitoring.features] == ["MonthlyCharges", "tenure"]
    assert page.monitoring_reports == frozenset()  # the run folder holds no report
    html = render_roles_page(page, LINKS)
    features = re.search(r'<table id="monitoring-features">.*?</table>', html).group(0)
    drifted = '<tr class="drifted"><td>MonthlyCharges <span class=flag>drifted</span></td>'
    assert f'{drifted}<td class="number">0.600</td>' in features
    assert '<tr class=""><td>tenure</td><td class="number">0.020</td>' in features
    assert features.index("MonthlyCharges") < features.index("tenure")
    predictions = re.search(r'<table id="monitoring-predictions">.*?</table>', html).group(0)
    assert "prediction PSI <span class=flag>drifted</span>" in predictions and "threshold 0.1" in predictions
    assert "risk band high" in predictions and "20.0%" in predictions and "0.810" in predictions
    assert "1 of 2</strong> features drifted (PSI above 0.25); the predictions drifted" in html
    assert "monitoring report" not in html
    alerts = re.search(r'<table id="alerts">.*?</table>', html).group(0)
    assert "validate" in alerts and "data_engineer" in alerts and "devops_engineer, product_manager" in alerts
    assert "No monitoring yet" not in html and "No alerts" not in html


def test_the_latest_monitoring_links_its_runs_report_when_the_run_folder_has_one(settings, warehouse):
    write_monitoring(warehouse, SCORE_DATE, feature_metrics("tenure", 0.02))
    report = settings.run_dir(SCORE_DATE.isoformat(), LATER_RUN) / "monitoring" / "report.html"
    report.parent.mkdir(parents=True)
    report.write_text("<html>monitoring</html>")

    page = gather_roles_page(load_matrix(), [record("monitor", LATER_RUN, "success")], settings, SCORE_DATE)
    assert page.monitoring_reports == {LATER_RUN}
    html = render_roles_page(page, LINKS)
    address = report_url("/churn-roles", LATER_RUN, MONITORING_REPORT)
    assert address == "/churn-roles/runs/manual__2026-11-29T02%3A00%3A00%2B00%3A00/monitoring/report.html"
    assert html.count(f'href="{address}"') == 2  # in the monitoring section and on the monitor phase's row
    served = report_file(local_runs_dir(settings), LATER_RUN, "report.html", MONITORING_REPORT)
    assert served.read_text() == "<html>monitoring</html>"


def test_the_page_shows_a_failed_phase_its_report_and_the_champion_and_loads_nothing_from_elsewhere(settings):
    records = [record("ingest", LATER_RUN, "success"), record("validate", LATER_RUN, "failed")]
    page = gather_roles_page(load_matrix(), records, settings, SCORE_DATE)
    champion = ChampionModel(
        "churn-classifier", "3", {"test_roc_auc": 0.84123}, "# Model card\n<b>not markup</b>", "abc123", "7"
    )
    scores = ScoresOfDay(SCORE_DATE, WarehouseState(10, ["3"], 0.31, {"low": 6, "high": 4}))
    shown = replace(page, champion=champion, scores=scores, reports=frozenset({LATER_RUN}))
    html = render_roles_page(shown, LINKS)

    validate_row = re.search(r"<tr><td>Data Validation</td>.*?</tr>", html).group(0)
    assert 'class="state state-failed"' in validate_row
    assert f'href="{report_url("/churn-roles", LATER_RUN)}"' in validate_row
    assert "0.8412" in html
    assert "&lt;b&gt;not markup&lt;/b&gt;" in html
    assert "http://127.0.0.1:5000/#/models/churn-classifier/versions/3?workflowType=machine_learning" in html
    assert "http://127.0.0.1:5000/#/experiments/7/runs/abc123?workflowType=machine_learning" in html
    assert "2026-11-29" in html and "60.0%" in html
    # Nothing is loaded: no script, no style sheet, no image, no font from anywhere.
    assert not re.search(r"<(script|link|img|iframe)\b|@import|url\(", html)
    assert {match for match in re.findall(r'href="(https?://[^/"]+)', html)} == {"http://127.0.0.1:5000"}
