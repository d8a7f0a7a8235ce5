"""End to end through Airflow's scheduler (``airflow standalone``: scheduler, LocalExecutor,
API server): a promotion that changes the model's quality by more than the configured margin
waits in the ``awaiting_input`` state for the Accountable role's users, who answer through the
REST API, as the UI's Required Actions page does. A rejection keeps the champion, which scores
the date; an approval moves the alias; a user the role does not map cannot answer.

The champion's run uses the generated snapshot; the later dates' training snapshot, of new
customers, has every label flipped, so the challenger learns the new outcome and the champion
ranks customers backwards: the challenger is promoted, with a change of test ROC AUC far beyond
the margin. The alias moves only once score has published the approved version's scores.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import mlflow
import pandas as pd
import pytest

from churn.generate import make_snapshots, write_snapshots
from churn.handoffs import PackageResult
from churn.manifest import read_manifests
from churn.settings import Settings, load_settings
from churn.tracking import champion_version, use_mlflow
from tests.conftest import free_port
from tests.e2e.airflow_stack import (
    Stack,
    airflow_environment,
    answer_request,
    days_before_today,
    running_standalone,
    waiting_request,
)
from tests.e2e.deployment import e2e_pipeline_config

pytestmark = pytest.mark.e2e

TRAINING_ROWS, SCORING_ROWS = 5_000, 1_000
CHAMPION_DATE, REJECTED_DATE, APPROVED_DATE = days_before_today(3), days_before_today(2), days_before_today(1)
# Airflow's simple auth manager: admin is mapped to the Accountable roles in pipeline.yaml;
# analyst is an admin too, but not mapped, so Airflow refuses its answer.
PASSWORDS = {"admin": f"pw-{uuid.uuid4().hex}", "analyst": f"pw-{uuid.uuid4().hex}"}


def login(base_url: str, user: str) -> httpx.Client:
    token = httpx.post(f"{base_url}/auth/token", json={"username": user, "password": PASSWORDS[user]})
    token.raise_for_status()
    return httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {token.json()['access_token']}"}, timeout=60
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    """Airflow standalone on its own SQLite metadata database, with the pipeline's SQLite
    warehouse and MLflow store under the test's CHURN_HOME."""
    root = tmp_path_factory.mktemp("approval")
    sources = write_snapshots(make_snapshots(TRAINING_ROWS, SCORING_ROWS, seed=7), root / "churn" / "sources")
    (root / "passwords.json").write_text(json.dumps(PASSWORDS))
    env = airflow_environment(
        root,
        metadata_url=f"sqlite:///{root / 'airflow' / 'airflow.db'}",
        warehouse_url="",
        api_port=free_port(),
        password_file=root / "passwords.json",
    )
    env.pop("AIRFLOW_CONN_CHURN_WAREHOUSE")  # the embedded default: CHURN_HOME/warehouse.db
    env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = "admin:admin,analyst:admin"
    env["CHURN_PIPELINE_CONFIG"] = str(e2e_pipeline_config(root / "pipeline.yaml"))
    # Only the test's runs: unpausing would otherwise start the latest nightly run, for today,
    # after which the test's earlier dates would be backfills that never promote.
    env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] = "False"
    with running_standalone(env, root, PASSWORDS["admin"]) as (api, logs):
        assert api.patch("/api/v2/dags/churn_pipeline", json={"is_paused": False}).status_code == 200
        yield Stack(api=api, warehouse_url=load_settings(env).warehouse_url, sources=sources, root=root, logs=logs)


@pytest.fixture(scope="module")
def settings(stack: Stack) -> Settings:
    settings = load_settings({"CHURN_HOME": str(stack.root / "churn")})
    use_mlflow(settings)
    return settings


@pytest.fixture(scope="module")
def champion_run(stack: Stack) -> str:
    """The first run: no champion to compare with, so nothing to approve; it promotes at once."""
    answer = stack.trigger({"score_date": CHAMPION_DATE.isoformat()})
    assert answer.status_code == 200, answer.text
    run_id = answer.json()["dag_run_id"]
    assert stack.wait_for(run_id) == "success", stack.log_tails()
    return run_id


@pytest.fixture(scope="module")
def relabelled_training(stack: Stack) -> str:
    """A later training snapshot of new customers with every label flipped: a new outcome the
    champion gets backwards. New customers, because the challenger is compared with the
    champion only on test rows the champion never trained on."""
    later = write_snapshots(make_snapshots(TRAINING_ROWS, SCORING_ROWS, seed=8), stack.root / "later")
    return str(relabelled(later["training"], stack.root / "relabelled_training.csv"))


