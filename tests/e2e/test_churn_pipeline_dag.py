"""End to end: the real DAG run through Airflow (``make demo``'s first run, then ``airflow dags
test``) on generated data.

A module-scoped deployment gets its own Airflow home, metadata database, MLflow store and
SQLite warehouse, so the assertions read exactly what a user's run would leave behind. Its
first run is `make demo` on a fresh clone's state (no snapshots, no metadata database), whose
every printed link the last test opens in a browser, served by `make airflow` and `make mlflow`.
"""

from __future__ import annotations

import json
import re
import subprocess
from contextlib import ExitStack
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from playwright.sync_api import expect
from sklearn.metrics import roc_auc_score

from churn.manifest import read_manifests
from churn.storage import read_parquet
from churn.tracking import champion_version, use_mlflow
from scripts.run_demo import PASSWORD_FILE, WIDTH

# The browser tier's fixtures, for the last test to open the demo's links offline.
from tests.browser.conftest import browser, offline_page, sign_in  # noqa: F401
from tests.browser.test_data_docs import assert_styled_and_complete
from tests.conftest import PROJECT_DIR, SCORE_DATE, free_port
from tests.deploy.test_local_ui_ports import make_env, running, wait_until_answers
from tests.e2e.deployment import BIN, Deployment, deploy, e2e_pipeline_config

pytestmark = pytest.mark.e2e

TRAINING_ROWS, SCORING_ROWS = 20_000, 5_000
BUSINESS_COLUMNS = ["score_date", "customer_id", "churn_probability", "risk_band", "model_name", "model_version"]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Deployment:
    root = tmp_path_factory.mktemp("e2e")
    config = e2e_pipeline_config(root / "pipeline.yaml")
    return deploy(root, TRAINING_ROWS, SCORING_ROWS, prepared=False, CHURN_PIPELINE_CONFIG=str(config))


@pytest.fixture(scope="module")
def make_settings(deployment: Deployment) -> dict[str, str]:
    """The environment `make` runs in: a developer's shell pointed at the deployment, with ports
    of its own for `make airflow` and `make mlflow` (the demo's links name them)."""
    env = make_env(Path(deployment.env["CHURN_HOME"]))
    env |= {name: deployment.env[name] for name in ("AIRFLOW_HOME", "CHURN_PIPELINE_CONFIG")}
    env |= {"AIRFLOW_PORT": str(free_port()), "MLFLOW_PORT": str(free_port())}
    return env


@pytest.fixture(scope="module")
def first_run(deployment: Deployment, make_settings: dict[str, str]) -> dict:
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(PROJECT_DIR), "demo", f"SCORE_DATE={SCORE_DATE}"],
        env=make_settings,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    run = deployment.latest_run()
    assert run["state"] == "success"
    assert set(deployment.task_states(run["run_id"]).values()) == {"success"}
    run_dir = deployment.settings.run_dir(SCORE_DATE.isoformat(), run["run_id"])
    return {
        "airflow": run,
        "run_dir": run_dir,
        "manifests": read_manifests(run_dir),
        "scores": deployment.scores(),
        "demo": result.stdout,
        "log": (run_dir / "airflow.log").read_text(),
    }


def test_every_scoring_customer_gets_one_score(deployment: Deployment, first_run):
    scores = first_run["scores"]
    scoring = pd.read_csv(deployment.settings.default_scoring_source, dtype="string")
    assert len(scores) == SCORING_ROWS
    assert set(scores["customer_id"]) == set(scoring["customerID"])
    assert scores["customer_id"].is_unique
    assert scores["churn_probability"].between(0.0, 1.0).all()
    assert set(scores["risk_band"]) == {"low", "medium", "high"}
    assert set(scores["score_date"]) == {SCORE_DATE}
    assert set(scores["run_id"]) == {first_run["airflow"]["run_id"]}


