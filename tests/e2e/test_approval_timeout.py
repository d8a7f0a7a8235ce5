"""End to end: a promotion nobody answers in time keeps the champion, which scores the date.

The runs go through ``airflow dags test``, which runs the tasks but never times a request out:
on Airflow 3.3 the approve task waits in the ``awaiting_input`` state with no trigger, and
``dag.test()`` waits for an answer from outside. What answers an unanswered request with its
default (Reject) once ``approvals.response_timeout_hours`` have passed is the scheduler's
time-out sweep, so Airflow's scheduler runs beside the second run, on the same metadata
database. The DAG stays paused, so the scheduler runs none of its tasks.

As in test_promotion_approval, the second date's training snapshot has every label flipped:
its challenger is promoted by a change of test ROC AUC far beyond the margin, so it must wait.
"""

from __future__ import annotations

import json
from datetime import date

import pytest
import yaml

from churn.generate import make_snapshots, write_snapshots
from churn.handoffs import PackageResult
from churn.manifest import read_manifests
from churn.tracking import champion_version, use_mlflow
from tests.conftest import SCORE_DATE, free_port, stored_scores
from tests.e2e.airflow_stack import log_tails, start, stop
from tests.e2e.deployment import BIN, Deployment, deploy, e2e_pipeline_config
from tests.e2e.test_promotion_approval import relabelled

pytestmark = pytest.mark.e2e

TRAINING_ROWS, SCORING_ROWS = 2_000, 500
CHAMPION_DATE, UNANSWERED_DATE = date(2026, 11, 28), SCORE_DATE
RESPONSE_TIMEOUT_SECONDS = 5


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Deployment:
    """A deployment whose approval requests time out after a few seconds, and whose training
    cross-validates each family's configured values with no search."""
    root = tmp_path_factory.mktemp("approval_timeout")
    path = e2e_pipeline_config(root / "pipeline.yaml")
    config = yaml.safe_load(path.read_text())
    config["training"]["search"] = None
    config["approvals"]["response_timeout_hours"] = RESPONSE_TIMEOUT_SECONDS / 3600
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return deploy(
        root,
        TRAINING_ROWS,
        SCORING_ROWS,
        CHURN_PIPELINE_CONFIG=str(path),
        # Paused, the DAG's runs are left to `dags test`: the scheduler beside it schedules none.
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True",
    )


def run_date(deployment: Deployment, score_date: date, **conf: str) -> tuple[dict, str]:
    """`airflow dags test` for ``score_date``: the run as Airflow lists it, and the command's output."""
    conf_json = json.dumps({"score_date": score_date.isoformat(), **conf})
    result = deployment.airflow(
        "dags", "test", "churn_pipeline", score_date.isoformat(), "--conf", conf_json, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    return deployment.latest_run(), output


def packaged(deployment: Deployment, score_date: date, run: dict) -> PackageResult:
    return read_manifests(deployment.settings.run_dir(score_date.isoformat(), run["run_id"]))["package"]


@pytest.fixture(scope="module")
def champion(deployment: Deployment) -> str:
    """The first run: no champion to compare with, so it promotes with no request."""
    run, _ = run_date(deployment, CHAMPION_DATE)
    assert packaged(deployment, CHAMPION_DATE, run).promoted is True
    use_mlflow(deployment.settings)
    return str(champion_version(deployment.settings).version)


@pytest.fixture(scope="module")
def unanswered_run(deployment: Deployment, champion: str) -> dict:
    later = write_snapshots(make_snapshots(TRAINING_ROWS, SCORING_ROWS, seed=8), deployment.root / "later")
    training = relabelled(later["training"], deployment.root / "relabelled_training.csv")
    scheduler_log = deployment.root / "scheduler.log"
    env = {
        **deployment.env,
        # The sweep runs every trigger_timeout_check_interval: every second here, not every 15.
        "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "1",
        # Its executor runs nothing: one worker process, not 32; its log server on a free port.
        "AIRFLOW__CORE__PARALLELISM": "1",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
    }
    scheduler = start([str(BIN / "airflow"), "scheduler"], env, scheduler_log)
    try:
        run, output = run_date(deployment, UNANSWERED_DATE, training_source=str(training))
    finally:
        stop(scheduler)
    return {"run": run, "output": output, "scheduler_log": scheduler_log.read_text(errors="replace")}


def test_an_unanswered_promotion_times_out_and_the_champion_scores_the_date(
    deployment: Deployment, champion: str, unanswered_run: dict
):
    run, output = unanswered_run["run"], unanswered_run["output"]
    assert run["state"] == "success"
    assert set(deployment.task_states(run["run_id"]).values()) == {"success"}
    # The scheduler's sweep, not a person, answered: with the request's default, Reject.
    sweep = "AWAITING_INPUT timeout sweep: 1 resolved (response/defaults), 0 failed, 0 could not be resumed"
    assert sweep in unanswered_run["scheduler_log"], log_tails([deployment.root / "scheduler.log"])
    assert "approve: no answer in time at " in output and "counted as rejected" in output

    record = packaged(deployment, UNANSWERED_DATE, run)
    assert record.approval.decision == "timed_out" and record.approval.responded_by is None
    assert record.promoted is False and record.champion_version == champion
    assert str(champion_version(deployment.settings).version) == champion
    assert set(stored_scores(deployment.settings.warehouse_url, UNANSWERED_DATE)["model_version"]) == {champion}