def relabelled(training: Path, path: Path) -> Path:
    """The training snapshot at ``training`` with every label flipped, written to ``path``."""
    frame = pd.read_csv(training, dtype="string", keep_default_na=False)
    frame["Churn"] = frame["Churn"].map({"Yes": "No", "No": "Yes"})
    frame.to_csv(path, index=False)
    return path


def packaged(settings: Settings, score_date: date, run_id: str) -> PackageResult:
    return read_manifests(settings.run_dir(score_date.isoformat(), run_id))["package"]


def test_a_promotion_within_the_rules_passes_the_gate_without_waiting(stack: Stack, settings, champion_run):
    assert set(stack.task_states(champion_run).values()) == {"success"}
    assert stack.api.get("/api/v2/dags/churn_pipeline/dagRuns/~/hitlDetails").json()["total_entries"] == 0
    first = packaged(settings, CHAMPION_DATE, champion_run)
    assert first.promoted is True and first.approval is None


def test_a_rejected_promotion_keeps_the_champion_which_scores_the_date(
    stack: Stack, settings, champion_run, relabelled_training
):
    champion = str(champion_version(settings).version)
    started = stack.trigger({"score_date": REJECTED_DATE.isoformat(), "training_source": relabelled_training})
    assert started.status_code == 200, started.text
    run_id = started.json()["dag_run_id"]

    detail = waiting_request(stack, run_id)
    # Assigned to the users of Model Evaluation's Accountable role, with the comparison in the request.
    assert detail["assigned_users"] == [{"id": "admin", "name": "admin"}]
    assert detail["options"] == ["Approve", "Reject"] and detail["defaults"] == ["Reject"]
    assert f"Promote the churn model of {REJECTED_DATE}?" in detail["subject"]
    body = detail["body"]
    # Both models' figures on the same rows, side by side: the champion ranks the new outcome backwards.
    assert f"| metric | challenger | champion version {champion} | difference |" in body
    challenger_auc, champion_auc, difference = map(
        float, re.search(r"\| ROC AUC \| (\d\.\d{4}) \| (\d\.\d{4}) \| ([+-]\d\.\d{4}) \|", body).groups()
    )
    assert champion_auc < 0.5 < challenger_auc
    assert difference == pytest.approx(challenger_auc - champion_auc, abs=2e-4)
    assert "more than the 0.0200 allowed without approval (Model Evaluation)" in body
    assert "/#/experiments/" in body and f"/#/models/churn-classifier/versions/{champion}" in body
    # What the request links for the challenger is there before anyone answers.
    trained = read_manifests(settings.run_dir(REJECTED_DATE.isoformat(), run_id))["train"]
    card = mlflow.artifacts.load_text(f"runs:/{trained.mlflow_run_id}/challenger_card.md")
    assert "challenger_card.md" in body and f"| ROC AUC | {challenger_auc:.4f} | {champion_auc:.4f} |" in card
    assert stack.task_states(run_id)["package"] is None

    refused = answer_request(login(str(stack.api.base_url).rstrip("/"), "analyst"), run_id, "Approve")
    assert refused.status_code == 403 and "not a respondent" in refused.text
    rejected = answer_request(stack.api, run_id, "Reject")
    assert rejected.status_code == 200, rejected.text
    assert stack.wait_for(run_id) == "success", stack.log_tails()

    states = stack.task_states(run_id)
    assert {states[task] for task in ("approve", "package", "score.plan", "score.publish")} == {"success"}
    assert str(champion_version(settings).version) == champion
    record = packaged(settings, REJECTED_DATE, run_id)
    assert record.promoted is False and record.champion_version == champion
    assert record.approval.decision == "rejected" and record.approval.responded_by == "admin"
    assert set(stack.scores(REJECTED_DATE)["model_version"]) == {champion}


def test_an_approved_promotion_moves_the_champion(stack: Stack, settings, champion_run, relabelled_training):
    before = str(champion_version(settings).version)
    started = stack.trigger({"score_date": APPROVED_DATE.isoformat(), "training_source": relabelled_training})
    assert started.status_code == 200, started.text
    run_id = started.json()["dag_run_id"]

    waiting_request(stack, run_id)
    approved = answer_request(stack.api, run_id, "Approve")
    assert approved.status_code == 200, approved.text
    assert approved.json()["responded_by"]["name"] == "admin"
    # One answer only: the request is closed.
    assert answer_request(stack.api, run_id, "Reject").status_code == 409
    assert stack.wait_for(run_id) == "success", stack.log_tails()

    record = packaged(settings, APPROVED_DATE, run_id)
    assert record.promoted is True and record.approval.decision == "approved"
    champion = champion_version(settings)
    assert str(champion.version) == record.model_version != before
    assert "The promotion waited for approval by data_scientist" in champion.description
    assert "approved by admin at" in champion.description
    assert set(stack.scores(APPROVED_DATE)["model_version"]) == {record.model_version}