def test_task_logs_say_what_each_phase_did_without_library_chatter(first_run):
    """Each task's log ends with its account in words (run_phase logs it); none is buried
    under Great Expectations' import-time INFO lines."""
    log = first_run["log"]
    for account in (
        "ingest: landed the training snapshot",
        "validate: training snapshot (20,000 rows) passed",
        "feature: added",
        "chosen by CV ROC AUC",
        "evaluate: test ROC AUC",
        "package: registered churn-classifier version",
        "score.plan: 1 partition of 5,000 rows",
        "score.partition rows 0-5,000: staged 5,000 rows",
        f"score.publish: 5,000 rows for {SCORE_DATE} in churn_scores",
    ):
        assert account in log, account
    assert "Skipping registering function" not in log
    assert "Multiple declarations of metric" not in log


def test_champion_alias_names_the_version_that_scored(deployment: Deployment, first_run):
    use_mlflow(deployment.settings)
    champion = champion_version(deployment.settings)
    assert champion is not None
    assert set(first_run["scores"]["model_version"]) == {str(champion.version)}
    assert first_run["manifests"]["package"].promoted is True


def test_test_auc_is_within_two_points_of_the_best_achievable(deployment: Deployment, first_run):
    use_mlflow(deployment.settings)
    trained = first_run["manifests"]["train"]
    model_auc = mlflow.get_run(trained.mlflow_run_id).data.metrics["test_roc_auc"]
    test = read_parquet(trained.test_path)
    truth = pd.read_parquet(deployment.settings.sources_dir / "ground_truth.parquet").set_index("customerID")
    best_auc = roc_auc_score(test["Churn"] == "Yes", truth.loc[test["customerID"], "true_churn_probability"])
    assert model_auc >= best_auc - 0.02, (model_auc, best_auc)


def test_data_docs_and_model_card_are_published(deployment: Deployment, first_run):
    assert (first_run["run_dir"] / "data_docs" / "index.html").is_file()
    use_mlflow(deployment.settings)
    champion = champion_version(deployment.settings)
    assert "Model card" in champion.description
    assert deployment.settings.warehouse_url not in champion.description


def test_second_run_of_the_same_date_skips_training_and_leaves_exactly_the_same_rows(
    deployment: Deployment, first_run
):
    result = deployment.trigger(score_date=SCORE_DATE.isoformat())
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    run = deployment.latest_run()
    assert run["state"] == "success" and run["run_id"] != first_run["airflow"]["run_id"]
    # It cannot promote, so no challenger is trained, evaluated, put to approval or packaged; score still runs.
    states = deployment.task_states(run["run_id"])
    skipped = ("train", "evaluate", "approve", "package")
    assert {task: states[task] for task in skipped} == dict.fromkeys(skipped, "skipped")
    assert {state for task, state in states.items() if task not in skipped} == {"success"}
    # The reason, in words, in train's log (which the UI shows for the skipped task).
    version = str(first_run["scores"]["model_version"].iloc[0])
    reason = f"this run cannot promote ({SCORE_DATE} was scored before by version {version}"
    log = result.stdout + result.stderr
    assert f"train: skipped train, evaluate, package: {reason}" in log
    assert "Skipping task." in log and "chosen by CV ROC AUC" not in log
    second = deployment.scores()
    assert second["run_id"].nunique() == 1 and second["run_id"].iloc[0] == run["run_id"]
    assert set(second["model_version"]) == {version}
    pd.testing.assert_frame_equal(second[BUSINESS_COLUMNS], first_run["scores"][BUSINESS_COLUMNS])


