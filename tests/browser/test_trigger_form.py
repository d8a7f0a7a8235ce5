"""The trigger form in Airflow's own UI, used as a person would: a date that does not exist and
a misspelt parameter are refused in words; a valid trigger creates a run.

One real Airflow API server (UI and REST API) serves the module, on a free loopback port with
a throwaway AIRFLOW_HOME, a SQLite metadata database and the DAG serialized into it once; no
scheduler runs, so a triggered run stays queued. The browser signs in as ``admin`` on Airflow's
login page, with the password the test writes for the simple auth manager.

Airflow refuses a date at trigger time, from the parameter's JSON schema, and shows why above
the form. It cannot refuse an unknown parameter name (it accepts any extra key of a run's
configuration), so ``ingest`` does, first thing: the test reads the run the form created and
hands its parameters to ingest's reader, which must refuse them by name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from playwright.sync_api import expect

from churn.run_parameters import RunParameterError, read_run_parameters
from tests.browser.conftest import ADMIN_PASSWORD, api_server_environment, sign_in
from tests.e2e.airflow_stack import BIN, connect, log_tails, start, stop

SCREENSHOTS = Path("/tmp")


@dataclass
class Airflow:
    base_url: str
    api: httpx.Client
    logs: list[Path]

    def runs(self) -> list[dict]:
        answer = self.api.get("/api/v2/dags/churn_pipeline/dagRuns", params={"limit": 100})
        answer.raise_for_status()
        return answer.json()["dag_runs"]


@pytest.fixture(scope="module")
def airflow(tmp_path_factory) -> Iterator[Airflow]:
    root = tmp_path_factory.mktemp("trigger_form")
    env, base_url = api_server_environment(root)
    logs = [root / "db-migrate.log", root / "reserialize.log", root / "api-server.log"]
    for command, log in ((["db", "migrate"], logs[0]), (["dags", "reserialize"], logs[1])):
        assert start([str(BIN / "airflow"), *command], env, log).wait(timeout=300) == 0, log_tails([log])
    process = start([str(BIN / "airflow"), "api-server"], env, logs[2])
    try:
        api = connect(base_url, ADMIN_PASSWORD, [process], logs)
        yield Airflow(base_url, api, logs)
        api.close()
    finally:
        stop(process)


def open_trigger_form(page, airflow: Airflow):
    """Sign in on Airflow's login page, open the DAG's page and its Trigger dialog."""
    sign_in(page, f"{airflow.base_url}/dags/churn_pipeline")
    page.wait_for_url(re.compile(r".*/dags/churn_pipeline$"))
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.locator("[role=dialog][data-scope=dialog]")
    dialog.get_by_text("Run Parameters").wait_for()
    return dialog


def test_a_date_that_does_not_exist_is_refused_in_the_form(airflow: Airflow, offline_page):
    page = offline_page.page
    dialog = open_trigger_form(page, airflow)
    score_date = dialog.locator("#element_score_date")
    # A text field showing what was typed, not the browser's date picker, which would report
    # 2026-02-30 as empty and so trigger a run for today; its help says the form it expects.
    assert score_date.get_attribute("type") in {None, "text"}
    assert "(YYYY-MM-DD)" in dialog.get_by_text("The date the scores are for").inner_text()
    runs_before = airflow.runs()

    score_date.fill("2026-02-30")
    dialog.get_by_role("button", name="Trigger").click()

    refusal = dialog.get_by_text("Invalid input for param score_date")
    refusal.wait_for()
    assert "'2026-02-30' is not a 'date'" in refusal.inner_text()
    refusal.scroll_into_view_if_needed()
    page.screenshot(path=SCREENSHOTS / "trigger_form_bad_date.png")
    assert score_date.input_value() == "2026-02-30"  # kept, for the user to correct
    assert airflow.runs() == runs_before, "a run was created for a date that does not exist"


def test_a_misspelt_parameter_is_refused_by_name(airflow: Airflow, offline_page):
    page = offline_page.page
    dialog = open_trigger_form(page, airflow)
    dialog.get_by_role("button", name="Advanced Options").click()
    # Misspell the key in the configuration JSON as a typing user would: go to the third line,
    # to the end of "scoring_source, and delete its last letter.
    # Keys typed before the editor has focus are lost, and Monaco redraws its lines on the next
    # animation frame, so wait for both rather than read the lines at once.
    editor_lines = dialog.locator(".monaco-editor .view-lines")
    editor_lines.click()
    expect(dialog.locator(".monaco-editor")).to_have_class(re.compile(r"\bfocused\b"))
    page.keyboard.press("Control+Home")
    for key in ["ArrowDown", "ArrowDown", "Home", *["ArrowRight"] * len('"scoring_source'), "Backspace"]:
        page.keyboard.press(key)
    expect(editor_lines).to_contain_text('"scoring_sourc":')

    dialog.get_by_role("button", name="Trigger").click()
    page.wait_for_url(re.compile(r".*/dags/churn_pipeline/runs/.+"))
    page.get_by_text("Dag Run Triggered").wait_for()
    page.screenshot(path=SCREENSHOTS / "trigger_form_misspelt_parameter.png")

    # Airflow accepts any extra key, so the run exists; ingest, its first task, reads the
    # parameters as Airflow hands them to it (the DAG's defaults, then the run's conf) and refuses.
    run_id = unquote(page.url.rsplit("/runs/", 1)[1])
    run = airflow.api.get(f"/api/v2/dags/churn_pipeline/dagRuns/{run_id}").json()
    assert "scoring_sourc" in run["conf"] and run["state"] == "queued"
    dag_params = airflow.api.get("/api/v2/dags/churn_pipeline/details").json()["params"]
    params = {name: param["value"] for name, param in dag_params.items()} | run["conf"]
    with pytest.raises(RunParameterError) as refused:
        read_run_parameters(params)
    assert str(refused.value) == (
        "run parameters: unknown key 'scoring_sourc'. The known parameters are training_source, "
        "scoring_source, contract, score_date, allow_any_score_date, allow_shrink; did you mean "
        "'scoring_source' for 'scoring_sourc'?"
    )


def test_a_valid_date_triggers_a_run(airflow: Airflow, offline_page):
    page = offline_page.page
    dialog = open_trigger_form(page, airflow)
    dialog.locator("#element_score_date").fill("2026-11-29")
    dialog.get_by_role("button", name="Trigger").click()
    page.wait_for_url(re.compile(r".*/dags/churn_pipeline/runs/.+"))

    run_id = unquote(page.url.rsplit("/runs/", 1)[1])
    run = airflow.api.get(f"/api/v2/dags/churn_pipeline/dagRuns/{run_id}").json()
    assert run["state"] == "queued" and run["conf"]["score_date"] == "2026-11-29"
    assert read_run_parameters(run["conf"]).score_date.isoformat() == "2026-11-29"
