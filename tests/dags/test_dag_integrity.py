"""DAG integrity: the file parses quickly and cleanly, and its wiring matches the RACI matrix."""

from __future__ import annotations

import copy
import itertools
import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest

from churn.raci import phase_task_id
from tests.conftest import EXPECTED_OWNERS, PROJECT_DIR

EXPECTED_CHAIN = ["ingest", "validate", "feature", "train", "evaluate", "package", "score", "monitor"]
# The score phase is a task group: a plan, one mapped task per partition, and publishing.
SCORE_STEPS = ["score.plan", "score.partition", "score.publish"]
# Between evaluation and packaging, the approval gate: a step of Model Evaluation, not a phase.
GATE = "approve"
EXPECTED_TASKS = [*EXPECTED_CHAIN[:5], GATE, EXPECTED_CHAIN[5], *SCORE_STEPS, "monitor"]
# Each task's upstream tasks are the ones whose results it takes as arguments.
EXPECTED_UPSTREAM = {
    "ingest": set(),
    "validate": {"ingest"},
    "feature": {"validate"},
    "train": {"feature"},
    "evaluate": {"train"},
    "approve": {"evaluate"},
    "package": {"validate", "train", "evaluate", "approve"},
    "score.plan": {"feature", "package"},
    "score.partition": {"score.plan"},
    "score.publish": {"score.partition"},
    "monitor": {"feature", "score.publish"},
}
DAG_FILE = PROJECT_DIR / "dags" / "churn_pipeline.py"
HEAVY_MODULES = ["pandas", "sklearn", "mlflow", "great_expectations", "matplotlib", "pyarrow"]


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    # Airflow's own parse-time budget: a slower import is reported as an import error.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT", "2")
        return DagBag(dag_folder=str(PROJECT_DIR / "dags"))


@pytest.fixture(scope="module")
def dag(dagbag):
    return dagbag.dags["churn_pipeline"]


def test_dag_files_import_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "churn_pipeline" in dagbag.dag_ids


def test_dag_file_imports_no_heavy_library_at_parse_time():
    probe = (
        "import sys, json, runpy; import airflow.sdk; "
        f"sys.path.append({str(DAG_FILE.parent)!r}); before = set(sys.modules); "
        f"runpy.run_path({str(DAG_FILE)!r}); "
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
        .stdout.strip()
        .splitlines()[-1]
    )
    heavy = [name for name in loaded if name.split(".")[0] in HEAVY_MODULES]
    assert heavy == []


def test_exactly_the_seven_lifecycle_phases_in_order(dag):
    assert sorted(dag.task_ids) == sorted(EXPECTED_TASKS)
    for upstream, downstream in itertools.pairwise(EXPECTED_TASKS):
        assert upstream in dag.get_task(downstream).upstream_task_ids
    assert [task.task_id for task in dag.topological_sort()] == EXPECTED_TASKS
    assert [child for child in dag.task_group.children if child != GATE] == EXPECTED_CHAIN
    assert dag.get_task("score.publish").downstream_task_ids == {"monitor"}
    assert dag.get_task("monitor").downstream_task_ids == set()


def test_scoring_is_mapped_over_the_plans_partitions(dag):
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    assert isinstance(dag.get_task("score.partition"), MappedOperator)
    assert not isinstance(dag.get_task("score.plan"), MappedOperator)
    assert not isinstance(dag.get_task("score.publish"), MappedOperator)


def test_each_task_depends_on_exactly_the_results_it_takes(dag):
    for task_id, upstream in EXPECTED_UPSTREAM.items():
        assert dag.get_task(task_id).upstream_task_ids == upstream, task_id


def test_a_skipped_package_lets_score_run_but_a_failure_stops_it(dag):
    """A run that cannot promote skips train; evaluate and package skip with it (all_success),
    and the score plan still runs (none_failed), but never after a failure upstream."""
    rules = {task.task_id: task.trigger_rule for task in dag.tasks}
    assert rules == {**dict.fromkeys(EXPECTED_TASKS, "all_success"), "score.plan": "none_failed"}


def test_the_approval_gate_waits_between_evaluate_and_package_for_the_configured_users(dag):
    """Skipped with evaluate (a rerun), it skips package too; otherwise package always runs and
    reads its outcome: a rejection keeps the champion, and score runs either way."""
    from airflow.providers.standard.operators.hitl import HITLOperator

    from churn.approval import approving_roles, respondents
    from churn.settings import load_settings

    gate = dag.get_task(GATE)
    approvals = load_settings().config.approvals
    assert isinstance(gate, HITLOperator)
    assert gate.owner == EXPECTED_OWNERS["evaluate"] == "data_scientist"
    assert gate.upstream_task_ids == {"evaluate"} and gate.downstream_task_ids == {"package"}
    assert gate.trigger_rule == "all_success" == dag.get_task("package").trigger_rule
    assert (gate.options, gate.defaults, gate.multiple) == (["Approve", "Reject"], ["Reject"], False)
    assert gate.response_timeout == timedelta(hours=approvals.response_timeout_hours) == timedelta(hours=12)
    # Assigned at run time to the users of the Accountable roles that ask, as configured.
    assert approvals.users == {"data_scientist": ("admin",), "mlops_engineer": ("admin",)}
    assert respondents(approving_roles(), approvals) == ["admin"]
    assert "Required Actions" in gate.doc_md and "| data_scientist | admin |" in gate.doc_md


