"""
# Churn pipeline

Every night at 02:00 UTC this DAG retrains the customer-churn model and writes a fresh
churn probability for every active customer into the warehouse table `churn_scores`.
Each task is one phase of the ML lifecycle, owned by the role the RACI matrix below
makes Responsible for it; each arrow between tasks is a handoff between roles.

`ingest >> validate >> feature >> train >> evaluate >> approve >> package >> score >> monitor`; each task takes
the earlier results it uses (small typed records through XCom: paths, MLflow run ids,
model versions, metrics; never data). `score` is a group: `plan` splits the customers into
partitions, one mapped `partition` task scores each (workers share them), and `publish`
makes the date's scores visible at once (an event of the `churn_scores` asset). `monitor`
measures the date's drift from the model's training data into `churn_monitoring` and a report.

* A failed data contract stops the run at `validate`; the Great Expectations report is
  saved in the run folder either way. Only outages (a warehouse, MLflow or network that
  cannot be reached or is busy) are retried; every other error (data, contract,
  configuration, Connection, model) fails its task at once.
* The `champion` alias in the MLflow registry moves only when the challenger is at
  least as good as the champion on the test rows the champion never trained on (with enough
  churners among them) and clears the quality floor; `package` registers it, and the alias
  moves in `score.publish`, once the date's scores with it are written: a failure before
  leaves the champion where it was. A rerun refuses to score a date with its earlier version
  number if the registry now gives that number to another model (a lost MLflow store).
  A promotion that changes test ROC AUC by more than `approvals.max_unapproved_auc_change`,
  or comes from a drift-triggered run, waits in `approve` (Browse → Required Actions) for
  the Accountable role's users; rejected or unanswered in time, the champion scores the date.
* Rerunning a date replaces exactly that date's scores, in one transaction. A run that
  cannot promote (a rerun of a scored date, or a backfill of a date earlier than one
  scored or promoted for) skips `train`, `evaluate`, `approve` and `package` (`train`'s log says
  why) and scores with the date's model of record, so a scored date keeps its version.

* Drift above the thresholds of `pipeline.yaml` emits an event of the `churn_drift` asset,
  which starts a retraining run of this DAG (run type `asset_triggered`) besides the nightly
  schedule; a run drift started never emits another.

Trigger with parameters from the UI's trigger form, or
`airflow dags trigger churn_pipeline --conf '{"score_date": "2026-11-29"}'`.

## Roles (RACI)
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import (
    Asset,
    AssetAlias,
    AssetOrTimeSchedule,
    CronTriggerTimetable,
    Param,
    TriggerRule,
    dag,
    task,
    task_group,
)

from churn.airflow_alerts import on_task_failure, owner_links
from churn.airflow_approval import PromotionApprovalOperator
from churn.raci import load_raci, render_matrix
from churn.run_parameters import trigger_form
from churn.settings import task_timeout

RACI = load_raci()
SCORES = Asset("churn_scores")
DRIFT = Asset("churn_drift")
# monitor emits DRIFT through an alias because Airflow records an event for every Asset a task
# declares as outlet each time it succeeds, but for an alias only the events the task adds.
DRIFT_DETECTED = AssetAlias("churn_drift_detected")
SCHEDULE = "0 2 * * *"  # 02:00 UTC


def phase_task(phase: str, step: str | None = None, **options: Any):
    """A TaskFlow task for ``phase`` (or one ``step`` of it), owned by its RACI Responsible role
    and documented by its row."""
    options.setdefault("execution_timeout", task_timeout(phase))  # pipeline.yaml: task_timeouts_minutes
    return task(task_id=step or phase, owner=RACI[phase].responsible, doc_md=RACI[phase].task_doc(), **options)


@dag(
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable(SCHEDULE, timezone="UTC"), assets=DRIFT),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": True,
        "on_failure_callback": on_task_failure,
    },
    owner_links=owner_links(),
    tags=["churn", "ml"],
    doc_md=__doc__ + render_matrix(),
    params={name: Param(**form) for name, form in trigger_form().items()},
)
def churn_pipeline():
    @phase_task("ingest")
    def ingest(params: dict[str, Any], run_id: str, dag_run=None, logical_date=None) -> dict[str, Any]:
        from churn.ingest import run_ingest

        return run_ingest(
            params,
            airflow_run_id=run_id,
            logical_date=logical_date,
            run_after=dag_run.run_after,
            drift_triggered=dag_run.run_type == "asset_triggered",
        ).model_dump(mode="json")

    @phase_task("validate")
    def validate(landed: dict[str, Any]) -> dict[str, Any]:
        from churn.validate import run_validate

        return run_validate(landed).model_dump(mode="json")

    @phase_task("feature")
    def feature(validated: dict[str, Any]) -> dict[str, Any]:
        from churn.feature import run_feature

        return run_feature(validated).model_dump(mode="json")

    @phase_task("train")
    def train(features: dict[str, Any]) -> dict[str, Any]:
        from churn.train import run_train

        return run_train(features).model_dump(mode="json")

    @phase_task("evaluate")
    def evaluate(trained: dict[str, Any], triggering_asset_events=None) -> dict[str, Any]:
        from churn.evaluate import run_evaluate

        # A run monitoring's drift event started promotes only once approved; its events say what drifted.
        drift_events = [event.extra for events in triggering_asset_events.values() for event in events]
        return run_evaluate(trained, drift_events=drift_events).model_dump(mode="json")

    @phase_task("package")
    def package(
        validated: dict[str, Any], trained: dict[str, Any], evaluated: dict[str, Any], approval: dict[str, Any]
    ) -> dict[str, Any]:
        from churn.package import run_package

        return run_package(validated, trained, evaluated, approval=approval).model_dump(mode="json")

    @task_group(group_id="score", tooltip="plan, then one mapped task per partition, then publish")
    def score(features: dict[str, Any], packaged: dict[str, Any] | None) -> None:
        # Runs after a skipped package (packaged: None), never after a failed one.
        @phase_task("score", "plan", trigger_rule=TriggerRule.NONE_FAILED)
        def plan(features: dict[str, Any], packaged: dict[str, Any] | None) -> list[dict[str, Any]]:
            from churn.score import run_score_plan

            return [part.model_dump(mode="json") for part in run_score_plan(features, packaged)]

        # The UI names each mapped instance by its rows, not only its index.
        @phase_task("score", "partition", map_index_template="{{ customer_rows }}")
        def partition(work: dict[str, Any]) -> dict[str, Any]:
            from airflow.sdk import get_current_context

            from churn.score import run_score_partition

            get_current_context()["customer_rows"] = f"rows {work['first_row']:,}-{work['end_row']:,}"
            return run_score_partition(work).model_dump(mode="json")

        @phase_task("score", "publish", outlets=[SCORES])
        def publish(staged: list[dict[str, Any]]) -> dict[str, Any]:
            from churn.score import run_score_publish

            # One slice fetches every partition's result at once; iterating would ask one by one
            # until a miss, which Airflow logs as an error.
            return run_score_publish(staged[:]).model_dump(mode="json")

        return publish(partition.expand(work=plan(features, packaged)))

    @phase_task("monitor", outlets=[DRIFT_DETECTED])
    def monitor(features: dict[str, Any], scored: dict[str, Any], outlet_events=None) -> dict[str, Any]:
        from churn.monitor import run_monitor

        result = run_monitor(features, scored)
        if result.retraining_requested:
            outlet_events[DRIFT_DETECTED].add(DRIFT, extra=result.drift_event_extra())
        return result.model_dump(mode="json")

    validated = validate(ingest())
    features = feature(validated)
    trained = train(features)
    evaluated = evaluate(trained)
    # Waits in the UI's Required Actions for the Accountable role when evaluation asks (see churn.approval).
    approval = PromotionApprovalOperator(
        task_id="approve", owner=RACI["evaluate"].responsible, evaluated=evaluated
    )
    monitor(features, score(features, package(validated, trained, evaluated, approval.output)))


churn_pipeline()
