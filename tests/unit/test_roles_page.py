"""The roles page's data and HTML: each phase's latest run and owner, the warehouse's scores,
monitoring figures and alerts (absent tables included), no champion, and a data report served
only from inside its folder."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from churn.raci import load_matrix
from churn.roles_page import (
    ChampionModel,
    PageLinks,
    ReportNotFound,
    ScoresOfDay,
    TableExcerpt,
    TaskRecord,
    gather_roles_page,
    latest_phase_runs,
    local_runs_dir,
    phase_state,
    recent_rows,
    render_excerpt,
    render_roles_page,
    report_file,
    report_url,
    run_report_folder,
    scores_of_day,
)
from churn.warehouse import WarehouseState, replace_scores, scores_table, warehouse_engine
from tests.conftest import EXPECTED_OWNERS, SCORE_DATE, score_rows

EARLIER_RUN = "scheduled__2026-11-28T02:00:00+00:00"
LATER_RUN = "manual__2026-11-29T02:00:00+00:00"
LINKS = PageLinks(page_prefix="/churn-roles", mlflow_ui="http://127.0.0.1:5000")
START = datetime(2026, 11, 29, 2, tzinfo=UTC)


def record(task_id: str, run_id: str, state: str | None, seconds: float = 10, offset: float = 0) -> TaskRecord:
    run_after = START if run_id == LATER_RUN else START - timedelta(days=1)
    started = run_after + timedelta(seconds=offset)
    return TaskRecord(task_id, run_id, run_after, state, started, started + timedelta(seconds=seconds))


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
    # Phases with no task yet are listed, with their owner and no run.
    no_task = [run for run in latest_phase_runs(load_matrix(), records) if run.task_id is None]
    assert no_task and all(run.run_id is None and run.owner for run in no_task)


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
    assert recent_rows(warehouse, settings.config.monitoring.table) is None
    assert recent_rows(warehouse, settings.config.alerts.table) is None


def test_a_tables_newest_rows_come_first_and_latest_only_keeps_the_latest_date(warehouse):
    monitoring = "churn_monitoring"
    metadata = sa.MetaData()
    table = sa.Table(
        monitoring,
        metadata,
        sa.Column("score_date", sa.Date),
        sa.Column("metric", sa.String(32)),
        sa.Column("value", sa.Float),
    )
    metadata.create_all(warehouse)
    with warehouse.begin() as connection:
        connection.execute(
            sa.insert(table),
            [
                {"score_date": date(2026, 11, 28), "metric": "rows", "value": 100.0},
                {"score_date": date(2026, 11, 29), "metric": "rows", "value": 120.0},
                {"score_date": date(2026, 11, 29), "metric": "prediction_psi", "value": 0.02},
            ],
        )

    everything = recent_rows(warehouse, monitoring)
    assert everything.columns == ["score_date", "metric", "value"]
    assert [row[0] for row in everything.rows] == [date(2026, 11, 29), date(2026, 11, 29), date(2026, 11, 28)]
    latest = recent_rows(warehouse, monitoring, latest_only=True)
    assert sorted(row[1] for row in latest.rows) == ["prediction_psi", "rows"]


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


def test_a_tables_rows_read_plainly_whatever_its_columns():
    excerpt = TableExcerpt(
        "churn_alerts",
        ["score_date", "metric", "value", "map_index", "error"],
        [
            (SCORE_DATE, "prediction_psi", 0.0283746, None, "x" * 200),
            (SCORE_DATE, "<rows>", 120.0, None, "short"),
        ],
    )
    html = render_excerpt(excerpt, "absent", "empty", "alerts")
    head = re.search(r"<thead>(.*?)</thead>", html).group(1)
    assert "score_date" not in head and "map_index" not in head  # the same on every row; empty
    assert "2 rows of <code>churn_alerts</code>, newest first; on every row: score_date <strong>2026-11-29" in html
    assert "<td>0.02837</td>" in html and "<td>120</td>" in html
    assert "&lt;rows&gt;" in html
    assert f'title="{"x" * 200}"' in html and "x" * 200 + "<" not in html
    assert render_excerpt(None, "No alerts: none.", "empty", "alerts") == '<p class="empty">No alerts: none.</p>'
    assert "No alerts yet" in render_excerpt(
        TableExcerpt("churn_alerts", ["a"], []), "absent", "No alerts yet", "x"
    )


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    """A run folder with a two-file report, and a secret next to the report."""
    run = tmp_path / "runs" / "score_date=2026-11-29" / "run_id=manual__2026-11-29T02_00_00_00_00"
    (run / "data_docs" / "static").mkdir(parents=True)
    (run / "data_docs" / "index.html").write_text("<html>report</html>")
    (run / "data_docs" / "static" / "style.css").write_text("body {}")
    (run / "manifests").mkdir()
    (run / "manifests" / "failed.json").write_text("{}")
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
    metadata = sa.MetaData()
    for name, column in ((settings.config.monitoring.table, "metric"), (settings.config.alerts.table, "task_id")):
        sa.Table(name, metadata, sa.Column("score_date", sa.Date), sa.Column(column, sa.String(32)))
    metadata.create_all(warehouse)
    with warehouse.begin() as connection:
        connection.execute(
            metadata.tables[settings.config.monitoring.table].insert(), [{"metric": "prediction_psi"}]
        )
        connection.execute(metadata.tables[settings.config.alerts.table].insert(), [{"task_id": "validate"}])

    page = gather_roles_page(load_matrix(), [], settings, SCORE_DATE)
    assert page.monitoring.rows == [(None, "prediction_psi")]
    assert page.alerts.rows == [(None, "validate")]
    html = render_roles_page(page, LINKS)
    assert re.search(r'<table id="monitoring">.*prediction_psi', html)
    assert re.search(r'<table id="alerts">.*validate', html)
    assert "No monitoring yet" not in html and "No alerts" not in html


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
