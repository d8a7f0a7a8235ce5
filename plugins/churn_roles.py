"""Airflow UI plugin: the churn pipeline's roles page, and links from its tasks to their results.

Wiring only: the page's data and HTML come from :mod:`churn.roles_page`. The API server mounts
``roles_app`` under ``/churn-roles`` and the UI lists it in its navigation bar (an external
view, shown inside the UI). Every address of the app needs a signed-in Airflow user, the same
check as Airflow's own REST API: a browser without one is sent to Airflow's login page.

The page serves each run's Great Expectations report (``/runs/<run>/report/``) and monitoring
report (``/runs/<run>/monitoring/``) from the run folder, nothing outside the report's folder.
Extra links on the task pages: ``validate`` opens its run's Great Expectations report (served
by the page, so it renders offline; also after a failed validation), ``train``, ``evaluate``
and ``package`` their run's MLflow run and registered model version, ``score`` the roles page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import FileResponse, HTMLResponse

DAG_ID = "churn_pipeline"
PAGE_PREFIX = "/churn-roles"
PAGE_NAME = "Roles and runs"


async def signed_in_user(request: Request) -> Any:
    """The signed-in Airflow user (Airflow's ``get_user``: the UI's ``_token`` cookie or a bearer
    token); anyone else is sent to Airflow's login page, which comes back here."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    credentials = await bearer_scheme(request)
    try:
        return await get_user(request, None, credentials)
    except HTTPException as refused:
        login = get_auth_manager().get_url_login(next_url=str(request.url))
        raise HTTPException(status.HTTP_303_SEE_OTHER, refused.detail, headers={"Location": login}) from None


roles_app = FastAPI(title="Churn pipeline roles page", dependencies=[Depends(signed_in_user)])


def _settings():
    from churn.airflow_connections import task_settings

    return task_settings(warehouse=True, mlflow=True)


def _task_records() -> list:
    """The pipeline's and the scores-due check's task instances, from Airflow's metadata
    database (the API server's own)."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from churn.roles_page import SCORES_DUE_DAG, TaskRecord

    query = (
        select(
            TaskInstance.task_id,
            TaskInstance.run_id,
            DagRun.run_after,
            TaskInstance.state,
            TaskInstance.start_date,
            TaskInstance.end_date,
            TaskInstance.dag_id,
        )
        .join(DagRun, (DagRun.dag_id == TaskInstance.dag_id) & (DagRun.run_id == TaskInstance.run_id))
        .where(TaskInstance.dag_id.in_([DAG_ID, SCORES_DUE_DAG]))
    )
    with create_session() as session:
        return [
            TaskRecord(task_id, run_id, run_after, str(state) if state else None, start, end, dag_id)
            for task_id, run_id, run_after, state, start, end, dag_id in session.execute(query)
        ]


def _drift_runs() -> list:
    """The pipeline's runs that monitoring's drift event started (run type ``asset_triggered``)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.types import DagRunType
    from sqlalchemy import select

    from churn.roles_page import DagRunRecord

    query = select(DagRun.run_id, DagRun.run_after, DagRun.state, DagRun.start_date, DagRun.end_date).where(
        DagRun.dag_id == DAG_ID, DagRun.run_type == DagRunType.ASSET_TRIGGERED
    )
    with create_session() as session:
        return [
            DagRunRecord(run_id, run_after, str(state) if state else None, start, end)
            for run_id, run_after, state, start, end in session.execute(query)
        ]


@roles_app.get("/", response_class=HTMLResponse)
def roles_page() -> str:
    from churn.links import mlflow_ui_url
    from churn.raci import load_matrix
    from churn.roles_page import PageLinks, gather_roles_page, render_roles_page

    page = gather_roles_page(load_matrix(), _task_records(), _settings(), datetime.now(UTC).date(), _drift_runs())
    return render_roles_page(page, PageLinks(page_prefix=PAGE_PREFIX, mlflow_ui=mlflow_ui_url()))


@roles_app.get("/runs/{airflow_run_id}/report/{relative_path:path}")
def run_report(airflow_run_id: str, relative_path: str) -> FileResponse:
    """A file of the run's Great Expectations report; nothing outside its report folder."""
    from churn.roles_page import DATA_REPORT

    return _report_file(DATA_REPORT, airflow_run_id, relative_path)