def test_broken_source_stops_at_validate_and_keeps_the_scores(deployment: Deployment, first_run):
    training = pd.read_csv(deployment.settings.default_training_source, dtype="string", keep_default_na=False)
    training.loc[training.index[:3], "tenure"] = "twelve"
    broken = deployment.root / "broken_training.csv"
    training.to_csv(broken, index=False)
    before = deployment.scores()

    result = deployment.trigger(score_date=SCORE_DATE.isoformat(), training_source=str(broken))

    assert result.returncode != 0
    run = deployment.latest_run()
    states = deployment.task_states(run["run_id"])
    assert states["ingest"] == "success"
    assert states["validate"] == "failed"
    assert all(states[task] in {"upstream_failed", None} for task in ("feature", "train", "score.plan"))
    assert "'tenure'" in result.stdout + result.stderr and "twelve" in result.stdout + result.stderr
    run_dir = deployment.settings.run_dir(SCORE_DATE.isoformat(), run["run_id"])
    assert (run_dir / "data_docs" / "index.html").is_file()
    failure = read_manifests(run_dir)["failed"]
    assert failure.phase == "validate" and "twelve" in failure.error
    pd.testing.assert_frame_equal(deployment.scores(), before)


def test_the_demo_names_an_unreadable_file_without_a_stack_trace(deployment: Deployment, first_run):
    garbage = deployment.root / "customers_export.csv"
    garbage.write_bytes(bytes(range(256)) * 64)
    before = deployment.scores()

    result = subprocess.run(
        [
            str(BIN / "python"),
            str(PROJECT_DIR / "scripts" / "run_demo.py"),
            "--score-date",
            SCORE_DATE.isoformat(),
            "--conf",
            f"training_source={garbage}",
        ],
        env=deployment.env,
        capture_output=True,
        text=True,
        timeout=900,
    )

    assert result.returncode == 1
    summary = result.stdout[result.stdout.index("=== churn_pipeline run") :]
    assert "validate" in summary
    assert "customers_export.csv): cannot be read: not a text CSV" in summary
    assert "Traceback" not in summary
    pd.testing.assert_frame_equal(deployment.scores(), before)


def test_the_demo_summary_links_the_run_and_reads_the_warehouse_with_the_projects_python(
    deployment: Deployment, first_run
):
    before = deployment.scores()
    demo = [
        str(BIN / "python"),
        str(PROJECT_DIR / "scripts" / "run_demo.py"),
        "--score-date",
        SCORE_DATE.isoformat(),
    ]
    result = subprocess.run(demo, env=deployment.env, capture_output=True, text=True, timeout=900)

    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    progress, summary = result.stdout.split("=== churn_pipeline run")
    # Progress, not logs: one line per task (its owner, seconds and what it did); the log goes to a file.
    # The date was scored before: the demo's run cannot promote, and skips what it could not use.
    assert "[info" not in progress and "[DAG TEST]" not in progress
    for task, owner, did in (
        ("ingest", "data_engineer", "landed the training snapshot"),
        ("validate", "data_engineer", "passed 48 expectations"),
        ("train", "data_scientist", "skipped train, evaluate, package: this run cannot promote"),
        ("score.publish", "mlops_engineer", f"5,000 rows for {SCORE_DATE} in churn_scores"),
    ):
        assert re.search(rf"^  {re.escape(task)} +{owner} +[0-9.]+ s  .*{did}", progress, re.MULTILINE), task
    log = re.search(r"Airflow log +file://(\S+)", summary)
    assert log and "[DAG TEST] end task task_id=score.publish" in Path(log[1]).read_text()
    assert re.search(
        rf"churn_scores holds 5,000 rows for {SCORE_DATE}: low [0-9,]+, medium [0-9,]+, high [0-9,]+ \(model",
        summary,
    ), summary
    for link in (
        r"Airflow run +http://127\.0\.0\.1:8080/dags/churn_pipeline/runs/manual__",
        r"model version +http://127\.0\.0\.1:5000/#/models/churn-classifier/versions/[0-9]+",
        r"data report +file://\S+/data_docs/index\.html",
    ):
        assert re.search(link, summary), link
    report = re.search(r"data report +file://(\S+)", summary)
    assert Path(report[1]).is_file()
    # Quiet: a screenful for the whole run, progress and summary together.
    assert len(result.stdout.splitlines()) <= 40, result.stdout
    # make airflow, not the demo, creates the login: the demo does not point at a file that is not there.
    assert "its first start writes the password to a file" in summary
    assert "simple_auth_manager_passwords" not in summary
    assert "sqlite3" not in summary and f"make scores SCORE_DATE={SCORE_DATE}" in summary
    # A rerun of the scored date reproduces its scores.
    pd.testing.assert_frame_equal(deployment.scores()[BUSINESS_COLUMNS], before[BUSINESS_COLUMNS])