def test_the_dag_file_is_wiring_and_imports_only_entry_points_raci_and_parameters():
    import ast

    source = DAG_FILE.read_text()
    assert len(source.splitlines()) < 200
    project_imports = {
        f"{node.module}.{alias.name}"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("churn")
        for alias in node.names
    }
    entry_points = {f"churn.{phase}.run_{phase}" for phase in EXPECTED_CHAIN if phase != "score"} | {
        f"churn.score.run_score_{step}" for step in ("plan", "partition", "publish")
    }
    allowed = entry_points | {
        "churn.airflow_approval.PromotionApprovalOperator",
        "churn.airflow_alerts.on_task_failure",
        "churn.airflow_alerts.owner_links",
        "churn.raci.load_raci",
        "churn.raci.render_matrix",
        "churn.run_parameters.trigger_form",
        "churn.settings.task_timeout",
    }
    assert entry_points <= project_imports <= allowed


def test_each_owner_is_the_raci_responsible_role(dag):
    from churn.raci import load_raci

    raci = load_raci()
    for task in dag.tasks:
        phase = phase_task_id(task.task_id)
        assert task.owner == raci[phase].responsible == EXPECTED_OWNERS[phase]


def test_task_docs_state_their_raci_row_and_handoff(dag):
    from churn.raci import load_raci

    for task in dag.tasks:
        row = load_raci()[phase_task_id(task.task_id)]
        assert row.accountable in task.doc_md
        assert all(role in task.doc_md for role in row.consulted + row.informed)
        assert "Hands off" in task.doc_md


def test_dag_doc_shows_the_whole_matrix(dag):
    for task_id, owner in EXPECTED_OWNERS.items():
        assert f"| `{task_id}` |" in dag.doc_md
        assert owner in dag.doc_md


def test_schedule_retries_and_concurrency(dag):
    """Nightly at 02:00 UTC, or when monitoring reports drift (see test_drift_...)."""
    assert dag.timetable.timetable.expression == "0 2 * * *"
    assert str(dag.timetable.timetable.timezone) == "UTC"
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.tags
    for task in dag.tasks:
        assert task.retries >= 1
        assert task.retry_delay >= timedelta(minutes=1)


def test_publishing_declares_the_scores_table_as_its_asset(dag):
    from airflow.sdk import Asset

    assert dag.get_task("score.publish").outlets == [Asset("churn_scores")]


def test_drift_starts_a_run_besides_the_nightly_schedule(dag):
    """Asset-or-time: the 02:00 cron, or an event of the drift asset; monitor reaches that asset
    only through an alias, so Airflow records an event only when monitor adds one (on drift)."""
    from airflow.sdk import Asset, AssetAlias, AssetOrTimeSchedule, CronTriggerTimetable

    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assert isinstance(dag.timetable.timetable, CronTriggerTimetable)
    assert dag.timetable.timetable.expression == "0 2 * * *"
    assert dag.timetable.asset_condition == Asset("churn_drift")
    monitor = dag.get_task("monitor")
    assert monitor.outlets == [AssetAlias("churn_drift_detected")]
    assert not any(isinstance(outlet, Asset) for outlet in monitor.outlets)


def test_monitor_runs_after_publishing_even_when_training_was_skipped(dag):
    monitor = dag.get_task("monitor")
    assert monitor.owner == EXPECTED_OWNERS["monitor"] == "mlops_engineer"
    assert monitor.upstream_task_ids == {"feature", "score.publish"}
    # all_success: a skipped train/evaluate/package does not reach monitor, whose upstream
    # tasks (feature, publish) succeed in such a run.
    assert monitor.trigger_rule == "all_success"


def test_every_param_explains_itself_in_the_trigger_form(dag):
    for name in (
        "training_source",
        "scoring_source",
        "contract",
        "score_date",
        "allow_any_score_date",
        "allow_shrink",
    ):
        param = dag.params.get_param(name)
        assert param.schema.get("title") and param.schema.get("type") and param.description, name


def test_the_score_date_is_typed_as_text_and_checked_as_a_date(dag):
    # A "format" at the top of a param's schema makes the UI draw the browser's date picker,
    # which reports a date that does not exist as empty; the run would be for its logical date.
    schema = dag.params.get_param("score_date").schema
    assert "format" not in schema and {"format": "date"} in schema["allOf"]
    assert "YYYY-MM-DD" in dag.params.get_param("score_date").description


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("score_date", "2026-13-45"),
        ("score_date", "2026-02-30"),
        ("score_date", "yesterday"),
        ("score_date", "29/11/2026"),
        ("contract", ""),
        ("allow_shrink", "yes"),
        ("allow_any_score_date", None),
    ],
)
def test_bad_trigger_values_are_rejected_before_any_task_runs(dag, name, value):
    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(dag.params)
    with pytest.raises(ParamValidationError):
        params[name] = value
        params.validate()


