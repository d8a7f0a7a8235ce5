"""The roles page in Airflow's own UI, used as a person would, against a real Airflow API server.

The module's Airflow (throwaway home, SQLite metadata, warehouse and MLflow store) runs the real
DAGs with ``airflow dags test``: a good run for 2026-11-28 on a drifted scoring population (a
champion, scores, and monitoring figures with drifted features), then a run for 2026-11-29 whose
training snapshot breaks the contract, so ``validate`` fails and alerts its roles, then the
scores-due check for 2026-11-29, which finds no scores and raises a deadline alert. The API
server started by the test serves the UI, the REST API and the plugin. The browser signs in on
Airflow's login page, opens the roles page from the UI's navigation and directly, sees the phases
with their owners and the failed one, the monitoring figures and the alerts, and opens the
failed run's data report and the good run's monitoring report through the page with every
request beyond loopback cut off.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa
from PIL import Image

from churn.alerts import addressees, phase_for_task
from churn.links import MLFLOW_VIEW, mlflow_ui_url
from churn.raci import load_matrix
from tests.browser.conftest import ADMIN_PASSWORD, api_server_environment, sign_in
from tests.browser.test_data_docs import assert_styled_and_complete
from tests.conftest import EXPECTED_OWNERS, PROJECT_DIR
from tests.e2e.airflow_stack import BIN, connect, log_tails, start, stop
from tests.e2e.deployment import e2e_pipeline_config

PAGE = "/churn-roles/"
GOOD_DATE, BAD_DATE = "2026-11-28", "2026-11-29"
# The features churn-generate's --drift moves (PSI well above 0.25) and one it leaves alone.
DRIFTED_FEATURE, STEADY_FEATURE = "MonthlyCharges", "gender"
# The README's picture. A test run writes it there only when asked (CHURN_UPDATE_SCREENSHOTS=1),
# so running the tests never changes a committed file.
README_SCREENSHOT = PROJECT_DIR / "docs" / "roles_page.png"
SCREENSHOT_MAX_BYTES = 300_000
SCREENSHOT_COLOURS = 64


@dataclass
class Airflow:
    base_url: str
    api: httpx.Client
    logs: list[Path]
    good_run: str
    failed_run: str
    scores_due_run: str
    # The MLflow UI the page links to, as the API server's environment sets it.
    mlflow_ui: str
    warehouse: sa.Engine


def run_dag(env: dict[str, str], score_date: str, sources: Path, log: Path, ending: str) -> str:
    """Run the DAG once with ``airflow dags test``; return the new run's id once Airflow marked it
    ``ending`` (successful or failed): every task has ended by then and its state is recorded.

    The exit status is not the test: Airflow 3.3.2's ``dags test`` raises after marking a run
    successful when the DAG has a deadline alert (``DagRun.update_state`` looks the alerts up by
    the DAG file's objects instead of their ids)."""
    conf = {
        "score_date": score_date,
        "training_source": str(sources / "training.csv"),
        "scoring_source": str(sources / "scoring.csv"),
    }
    command = [str(BIN / "airflow"), "dags", "test", "churn_pipeline", score_date, "--conf", json.dumps(conf)]
    start(command, env, log).wait(timeout=900)
    marked = re.findall(
        r"Marking run <DagRun churn_pipeline @ .*?: (\w+__\S+), state:\w+.*?> (\w+)", log.read_text()
    )
    assert marked and marked[-1][1] == ending, log_tails([log])
    return marked[-1][0]


def check_scores_due(env: dict[str, str], score_date: str, log: Path) -> str:
    """Run ``churn_scores_due`` once for ``score_date``'s deadline; return its run id."""
    command = [str(BIN / "airflow"), "dags", "test", "churn_scores_due", f"{score_date}T06:00:00+00:00"]
    assert start(command, env, log).wait(timeout=300) == 0, log_tails([log])
    marked = re.findall(
        r"Marking run <DagRun churn_scores_due @ .*?: (\w+__\S+), state:\w+.*?> (\w+)", log.read_text()
    )
    assert marked and marked[-1][1] == "successful", log_tails([log])
    return marked[-1][0]


def generate(env: dict[str, str], folder: Path, *defect: str) -> Path:
    command = [
        str(BIN / "churn-generate"),
        "--out",
        str(folder),
        "--training-rows",
        "1000",
        "--scoring-rows",
        "300",
    ]
    assert start([*command, *defect], env, folder.parent / f"{folder.name}.log").wait(timeout=300) == 0
    return folder


@pytest.fixture(scope="module")
def airflow(tmp_path_factory) -> Iterator[Airflow]:
    root = tmp_path_factory.mktemp("roles_page")
    env, base_url = api_server_environment(root)
    env["CHURN_PIPELINE_CONFIG"] = str(e2e_pipeline_config(root / "pipeline.yaml"))
    logs = [
        root / name
        for name in ("db-migrate.log", "api-server.log", "good-run.log", "failed-run.log", "scores-due.log")
    ]
    assert start([str(BIN / "airflow"), "db", "migrate"], env, logs[0]).wait(timeout=300) == 0, log_tails(logs)
    good = generate(env, root / "good", "--drift")
    bad = generate(env, root / "bad", "--defect", "out_of_range")
    process = start([str(BIN / "airflow"), "api-server"], env, logs[1])
    try:
        good_run = run_dag(env, GOOD_DATE, good, logs[2], "successful")
        failed_run = run_dag(env, BAD_DATE, bad, logs[3], "failed")
        scores_due_run = check_scores_due(env, BAD_DATE, logs[4])
        api = connect(base_url, ADMIN_PASSWORD, [process], logs)
        warehouse = sa.create_engine(f"sqlite:///{root / 'warehouse.db'}")
        yield Airflow(base_url, api, logs, good_run, failed_run, scores_due_run, mlflow_ui_url(env), warehouse)
        warehouse.dispose()
        api.close()
    finally:
        stop(process)


def table_rows(page, selector: str) -> list[list[str]]:
    """The cells of each body row of the table ``selector``."""
    rows = page.locator(f"{selector} tbody tr")
    return [rows.nth(index).locator("td").all_inner_texts() for index in range(rows.count())]


def phase_rows(page) -> dict[str, list[str]]:
    """The phases table: each row's cells by its phase."""
    return {row[0]: row for row in table_rows(page, "#phases")}


def test_anonymous_visitors_are_sent_to_the_login_page(airflow: Airflow):
    report = f"/churn-roles/runs/{quote(airflow.failed_run, safe='')}/report/index.html"
    for path in (PAGE, report):
        answer = httpx.get(f"{airflow.base_url}{path}", follow_redirects=False)
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"].startswith("/auth/login?next=")
        assert "<table" not in answer.text
    forged = httpx.get(f"{airflow.base_url}{PAGE}", headers={"Authorization": "Bearer not-a-token"})
    assert forged.status_code != 200 and "<table" not in forged.text
    assert airflow.api.get(PAGE).status_code == 200  # the same request, signed in


def test_the_page_shows_the_seven_phases_their_owners_and_the_failed_one(
    airflow: Airflow, offline_page, tmp_path: Path
):
    page = offline_page.page
    page.set_viewport_size({"width": 1280, "height": 900})
    sign_in(page, f"{airflow.base_url}{PAGE}")
    page.wait_for_url(f"{airflow.base_url}{PAGE}")
    page.locator("#phases").wait_for()

    by_phase = phase_rows(page)
    rows = {row[1]: row for row in by_phase.values()}
    for task_id, owner in EXPECTED_OWNERS.items():
        assert rows[task_id][2] == owner, rows[task_id]
        assert rows[task_id][5] == airflow.failed_run
    assert rows["ingest"][3] == "success"
    assert rows["validate"][3] == "failed"
    assert rows["train"][3] == "upstream failed"
    assert rows["validate"][6] == "data report"
    # Incident Response: the scores-due check's run; Retraining: no drift-started run under `dags test`.
    incident = by_phase["Incident Response"]
    assert incident[1:4] == ["check_scores_written in churn_scores_due", "mlops_engineer", "success"], incident
    assert incident[5] == airflow.scores_due_run and incident[4].endswith(" s")
    assert by_phase["Retraining"][1:4] == ["drift-started run of churn_pipeline", "ml_engineer", "not run"]
    # The matrix in full, the champion of the good run and its scores.
    assert page.locator("#raci tbody tr").count() == len(load_matrix().phases)
    assert "churn-classifier version 1" in page.inner_text("main")
    assert "test_roc_auc" in page.inner_text("#champion-metrics")
    assert page.inner_text("#model-card").startswith("# Model card: churn-classifier")
    assert GOOD_DATE in page.inner_text("main")
    assert page.locator("#risk-bands tbody tr").count() >= 2
    # The good run's monitoring: every feature once, the drifted ones first and highlighted.
    features = {row[0].split()[0]: row for row in table_rows(page, "#monitoring-features")}
    stored = pd.read_sql("select feature from churn_monitoring where metric = 'feature_psi'", airflow.warehouse)
    assert len(features) == len(stored) and set(features) == set(stored["feature"])
    assert features[DRIFTED_FEATURE][0] == f"{DRIFTED_FEATURE} drifted"
    assert float(features[DRIFTED_FEATURE][1]) > 0.25
    assert float(features[STEADY_FEATURE][1]) < 0.25
    first = page.locator("#monitoring-features tbody tr").first
    assert first.get_attribute("class") == "drifted" and "drifted" in first.inner_text()
    steady = page.locator("#monitoring-features tbody tr", has_text=STEADY_FEATURE)
    assert steady.get_attribute("class") != "drifted"
    assert "prediction PSI" in page.inner_text("#monitoring-predictions")
    # Alerts, newest raised first: the scores-due check's deadline alert, then the failed run's
    # validate alert, addressed to the roles the matrix names.
    alerts = table_rows(page, "#alerts")
    assert [row[1] for row in alerts] == ["deadline missed", "task failure of validate (try 1)"]
    to, informed = addressees(phase_for_task("validate"))
    assert alerts[1][2:5] == ["Data Validation", ", ".join(to), ", ".join(informed)]
    assert alerts[1][5].startswith(airflow.failed_run)
    # Readable at 1280 pixels: nothing wider than the window.
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    assert offline_page.blocked == [] and offline_page.console_errors == []

    # The README's picture: the whole page, in a palette of SCREENSHOT_COLOURS (flat colours and
    # text stay sharp; the PNG is a third of the size).
    screenshot = README_SCREENSHOT if os.environ.get("CHURN_UPDATE_SCREENSHOTS") else tmp_path / "roles_page.png"
    picture = Image.open(io.BytesIO(page.screenshot(full_page=True)))
    picture.convert("RGB").quantize(colors=SCREENSHOT_COLOURS).save(screenshot, optimize=True)
    assert screenshot.stat().st_size <= SCREENSHOT_MAX_BYTES


def test_the_page_is_in_the_uis_navigation(airflow: Airflow, offline_page):
    page = offline_page.page
    sign_in(page, f"{airflow.base_url}/")
    page.get_by_role("link", name="Roles and runs").or_(
        page.get_by_role("button", name="Roles and runs")
    ).first.click()
    page.wait_for_url(re.compile(r".*/plugin/churn-roles$"))
    frame = page.frame_locator("iframe")
    frame.locator("#phases").wait_for()
    assert "data_engineer" in frame.locator("#phases").inner_text()
    assert offline_page.blocked == []


def test_the_failed_runs_data_report_opens_offline_through_the_page(airflow: Airflow, offline_page):
    page = offline_page.page
    sign_in(page, f"{airflow.base_url}{PAGE}")
    page.wait_for_url(f"{airflow.base_url}{PAGE}")
    page.locator("#phases").get_by_role("link", name="data report").click()
    page.wait_for_url(re.compile(r".*/report/index\.html$"))
    assert quote(airflow.failed_run, safe="") in page.url

    text = assert_styled_and_complete(offline_page, page.url)
    assert page.locator("table.table tbody tr").count() >= 2
    assert airflow.failed_run in text


def test_the_good_runs_monitoring_report_opens_offline_through_the_page(airflow: Airflow, offline_page):
    page = offline_page.page
    sign_in(page, f"{airflow.base_url}{PAGE}")
    page.wait_for_url(f"{airflow.base_url}{PAGE}")
    page.locator("#monitoring-features").wait_for()
    page.get_by_role("link", name="monitoring report").first.click()
    page.wait_for_url(re.compile(r".*/monitoring/report\.html$"))
    assert quote(airflow.good_run, safe="") in page.url

    assert page.locator("h1").inner_text() == f"Churn monitoring for {GOOD_DATE}"
    drifted = page.locator("tr.drifted", has_text=DRIFTED_FEATURE).first.locator("td").first
    assert drifted.evaluate("cell => getComputedStyle(cell).backgroundColor") == "rgb(253, 226, 225)"
    assert airflow.good_run in page.inner_text("body")
    assert offline_page.blocked == [] and offline_page.console_errors == []

    run = quote(airflow.good_run, safe="")
    for escape in ("%2E%2E/data_docs/index.html", "..%2Fmanifests%2Ffailed.json", "%2Fetc%2Fpasswd"):
        answer = airflow.api.get(f"/churn-roles/runs/{run}/monitoring/{escape}")
        assert answer.status_code == 404, (escape, answer.text)
    failed = quote(airflow.failed_run, safe="")  # validate failed: never monitored
    assert airflow.api.get(f"/churn-roles/runs/{failed}/monitoring/report.html").status_code == 404


def test_nothing_outside_the_report_folder_is_served(airflow: Airflow):
    run = quote(airflow.failed_run, safe="")
    assert airflow.api.get(f"/churn-roles/runs/{run}/report/index.html").status_code == 200
    for escape in ("%2E%2E/manifests/failed.json", "..%2Fmanifests%2Ffailed.json", "%2Fetc%2Fpasswd"):
        answer = airflow.api.get(f"/churn-roles/runs/{run}/report/{escape}")
        assert answer.status_code == 404, (escape, answer.text)
    unknown_run = quote(f"{airflow.failed_run}x", safe="")
    assert airflow.api.get(f"/churn-roles/runs/{unknown_run}/report/index.html").status_code == 404


def links(airflow: Airflow, run_id: str, task_id: str) -> dict[str, str | None]:
    answer = airflow.api.get(
        f"/api/v2/dags/churn_pipeline/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/links"
    )
    answer.raise_for_status()
    return answer.json()["extra_links"]


def test_tasks_link_to_their_report_mlflow_run_model_version_and_the_page(airflow: Airflow):
    failed_validation = links(airflow, airflow.failed_run, "validate")
    assert failed_validation["Data report"].startswith("/churn-roles/runs/")
    assert airflow.api.get(failed_validation["Data report"]).status_code == 200
    for task_id in ("train", "evaluate", "package"):
        found = links(airflow, airflow.good_run, task_id)
        run_page = re.escape(airflow.mlflow_ui) + r"/#/experiments/\d+/runs/\w+" + re.escape(MLFLOW_VIEW)
        assert re.fullmatch(run_page, found["MLflow run"]), found
        assert (
            found["MLflow model version"]
            == f"{airflow.mlflow_ui}/#/models/churn-classifier/versions/1{MLFLOW_VIEW}"
        )
    assert links(airflow, airflow.good_run, "score.publish")["Roles and runs"] == PAGE
    # Each link only where it belongs; a failed train has no MLflow run to open.
    assert set(links(airflow, airflow.good_run, "ingest").values()) == {None}
    assert links(airflow, airflow.failed_run, "train")["MLflow run"] is None