# The lines of `make demo`'s summary that link a page or file, by what they name.
DEMO_LINK = re.compile(r"^  (Airflow run|MLflow run|model version|data report|Airflow log) +(\S+)$", re.MULTILINE)


def test_the_demos_first_run_fits_a_screen_and_every_link_it_prints_opens(
    deployment: Deployment, make_settings: dict[str, str], first_run, request, tmp_path: Path
):
    offline = request.getfixturevalue("offline_page")
    demo = first_run["demo"]
    lines = demo.splitlines()
    # After installation: what the data and airflow-db steps do, one line each, then the run.
    assert lines[0] == f"data: generating {TRAINING_ROWS} training and {SCORING_ROWS} scoring rows in " + str(
        deployment.settings.sources_dir
    )
    assert lines[1].startswith("airflow-db: migrating Airflow's metadata database")
    assert len(lines) <= 40, demo
    progress = [line for line in demo[: demo.index("=== churn_pipeline run")].splitlines()[3:] if line]
    assert len(progress) == 11 and all(len(line) <= WIDTH for line in progress), progress
    files = re.findall(r"file://\S+", demo)
    assert len(files) == len(set(files)), f"a file named twice: {files}"

    links = dict(DEMO_LINK.findall(demo))
    assert set(links) == {"Airflow run", "MLflow run", "model version", "data report", "Airflow log"}, demo
    assert "[DAG TEST] end task task_id=monitor" in Path(links["Airflow log"].removeprefix("file://")).read_text()
    assert_styled_and_complete(offline, links["data report"])

    airflow_port, mlflow_port = make_settings["AIRFLOW_PORT"], make_settings["MLFLOW_PORT"]
    env = make_settings | {
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
    }
    with ExitStack() as stack:
        logs = {target: tmp_path / f"make-{target}.log" for target in ("airflow", "mlflow")}
        served = {
            target: stack.enter_context(running(["make", "-C", str(PROJECT_DIR), target], env, log))
            for target, log in logs.items()
        }
        health = {"airflow": f"{airflow_port}/api/v2/monitor/health", "mlflow": f"{mlflow_port}/health"}
        for target, process in served.items():
            wait_until_answers(f"http://127.0.0.1:{health[target]}", process, logs[target])
        page = offline.page

        password = json.loads((Path(env["AIRFLOW_HOME"]) / PASSWORD_FILE).read_text())["admin"]
        sign_in(page, links["Airflow run"], password)
        page.wait_for_url(links["Airflow run"])
        expect(page.get_by_text(first_run["airflow"]["run_id"]).first).to_be_visible()
        expect(page.get_by_text("Success", exact=True).first).to_be_visible()
        page.screenshot(path="/tmp/demo_link_airflow_run.png")

        use_mlflow(deployment.settings)
        run_name = mlflow.get_run(first_run["manifests"]["train"].mlflow_run_id).info.run_name
        page.goto(links["MLflow run"])
        expect(page.get_by_text(run_name).first).to_be_visible(timeout=30_000)
        page.screenshot(path="/tmp/demo_link_mlflow_run.png")

        version = first_run["manifests"]["package"].model_version
        page.goto(links["model version"])
        expect(page.get_by_text(f"Version {version}").first).to_be_visible(timeout=30_000)
        page.screenshot(path="/tmp/demo_link_model_version.png")
