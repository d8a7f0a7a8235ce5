"""
# Scores due

Every day at `alerts.scores_due` in `pipeline.yaml` (06:00 UTC) this DAG checks that the
warehouse table `churn_scores` holds that day's scores. If it holds none, whatever the reason
(`churn_pipeline` failed, is still running, was paused or never started), it tells the score
phase's roles from `raci.yaml` (Responsible and Accountable; Informed in copy) through
`alerts.routes`, and keeps the alert in `churn_alerts` and the alerts file. A late date's check
can be run again: it tells of a date once.

Why not Airflow's own Deadline Alerts on `churn_pipeline`: in Airflow 3.3.2 a DAG with a
deadline makes `airflow dags test` crash once a run succeeds (the copy of the DAG it schedules
holds each alert's definition where `DagRun.update_state` expects its database id), and
`airflow dags test` is how `make demo` and the tests run the pipeline. A check of the table
itself also notices a date for which no run started at all.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task
from airflow.timetables.trigger import CronTriggerTimetable

from churn.airflow_alerts import check_scores_due, on_task_failure, owner_links
from churn.alerts import incident_response, scores_due_schedule
from churn.settings import load_settings, task_timeout

INCIDENT_RESPONSE = incident_response()


@dag(
    schedule=CronTriggerTimetable(scores_due_schedule(load_settings().config.alerts.scores_due), timezone="UTC"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        "on_failure_callback": on_task_failure,
    },
    owner_links=owner_links(),
    tags=["churn", "alerts"],
    doc_md=__doc__,
)
def churn_scores_due():
    @task(
        owner=INCIDENT_RESPONSE.responsible,
        doc_md=INCIDENT_RESPONSE.task_doc(),
        execution_timeout=task_timeout("scores_due"),
    )
    def check_scores_written(**context) -> str:
        return check_scores_due(context)

    check_scores_written()


churn_scores_due()