def test_good_trigger_values_are_accepted(dag):
    params = copy.deepcopy(dag.params)
    params["score_date"] = "2026-11-29"
    params["training_source"] = "sql://churn_source/crm.customers"
    params["scoring_source"] = "file:///data/active.PARQUET"
    assert params.validate()["score_date"] == "2026-11-29"


def test_a_typo_in_pipeline_yaml_fails_the_dag_parse_naming_the_file_and_key(tmp_path):
    bundled = (PROJECT_DIR / "include" / "churn" / "pipeline.yaml").read_text()
    typo = tmp_path / "pipeline.yaml"
    typo.write_text(bundled.replace("cv_folds:", "cv_fold:"))
    probe = (
        "import json, sys; from airflow.dag_processing.dagbag import DagBag; "
        f"sys.path.append({str(DAG_FILE.parent)!r}); "
        f"print(json.dumps(DagBag({str(DAG_FILE.parent)!r}).import_errors))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "CHURN_PIPELINE_CONFIG": str(typo)},
    )
    printed = next(line for line in reversed(result.stdout.splitlines()) if line.startswith('{"'))
    errors = json.loads(printed)[str(DAG_FILE)]
    assert str(typo) in errors
    assert "unknown key 'training.cv_fold'" in errors and "required key 'training.cv_folds' is missing" in errors


def test_every_task_tells_its_phases_roles_when_it_fails(dag):
    from churn.airflow_alerts import on_task_failure

    for task in dag.tasks:
        callbacks = task.on_failure_callback
        assert on_task_failure in (callbacks if isinstance(callbacks, list) else [callbacks]), task.task_id


def test_owner_links_reach_every_owner_where_the_routes_say(dag):
    from churn.settings import load_settings

    routes = load_settings().config.alerts.routes
    owners = {task.owner for task in dag.tasks}
    assert owners <= set(dag.owner_links)
    for owner in owners:
        assert dag.owner_links[owner] == (routes[owner].page or f"mailto:{','.join(routes[owner].email)}")


def test_the_scores_are_checked_daily_at_their_due_time_by_incident_responses_owner(dagbag):
    """Airflow 3.3.2's Deadline Alerts would crash `airflow dags test`; a DAG of its own checks the table."""
    from churn.airflow_alerts import on_task_failure

    check = dagbag.dags["churn_scores_due"]
    assert check.timetable.summary == "0 6 * * *" and check.catchup is False
    (task,) = check.tasks
    assert task.owner == "mlops_engineer"
    assert on_task_failure in (
        task.on_failure_callback if isinstance(task.on_failure_callback, list) else [task.on_failure_callback]
    )
    assert not dagbag.dags["churn_pipeline"].deadline


def test_every_task_of_both_dags_stops_after_its_phases_configured_time(dagbag, tmp_path, monkeypatch):
    """A hung task (a lock, a server that never answers) is stopped and retried, never left
    running: every task has an execution_timeout, its phase's in task_timeouts_minutes. A
    configuration that changes one phase's shows there, and in no other phase's tasks."""
    from airflow.dag_processing.dagbag import DagBag

    from churn.settings import TASK_TIMEOUT_MINUTES, pipeline_config

    def configured_as(task_id: str) -> str:  # the approval gate's own; the scores_due DAG's check
        return {"approve": "approve", "check_scores_written": "scores_due"}.get(task_id, phase_task_id(task_id))

    tasks = [task for dag_id in ("churn_pipeline", "churn_scores_due") for task in dagbag.dags[dag_id].tasks]
    assert {configured_as(task.task_id) for task in tasks} == set(TASK_TIMEOUT_MINUTES)
    for task in tasks:
        assert task.execution_timeout == timedelta(minutes=TASK_TIMEOUT_MINUTES[configured_as(task.task_id)])

    config = tmp_path / "pipeline.yaml"
    bundled = (PROJECT_DIR / "include" / "churn" / "pipeline.yaml").read_text()
    config.write_text(
        bundled.replace("  score: 120 ", "  score: 7 ").replace("  scores_due: 10 ", "  scores_due: 3 ")
    )
    monkeypatch.setenv("CHURN_PIPELINE_CONFIG", str(config))
    pipeline_config.cache_clear()
    try:
        reparsed = DagBag(dag_folder=str(PROJECT_DIR / "dags"))
    finally:
        pipeline_config.cache_clear()
    minutes = {
        task.task_id: task.execution_timeout / timedelta(minutes=1)
        for dag_id in ("churn_pipeline", "churn_scores_due")
        for task in reparsed.dags[dag_id].tasks
    }
    assert minutes == {
        **{task_id: TASK_TIMEOUT_MINUTES[configured_as(task_id)] for task_id in minutes},
        "score.plan": 7,
        "score.partition": 7,
        "score.publish": 7,
        "check_scores_written": 3,
    }
