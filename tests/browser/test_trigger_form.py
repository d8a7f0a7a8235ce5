"""The trigger form in Airflow's own UI, used as a person would: a date that does not exist and
a misspelt parameter are refused in words; a valid trigger creates a run that gets past its
parameters.

One real Airflow (``airflow standalone``: scheduler, LocalExecutor, DAG processor, API server)
serves the module, on a free loopback port with a throwaway AIRFLOW_HOME and a scratch
PostgreSQL metadata database. The browser signs in as ``admin`` on Airflow's login page, with
the password the test writes for the simple auth manager.

Airflow refuses a date at trigger time, from the parameter's JSON schema, and shows why above
the form. It cannot refuse an unknown parameter name (it accepts any extra key of a run's
configuration), so ``ingest`` does, first thing: the scheduler runs the run the form created,
and the browser reads the refusal in ingest's log. The module has no snapshots, so a run whose
parameters pass (the valid trigger's, and the 02:00 run that unpausing the DAG starts) stops at
ingest at once too, for want of its files: no run trains.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from playwright.sync_api import expect

from churn.run_parameters import read_run_parameters
from tests.browser.conftest import ADMIN_PASSWORD, api_server_environment, sign_in
from tests.e2e.airflow_stack import Stack, days_before_today, running_standalone, scratch_databases

SCREENSHOTS = Path("/tmp")
# Runs here stop at ingest, whose first try takes seconds; the scheduler may run the 02:00 run first.
RUN_TIMEOUT_SECONDS = 300


@pytest.fixture(scope="module")
def airflow(postgres_url: str, tmp_path_factory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("trigger_form")
    with scratch_databases(postgres_url, f"airflow_{uuid.uuid4().hex[:8]}") as (metadata_url,):
        env, _ = api_server_environment(root, metadata_url)
        env["AIRFLOW__CORE__EXECUTOR"] = "LocalExecutor"
        env["AIRFLOW__CORE__PARALLELISM"] = "2"
        with running_standalone(env, root, ADMIN_PASSWORD) as (api, logs):
            # Unpaused, so that the scheduler runs what the form triggers.
            assert api.patch("/api/v2/dags/churn_pipeline", json={"is_paused": False}).status_code == 200
            warehouse_url = env["AIRFLOW_CONN_CHURN_WAREHOUSE"]
            yield Stack(api=api, warehouse_url=warehouse_url, sources={}, root=root, logs=logs)


def base_url(airflow: Stack) -> str:
    return str(airflow.api.base_url).rstrip("/")


def manual_runs(airflow: Stack) -> list[dict]:
    """The runs triggered by hand (the scheduler adds the 02:00 run on its own)."""
    answer = airflow.api.get("/api/v2/dags/churn_pipeline/dagRuns", params={"limit": 100})
    answer.raise_for_status()
    return [run for run in answer.json()["dag_runs"] if run["run_type"] == "manual"]


def triggered_run_id(page) -> str:
    """The run the form created: Airflow opens its page after the trigger."""
    page.wait_for_url(re.compile(r".*/dags/churn_pipeline/runs/.+"))
    return unquote(page.url.rsplit("/runs/", 1)[1])


def open_ingest_log(page, airflow: Stack, run_id: str):
    """The log of the run's ingest task, as the run's task page shows it."""
    page.goto(f"{base_url(airflow)}/dags/churn_pipeline/runs/{quote(run_id, safe='')}/tasks/ingest")
    return page.locator("body")


def open_trigger_form(page, airflow: Stack):
    """Sign in on Airflow's login page, open the DAG's page and its Trigger dialog."""
    sign_in(page, f"{base_url(airflow)}/dags/churn_pipeline")
    page.wait_for_url(re.compile(r".*/dags/churn_pipeline$"))
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.locator("[role=dialog][data-scope=dialog]")
    dialog.get_by_text("Run Parameters").wait_for()
    return dialog


def test_a_date_that_does_not_exist_is_refused_in_the_form(airflow: Stack, offline_page):
    page = offline_page.page
    dialog = open_trigger_form(page, airflow)
    score_date = dialog.locator("#element_score_date")
    # A text field showing what was typed, not the browser's date picker, which would report
    # 2026-02-30 as empty and so trigger a run for today; its help says the form it expects.
    assert score_date.get_attribute("type") in {None, "text"}
    assert "(YYYY-MM-DD)" in dialog.get_by_text("The date the scores are for").inner_text()
    runs_before = manual_runs(airflow)

    score_date.fill("2026-02-30")
    dialog.get_by_role("button", name="Trigger").click()

    refusal = dialog.get_by_text("Invalid input for param score_date")
    refusal.wait_for()
    assert "'2026-02-30' is not a 'date'" in refusal.inner_text()
    refusal.scroll_into_view_if_needed()
    page.screenshot(path=SCREENSHOTS / "trigger_form_bad_date.png")
    assert score_date.input_value() == "2026-02-30"  # kept, for the user to correct
    assert manual_runs(airflow) == runs_before, "a run was created for a date that does not exist"


def test_a_misspelt_parameter_is_refused_by_name(airflow: Stack, offline_page):
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
    run_id = triggered_run_id(page)
    assert "scoring_sourc" in airflow.api.get(f"/api/v2/dags/churn_pipeline/dagRuns/{run_id}").json()["conf"]

    # Airflow accepts any extra key, so the run exists and starts; ingest, its first task, reads
    # the parameters and refuses the run at once, without retries, in words its log shows.
    assert airflow.wait_for(run_id, RUN_TIMEOUT_SECONDS) == "failed", airflow.log_tails()
    ingest = next(ti for ti in airflow.task_instances(run_id) if ti["task_id"] == "ingest")
    assert (ingest["state"], ingest["try_number"]) == ("failed", 1)
    log = open_ingest_log(page, airflow, run_id)
    refusal = log.get_by_text("run parameters: unknown key 'scoring_sourc'").first
    refusal.wait_for()
    expect(refusal).to_contain_text(
        "The known parameters are training_source, scoring_source, contract, score_date, allow_any_score_date, "
        "allow_shrink; did you mean 'scoring_source' for 'scoring_sourc'?"
    )
    page.screenshot(path=SCREENSHOTS / "trigger_form_misspelt_parameter.png")


def test_a_valid_date_triggers_a_run_that_gets_past_its_parameters(airflow: Stack, offline_page):
    page = offline_page.page
    score_date = days_before_today(1).isoformat()
    dialog = open_trigger_form(page, airflow)
    dialog.locator("#element_score_date").fill(score_date)
    dialog.get_by_role("button", name="Trigger").click()
    run_id = triggered_run_id(page)

    run = airflow.api.get(f"/api/v2/dags/churn_pipeline/dagRuns/{run_id}").json()
    assert run["conf"]["score_date"] == score_date
    assert read_run_parameters(run["conf"]).score_date.isoformat() == score_date
    # Ingest accepts the parameters and goes for the snapshots, which this module does not have.
    assert airflow.wait_for(run_id, RUN_TIMEOUT_SECONDS) == "failed", airflow.log_tails()
    log = open_ingest_log(page, airflow, run_id)
    log.get_by_text("source file not found").first.wait_for()
    assert "run parameters:" not in log.inner_text()
