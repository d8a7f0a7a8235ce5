"""
# Churn pipeline

Every night at 02:00 UTC this DAG retrains the customer-churn model and writes a fresh
churn probability for every active customer into the warehouse table `churn_scores`.
Each task is one phase of the ML lifecycle, owned by the role the RACI matrix below
makes Responsible for it; each arrow between tasks is a handoff between roles.

`ingest >> validate >> feature >> train >> evaluate >> package >> score`

* Tasks pass references through XCom (paths in the run folder, MLflow run ids, model
  versions, metrics), never data.
* A failed data contract stops the run at `validate`; the Great Expectations report is
  saved in the run folder either way.
* The `champion` alias in the MLflow registry moves only when the challenger is at
  least as good as the champion on the same test rows and clears the quality floor.
* Rerunning a date replaces exactly that date's scores, in one transaction. A rerun or
  backfill of a date scored before uses the same model version, and reruns and backfills
  never move the alias.

Trigger with parameters from the UI's trigger form, or
`airflow dags trigger churn_pipeline --conf '{"score_date": "2026-11-29"}'`.

## Roles (RACI)
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from churn.raci import load_raci, render_matrix
from churn.settings import load_settings
from churn.sources import SOURCE_PATTERN

RACI = load_raci()
SETTINGS = load_settings()
WAREHOUSE_CONNECTION = "churn_warehouse"
MLFLOW_CONNECTION = "churn_mlflow"


def owned_by_raci(task_id: str) -> dict[str, Any]:
    """Task arguments that make the RACI matrix's Responsible role the task's owner."""
    return {"task_id": task_id, "owner": RACI[task_id].responsible, "doc_md": RACI[task_id].task_doc()}


def airflow_connection(conn_id: str):
    """The Airflow Connection ``conn_id``, or None when it is not defined."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def connection_url(conn_id: str) -> str | None:
    """SQLAlchemy URL of an Airflow Connection, or None when it is not defined."""
    from churn.settings import sqlalchemy_url_from_connection

    connection = airflow_connection(conn_id)
    if connection is None:
        return None
    return sqlalchemy_url_from_connection(
        connection.conn_type,
        connection.host,
        connection.login,
        connection.password,
        connection.port,
        connection.schema,
        connection.extra_dejson,
    )


def runtime_settings():
    """Pipeline settings with the warehouse and MLflow Connections (address and login) applied, if defined."""
    from churn.settings import tracking_uri_from_connection

    settings = load_settings().overridden(warehouse_url=connection_url(WAREHOUSE_CONNECTION))
    mlflow = airflow_connection(MLFLOW_CONNECTION)
    if mlflow is None:
        return settings
    tracking_uri = tracking_uri_from_connection(mlflow.host, mlflow.port, mlflow.schema, mlflow.conn_type)
    return settings.overridden(
        mlflow_tracking_uri=tracking_uri,
        mlflow_username=mlflow.login or None,
        mlflow_password=mlflow.password or None,
    )


@dag(
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2), "retry_exponential_backoff": True},
    tags=["churn", "ml"],
    doc_md=__doc__ + render_matrix(RACI),
    params={
        "training_source": Param(
            str(SETTINGS.default_training_source),
            type="string",
            pattern=SOURCE_PATTERN,
            title="Training snapshot",
            description="Customers with a known churn outcome. A .csv or .parquet path (absolute, "
            "or relative to the project folder), file://..., or sql://<connection id>/<[schema.]table>. "
            "{score_date} in a path stands for the run's score date, e.g. /data/{score_date}/training.csv.",
        ),
        "scoring_source": Param(
            str(SETTINGS.default_scoring_source),
            type="string",
            pattern=SOURCE_PATTERN,
            title="Scoring snapshot",
            description="The active customers to score, in the same forms as the training snapshot.",
        ),
        "contract": Param(
            SETTINGS.pipeline["default_contract"],
            type="string",
            minLength=1,
            title="Data contract",
            description="A bundled contract name (telco_churn) or the path of a contract YAML file.",
        ),
        "score_date": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Score date",
            description="The date the scores are for (YYYY-MM-DD). Empty: the run's logical date.",
        ),
    },
)
def churn_pipeline():
    from airflow.sdk.exceptions import AirflowFailException

    @task(**owned_by_raci("ingest"))
    def ingest(params: dict[str, Any], run_id: str, dag_run=None, logical_date=None) -> dict[str, Any]:
        from churn.ingest import resolve_score_date, run_ingest
        from churn.sources import SourceError

        try:
            return run_ingest(
                runtime_settings(),
                airflow_run_id=run_id,
                score_date=resolve_score_date(params["score_date"], logical_date, dag_run.run_after),
                training_source=params["training_source"],
                scoring_source=params["scoring_source"],
                contract=params["contract"],
                connection_url=connection_url,
            )
        except (SourceError, ValueError) as error:
            raise AirflowFailException(str(error)) from error

    @task(**owned_by_raci("validate"))
    def validate(run: dict[str, Any]) -> dict[str, Any]:
        from churn.contract import ContractError
        from churn.validate import ContractViolation, run_validate

        try:
            return run_validate(run)
        except (ContractViolation, ContractError) as error:
            raise AirflowFailException(str(error)) from error

    @task(**owned_by_raci("feature"))
    def feature(run: dict[str, Any]) -> dict[str, Any]:
        from churn.feature import run_feature

        return run_feature(run)

    @task(**owned_by_raci("train"))
    def train(run: dict[str, Any]) -> dict[str, Any]:
        from churn.train import run_train

        return run_train(run, runtime_settings())

    @task(**owned_by_raci("evaluate"))
    def evaluate(run: dict[str, Any]) -> dict[str, Any]:
        from churn.evaluate import run_evaluate

        return run_evaluate(run, runtime_settings())

    @task(**owned_by_raci("package"))
    def package(run: dict[str, Any]) -> dict[str, Any]:
        from churn.package import run_package

        return run_package(run, runtime_settings())

    @task(**owned_by_raci("score"))
    def score(run: dict[str, Any]) -> dict[str, Any]:
        from churn.score import ScoringError, run_score

        try:
            return run_score(run, runtime_settings())
        except ScoringError as error:
            raise AirflowFailException(str(error)) from error

    score(package(evaluate(train(feature(validate(ingest()))))))


churn_pipeline()