@roles_app.get("/runs/{airflow_run_id}/monitoring/{relative_path:path}")
def monitoring_report(airflow_run_id: str, relative_path: str) -> FileResponse:
    """A file of the run's monitoring report; nothing outside its monitoring folder."""
    from churn.roles_page import MONITORING_REPORT

    return _report_file(MONITORING_REPORT, airflow_run_id, relative_path)


def _report_file(report, airflow_run_id: str, relative_path: str) -> FileResponse:
    from churn.roles_page import ReportNotFound, local_runs_dir, report_file

    runs_dir = local_runs_dir(_settings())
    if runs_dir is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "run folders on object storage are not served here")
    try:
        return FileResponse(report_file(runs_dir, airflow_run_id, relative_path, report))
    except ReportNotFound as missing:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(missing)) from None


def _returned(ti_key, task_id: str) -> dict[str, Any] | None:
    """What ``task_id`` returned in the same Airflow run (its XCom), or None."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.execute(
            XComModel.get_many(
                key="return_value", run_id=ti_key.run_id, dag_ids=ti_key.dag_id, task_ids=task_id, map_indexes=-1
            ).with_only_columns(XComModel.value)
        ).first()
    returned = XComModel.deserialize_value(row) if row is not None else None
    return returned if isinstance(returned, dict) else None


class ChurnLink(BaseOperatorLink):
    """A link shown only on this DAG's ``task_ids``; elsewhere it has no address."""

    task_ids: frozenset[str] = frozenset()

    def get_link(self, operator, *, ti_key) -> str:
        if ti_key.dag_id != DAG_ID or ti_key.task_id not in self.task_ids:
            return ""
        return self.address(ti_key) or ""

    def address(self, ti_key) -> str | None:
        raise NotImplementedError


class DataReportLink(ChurnLink):
    name = "Data report"
    task_ids = frozenset({"validate"})

    def address(self, ti_key) -> str | None:
        from churn.roles_page import local_runs_dir, report_url, run_report_folder

        runs_dir = local_runs_dir(_settings())
        if runs_dir is None or run_report_folder(runs_dir, ti_key.run_id) is None:
            return None
        return report_url(PAGE_PREFIX, ti_key.run_id)


class MlflowRunLink(ChurnLink):
    name = "MLflow run"
    task_ids = frozenset({"train", "evaluate", "package"})

    def address(self, ti_key) -> str | None:
        from churn.links import mlflow_ui_url
        from churn.roles_page import mlflow_run_page

        trained = _returned(ti_key, "train")
        if not trained or not trained.get("mlflow_run_id"):
            return None
        return mlflow_run_page(_settings(), mlflow_ui_url(), trained["mlflow_run_id"])


class ModelVersionLink(ChurnLink):
    name = "MLflow model version"
    task_ids = frozenset({"train", "evaluate", "package"})

    def address(self, ti_key) -> str | None:
        from churn.links import mlflow_ui_url, model_version_url

        packaged = _returned(ti_key, "package")
        if not packaged or not packaged.get("model_version"):
            return None
        return model_version_url(mlflow_ui_url(), packaged["model_name"], packaged["model_version"])


class RolesPageLink(ChurnLink):
    name = PAGE_NAME
    task_ids = frozenset({"score.plan", "score.partition", "score.publish"})

    def address(self, ti_key) -> str | None:
        return f"{PAGE_PREFIX}/"


class ChurnRolesPlugin(AirflowPlugin):
    name = "churn_roles"
    fastapi_apps: ClassVar[list[dict]] = [{"app": roles_app, "url_prefix": PAGE_PREFIX, "name": PAGE_NAME}]
    external_views: ClassVar[list[dict]] = [
        {
            "name": PAGE_NAME,
            "href": f"{PAGE_PREFIX}/",
            "destination": "nav",
            "nav_top_level": True,
            "url_route": "churn-roles",
        }
    ]
    global_operator_extra_links: ClassVar[list[BaseOperatorLink]] = [
        DataReportLink(),
        MlflowRunLink(),
        ModelVersionLink(),
        RolesPageLink(),
    ]
