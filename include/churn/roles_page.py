"""The roles page: who owns each phase of the pipeline and how its latest run went, the champion
model, the latest monitoring figures and alerts, and the scores by risk band, as one HTML page.

The Airflow UI plugin (``plugins/churn_roles.py``) serves it behind Airflow's login; this module
gathers and renders and never imports Airflow: the plugin hands it the task instances and
drift-started runs it reads from Airflow's metadata database as plain records. The page loads
nothing from the internet: its style is inline, and each run's Great Expectations report and
monitoring report are served through the page.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa

from churn.alerts import INCIDENT_RESPONSE_PHASE
from churn.links import mlflow_run_url, model_version_url
from churn.raci import PhaseRoles, RaciMatrix, phase_task_id
from churn.settings import (
    DATA_DOCS_FOLDER,
    DATA_DOCS_INDEX,
    MONITORING_REPORT_FOLDER,
    MONITORING_REPORT_INDEX,
    Settings,
    safe_path_part,
)
from churn.warehouse import (
    WarehouseState,
    configured_warehouse_engine,
    database_date,
    monitoring_table,
    open_scores_table,
    sqlite_file_missing,
    warehouse_state,
)

# Alerts the page shows at most, the newest raised first.
RECENT_ROWS = 40
# The alerts table's columns the page shows (the others, a key and the log's address, are
# for machines), and the one that says when an alert was raised.
ALERT_COLUMNS = (
    "created_at",
    "kind",
    "phase",
    "task_id",
    "try_number",
    "run_id",
    "score_date",
    "to_roles",
    "informed_roles",
    "error",
)
ALERT_RAISED_AT = "created_at"
PIPELINE_DAG = "churn_pipeline"
# Incident Response's task: the check that the day's scores were written (dags/churn_scores_due.py).
SCORES_DUE_DAG = "churn_scores_due"
SCORES_DUE_TASK = "check_scores_written"
# Retraining is a whole churn_pipeline run that monitoring's drift event started.
RETRAINING_PHASE = "Retraining"
# A phase's state when its tasks disagree (the score group's three steps): the worst first.
STATES_WORST_FIRST = (
    "failed",
    "upstream_failed",
    "up_for_retry",
    "up_for_reschedule",
    "restarting",
    # The approval gate waiting for the Accountable role: the phase waits on a person.
    "awaiting_input",
    "running",
    "deferred",
    "queued",
    "scheduled",
    "removed",
    "skipped",
    "success",
)
# Characters of a monitoring or alert cell the table shows; the rest is shown on hover.
CELL_CHARACTERS = 90
# The metrics of the champion's evaluation the page lists, in this order when present.
CHAMPION_METRIC_PREFIX = "test_"


@dataclass(frozen=True)
class TaskRecord:
    """One task instance as Airflow's metadata database holds it."""

    task_id: str
    run_id: str
    run_after: datetime
    state: str | None
    start_date: datetime | None
    end_date: datetime | None
    dag_id: str = PIPELINE_DAG


@dataclass(frozen=True)
class DagRunRecord:
    """One run of ``churn_pipeline`` as Airflow's metadata database holds it (the page reads the
    drift-started ones, run type ``asset_triggered``)."""

    run_id: str
    run_after: datetime
    state: str | None
    start_date: datetime | None
    end_date: datetime | None


@dataclass(frozen=True)
class PhaseRun:
    """A phase of the RACI matrix and its latest run; ``run_id`` is None when it never ran
    (or has no task). ``whole_run``: the phase is a whole run of ``dag_id`` (Retraining)."""

    phase: str
    task_id: str | None
    owner: str
    run_id: str | None = None
    state: str | None = None
    seconds: float | None = None
    dag_id: str = PIPELINE_DAG
    whole_run: bool = False


@dataclass(frozen=True)
class RunReport:
    """A report a task writes into its run folder, and the page's path segment serving it."""

    folder: str
    index: str
    segment: str
    title: str


# The run folder's Great Expectations Data Docs (see churn.data_docs) and monitoring report
# (see churn.monitor).
DATA_REPORT = RunReport(DATA_DOCS_FOLDER, DATA_DOCS_INDEX, "report", "data report")
MONITORING_REPORT = RunReport(MONITORING_REPORT_FOLDER, MONITORING_REPORT_INDEX, "monitoring", "monitoring report")


@dataclass(frozen=True)
class ChampionModel:
    """The registered version the ``champion`` alias names, its evaluation and its model card."""

    name: str
    version: str
    metrics: dict[str, float]
    model_card: str
    mlflow_run_id: str | None
    experiment_id: str | None


@dataclass(frozen=True)
class TableExcerpt:
    """The newest rows of a warehouse table, with its column names."""

    table: str
    columns: list[str]
    rows: list[tuple]


@dataclass(frozen=True)
class FeatureDrift:
    """One model input's monitoring figures: its PSI against the training data (above
    ``threshold``: drifted), its share of unseen categories (None for a numeric input) and its
    missing rate, with the training data's."""

    feature: str
    psi: float | None
    threshold: float | None
    drifted: bool
    unseen_share: float | None = None
    unseen_detail: str | None = None
    missing_rate: float | None = None
    training_missing_rate: float | None = None


@dataclass(frozen=True)
class BandShare:
    band: str
    share: float | None
    training_share: float | None


@dataclass(frozen=True)
class MonitoringFigures:
    """The latest monitored date's figures, one entry per feature, drifted features first."""

    score_date: date
    run_id: str
    model_version: str
    features: list[FeatureDrift]
    prediction_psi: float | None = None
    prediction_psi_threshold: float | None = None
    prediction_drifted: bool = False
    probability_mean: float | None = None
    training_probability_mean: float | None = None
    risk_bands: list[BandShare] = field(default_factory=list)
    realised_roc_auc: float | None = None
    realised_detail: str | None = None


@dataclass(frozen=True)
class ScoresOfDay:
    """The scores of one date by risk band; ``score_date`` None: the table holds no scores."""

    score_date: date | None
    state: WarehouseState


@dataclass(frozen=True)
class RolesPage:
    """Everything the page shows, gathered before rendering."""

    matrix: RaciMatrix
    phases: list[PhaseRun]
    champion: ChampionModel | None
    monitoring: MonitoringFigures | None
    alerts: TableExcerpt | None
    scores: ScoresOfDay
    today: date
    # Airflow runs whose Great Expectations report the page serves.
    reports: frozenset[str] = frozenset()
    # Airflow runs whose monitoring report the page serves.
    monitoring_reports: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PageLinks:
    """Where the page's links go: the Airflow UI (relative to it), MLflow's UI, and the page itself."""

    page_prefix: str
    mlflow_ui: str
    airflow_ui: str = ""


class ReportNotFound(LookupError):
    """The requested report file does not exist in the run's report folder, or lies outside it."""


def phase_state(states: Iterable[str]) -> str | None:
    """One state for a phase whose tasks ended in ``states``: the worst of them."""
    present = set(states)
    return next((state for state in STATES_WORST_FIRST if state in present), next(iter(present), None))


def latest_phase_runs(
    matrix: RaciMatrix, records: Iterable[TaskRecord], drift_runs: Iterable[DagRunRecord] = ()
) -> list[PhaseRun]:
    """Each phase of ``matrix`` with its owner and its latest run.

    A phase that is a ``churn_pipeline`` task: the latest Airflow run in which one of its tasks
    has a state (its steps together, the score group's and the approval gate with evaluate:
    worst state, first start to last end).
    Incident Response: the latest run of ``churn_scores_due``'s check that the scores were
    written. Retraining: the latest ``churn_pipeline`` run that drift started (``drift_runs``),
    with the run's own state and duration."""
    by_phase: dict[tuple[str, str], dict[str, list[TaskRecord]]] = {}
    for record in records:
        if record.state is not None:
            phase = phase_task_id(record.task_id)
            by_phase.setdefault((record.dag_id, phase), {}).setdefault(record.run_id, []).append(record)
    phases = []
    for row in matrix.phases:
        if row.phase == RETRAINING_PHASE:
            phases.append(_latest_drift_run(row, drift_runs))
            continue
        dag_id, task_id = (
            (SCORES_DUE_DAG, SCORES_DUE_TASK)
            if row.phase == INCIDENT_RESPONSE_PHASE
            else (PIPELINE_DAG, row.task_id)
        )
        runs = by_phase.get((dag_id, task_id or ""), {})
        if not runs:
            phases.append(PhaseRun(row.phase, task_id, row.responsible, dag_id=dag_id))
            continue
        tasks = max(runs.values(), key=lambda run: run[0].run_after)
        starts = [task.start_date for task in tasks if task.start_date]
        ends = [task.end_date for task in tasks if task.end_date]
        state = phase_state(task.state for task in tasks if task.state)
        phases.append(
            PhaseRun(row.phase, task_id, row.responsible, tasks[0].run_id, state, _duration(starts, ends), dag_id)
        )
    return phases


def _latest_drift_run(row: PhaseRoles, drift_runs: Iterable[DagRunRecord]) -> PhaseRun:
    latest = max(drift_runs, key=lambda run: run.run_after, default=None)
    if latest is None:
        return PhaseRun(row.phase, None, row.responsible, whole_run=True)
    seconds = _duration(
        [latest.start_date] if latest.start_date else [], [latest.end_date] if latest.end_date else []
    )
    return PhaseRun(row.phase, None, row.responsible, latest.run_id, latest.state, seconds, whole_run=True)


def _duration(starts: list[datetime], ends: list[datetime]) -> float | None:
    """Seconds from the first start to the last end; None before anything ended."""
    return (max(ends) - min(starts)).total_seconds() if starts and ends else None


def champion_model(settings: Settings) -> ChampionModel | None:
    """The champion version with its evaluation's test metrics and model card; None before the
    first promotion."""
    import mlflow

    from churn.tracking import champion_version, use_mlflow

    use_mlflow(settings)
    version = champion_version(settings)
    if version is None:
        return None
    run_id = version.tags.get("source_mlflow_run_id") or version.run_id
    metrics: dict[str, float] = {}
    experiment_id = None
    if run_id:
        run = mlflow.get_run(run_id)
        experiment_id = run.info.experiment_id
        metrics = {
            name: value
            for name, value in sorted(run.data.metrics.items())
            if name.startswith(CHAMPION_METRIC_PREFIX)
        }
    return ChampionModel(
        version.name, str(version.version), metrics, version.description or "", run_id, experiment_id
    )


def recent_rows(
    engine: sa.Engine,
    table_name: str,
    schema: str | None,
    newest_by: str,
    columns: Iterable[str] | None = None,
) -> TableExcerpt | None:
    """The newest ``RECENT_ROWS`` rows of ``table_name`` by its column ``newest_by`` (those of
    ``columns`` it has, else all), or None when the table does not exist."""
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table(table_name, schema=schema):
            return None
        table = sa.Table(table_name, sa.MetaData(), schema=schema, autoload_with=connection)
        wanted = list(columns) if columns is not None else list(table.columns.keys())
        chosen = [table.c[name] for name in wanted if name in table.c]
        query = sa.select(*chosen).order_by(table.c[newest_by].desc()).limit(RECENT_ROWS)
        rows = [tuple(row) for row in connection.execute(query)]
    return TableExcerpt(table_name, [column.name for column in chosen], rows)


def latest_monitoring_rows(engine: sa.Engine, table_name: str, schema: str | None) -> list[dict]:
    """Every ``churn_monitoring`` row of the latest date monitored; none while the table does not exist."""
    table = monitoring_table(sa.MetaData(), table_name, schema)
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table(table_name, schema=schema):
            return []
        latest = sa.select(sa.func.max(table.c.score_date)).scalar_subquery()
        query = sa.select(table).where(table.c.score_date == latest)
        return [dict(row._mapping) for row in connection.execute(query)]


def monitoring_figures(rows: Iterable[dict]) -> MonitoringFigures | None:
    """One date's ``churn_monitoring`` rows (one per metric and feature) as one entry per
    feature, drifted features first (then by PSI, highest first), and the prediction figures;
    None for no rows."""
    rows = list(rows)
    if not rows:
        return None
    by_metric: dict[str, dict[str | None, dict]] = {}
    for row in rows:
        by_metric.setdefault(row["metric"], {})[row["feature"]] = row
    psi, unseen, missing = (
        by_metric.get(name, {}) for name in ("feature_psi", "unseen_category_share", "missing_rate")
    )
    features = [
        FeatureDrift(
            feature=name,
            psi=psi.get(name, {}).get("value"),
            threshold=psi.get(name, {}).get("threshold"),
            drifted=bool(psi.get(name, {}).get("drifted")),
            unseen_share=unseen.get(name, {}).get("value"),
            unseen_detail=unseen.get(name, {}).get("detail"),
            missing_rate=missing.get(name, {}).get("value"),
            training_missing_rate=missing.get(name, {}).get("reference_value"),
        )
        for name in sorted({name for metric in (psi, unseen, missing) for name in metric if name})
    ]
    features.sort(key=lambda drift: (not drift.drifted, -(drift.psi if drift.psi is not None else -1.0)))
    prediction = by_metric.get("prediction_psi", {}).get(None, {})
    mean = by_metric.get("churn_probability_mean", {}).get(None, {})
    realised = by_metric.get("realised_roc_auc", {}).get(None, {})
    first = rows[0]
    return MonitoringFigures(
        score_date=database_date(first["score_date"]),
        run_id=first["run_id"],
        model_version=first["model_version"],
        features=features,
        prediction_psi=prediction.get("value"),
        prediction_psi_threshold=prediction.get("threshold"),
        prediction_drifted=bool(prediction.get("drifted")),
        probability_mean=mean.get("value"),
        training_probability_mean=mean.get("reference_value"),
        risk_bands=[
            BandShare(band, row["value"], row["reference_value"])
            for band, row in by_metric.get("risk_band_share", {}).items()
        ],
        realised_roc_auc=realised.get("value"),
        realised_detail=realised.get("detail"),
    )


def scores_of_day(settings: Settings, today: date) -> ScoresOfDay:
    """The scores of ``today`` by risk band, or of the latest date scored when today has none."""
    if sqlite_file_missing(settings.warehouse_url):
        return ScoresOfDay(None, WarehouseState(0, [], None, {}))
    with open_scores_table(settings) as (engine, table), engine.connect() as connection:
        if not sa.inspect(connection).has_table(table.name, schema=table.schema):
            return ScoresOfDay(None, WarehouseState(0, [], None, {}))
        scored_today = connection.execute(
            sa.select(sa.func.count()).select_from(table).where(table.c.score_date == today)
        ).scalar()
        latest = today if scored_today else connection.execute(sa.select(sa.func.max(table.c.score_date))).scalar()
    if latest is None:
        return ScoresOfDay(None, WarehouseState(0, [], None, {}))
    latest = database_date(latest)
    return ScoresOfDay(latest, warehouse_state(settings, latest))


def local_runs_dir(settings: Settings) -> Path | None:
    """The run folders' base on this machine's disk, or None when they are on object storage."""
    if settings.runs_base is None:
        return settings.state_dir / "runs"
    if "://" in settings.runs_base and not settings.runs_base.startswith("file://"):
        return None
    return Path(settings.runs_base.removeprefix("file://")).expanduser().resolve()


def run_report_folder(runs_dir: Path, airflow_run_id: str, report: RunReport = DATA_REPORT) -> Path | None:
    """The folder of an Airflow run's ``report``, or None if the run wrote none."""
    folders = sorted(runs_dir.glob(f"score_date=*/run_id={safe_path_part(airflow_run_id)}/{report.folder}"))
    return folders[-1] if folders and (folders[-1] / report.index).is_file() else None


def report_file(runs_dir: Path, airflow_run_id: str, relative_path: str, report: RunReport = DATA_REPORT) -> Path:
    """A file of the run's ``report``, refused (:class:`ReportNotFound`) unless it lies inside the
    report's folder: ``..``, absolute paths and links out of the folder are never followed."""
    folder = run_report_folder(runs_dir, airflow_run_id, report)
    if folder is None:
        raise ReportNotFound(f"run {airflow_run_id!r} has no {report.title}")
    root = folder.resolve()
    target = (root / relative_path).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise ReportNotFound(f"{relative_path!r} is not a file of run {airflow_run_id!r}'s {report.title}")
    return target


def report_url(page_prefix: str, airflow_run_id: str, report: RunReport = DATA_REPORT) -> str:
    """The page's address of an Airflow run's ``report``."""
    return f"{page_prefix}/runs/{quote(airflow_run_id, safe='')}/{report.segment}/{report.index}"


def airflow_run_url(airflow_ui: str, airflow_run_id: str, dag_id: str = PIPELINE_DAG) -> str:
    return f"{airflow_ui}/dags/{dag_id}/runs/{quote(airflow_run_id, safe='')}"


STYLE = """
:root { --ink: #1f2933; --muted: #52606d; --line: #d9e2ec; --soft: #f5f7fa; --accent: #017cee; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color: var(--ink); background: #fff; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
p.lead, .muted { color: var(--muted); }
table { border-collapse: collapse; width: 100%; margin: 6px 0; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--soft); font-weight: 600; white-space: nowrap; }
td.run { white-space: nowrap; font-size: 13px; }
td.number { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
a { color: var(--accent); }
.state { display: inline-block; padding: 1px 9px; border-radius: 10px; font-size: 13px; font-weight: 600;
  background: #e4e7eb; color: var(--ink); white-space: nowrap; }
.state-success { background: #d3f9d8; color: #1b5e20; }
.state-failed, .state-upstream_failed { background: #ffe3e3; color: #a61b1b; }
.state-running, .state-queued, .state-scheduled { background: #d0ebff; color: #0b4f8a; }
.state-skipped { background: #fce4ec; color: #880e4f; }
.state-up_for_retry { background: #fff3bf; color: #7a5b00; }
.columns { display: grid; grid-template-columns: 1fr 1fr; gap: 28px; }
.bar { height: 14px; background: var(--accent); border-radius: 3px; min-width: 2px; }
pre.card { white-space: pre-wrap; background: var(--soft); border: 1px solid var(--line); padding: 12px;
  font-size: 13px; max-height: 420px; overflow: auto; }
#raci td:last-child { width: 34%; }
.empty { padding: 10px 12px; background: var(--soft); border-radius: 4px; color: var(--muted); }
.monitoring { display: grid; grid-template-columns: 3fr 2fr; gap: 28px; align-items: start; }
tr.drifted td { background: #fff0f0; }
tr.drifted td:first-child { box-shadow: inset 4px 0 #c92a2a; font-weight: 600; }
.flag { display: inline-block; margin-left: 6px; padding: 0 7px; border-radius: 9px; font-size: 12px;
  font-weight: 600; background: #ffe3e3; color: #a61b1b; }
td .detail { display: block; font-size: 12px; color: var(--muted); }
#alerts td { font-size: 14px; }
#alerts th { white-space: normal; }
#alerts td.identifier { font-size: 13px; overflow-wrap: anywhere; min-width: 11em; }
#alerts td.raised { white-space: nowrap; }
"""


def _text(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _cell(value: object) -> str:
    """A table cell's value: numbers to four significant digits, long text shortened (in full
    on hover)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    text = "" if value is None else str(value)
    if len(text) <= CELL_CHARACTERS:
        return html.escape(text)
    return f'<span title="{html.escape(text, quote=True)}">{html.escape(text[: CELL_CHARACTERS - 1])}…</span>'


def _link(url: str, label: str) -> str:
    return f'<a href="{html.escape(url, quote=True)}">{html.escape(label)}</a>'


def _state(state: str | None) -> str:
    if state is None:
        return '<span class="state">not run</span>'
    return f'<span class="state state-{_text(state)}">{_text(state.replace("_", " "))}</span>'


def _seconds(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _empty(text: str) -> str:
    return f'<p class="empty">{html.escape(text)}</p>'


def _phase_links(run: PhaseRun, page: RolesPage, links: PageLinks) -> list[str]:
    if run.run_id and run.task_id == "validate" and run.run_id in page.reports:
        return [_link(report_url(links.page_prefix, run.run_id), DATA_REPORT.title)]
    if run.run_id and run.task_id == "monitor" and run.run_id in page.monitoring_reports:
        return [_link(report_url(links.page_prefix, run.run_id, MONITORING_REPORT), MONITORING_REPORT.title)]
    return []


def _task_label(run: PhaseRun) -> str:
    """What a phase's run is: its task (and its DAG, beside churn_pipeline), a whole
    drift-started run, or no task yet."""
    if run.whole_run:
        return f"drift-started run of <code>{_text(run.dag_id)}</code>"
    if run.task_id is None:
        return '<span class="muted">no task yet</span>'
    dag = f' <span class="muted">in {_text(run.dag_id)}</span>' if run.dag_id != PIPELINE_DAG else ""
    return f"<code>{_text(run.task_id)}</code>{dag}"


def render_phases(page: RolesPage, links: PageLinks) -> str:
    rows = []
    for run in page.phases:
        airflow_run = (
            _link(airflow_run_url(links.airflow_ui, run.run_id, run.dag_id), run.run_id) if run.run_id else ""
        )
        ran = run.task_id or run.whole_run
        rows.append(
            f"<tr><td>{_text(run.phase)}</td><td>{_task_label(run)}</td><td>{_text(run.owner)}</td>"
            f'<td>{_state(run.state) if ran else ""}</td><td class="number">{_seconds(run.seconds)}</td>'
            f'<td class="run">{airflow_run}</td><td>{" · ".join(_phase_links(run, page, links))}</td></tr>'
        )
    return (
        '<table id="phases"><thead><tr><th>phase</th><th>task</th><th>owner (Responsible)</th><th>state</th>'
        "<th>duration</th><th>latest Airflow run</th><th>links</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def render_matrix_table(matrix: RaciMatrix, phases: list[PhaseRun]) -> str:
    label = {run.phase: _task_label(run) for run in phases}
    rows = "".join(
        f"<tr><td>{_text(row.phase)}</td><td>{label[row.phase]}</td>"
        f"<td>{_text(row.responsible)}</td>"
        f"<td>{_text(row.accountable)}</td><td>{_text(', '.join(row.consulted))}</td>"
        f"<td>{_text(', '.join(row.informed))}</td><td>{_text(row.hands_off)}</td></tr>"
        for row in matrix.phases
    )
    handles = ", ".join(
        f"{_text(role)} <code>{_text(entry.handle)}</code>" for role, entry in matrix.roles.items()
    )
    return (
        '<table id="raci"><thead><tr><th>phase</th><th>task</th><th>Responsible</th><th>Accountable</th>'
        "<th>Consulted</th><th>Informed</th><th>hands off</th></tr></thead><tbody>"
        + rows
        + f'</tbody></table><p class="muted">Reviewers: {handles}.</p>'
    )


def render_champion(champion: ChampionModel | None, links: PageLinks) -> str:
    if champion is None:
        return _empty("No champion yet: no model has passed evaluation and been promoted.")
    metrics = "".join(
        f'<tr><td>{_text(name)}</td><td class="number">{value:.4f}</td></tr>'
        for name, value in champion.metrics.items()
    )
    found = [_link(model_version_url(links.mlflow_ui, champion.name, champion.version), "model version in MLflow")]
    if champion.mlflow_run_id and champion.experiment_id:
        found.append(
            _link(mlflow_run_url(links.mlflow_ui, champion.experiment_id, champion.mlflow_run_id), "MLflow run")
        )
    return (
        f"<p><strong>{_text(champion.name)} version {_text(champion.version)}</strong> · {' · '.join(found)}</p>"
        '<div class="columns"><div><table id="champion-metrics"><thead><tr><th>test metric</th><th>value</th></tr>'
        f"</thead><tbody>{metrics}</tbody></table></div>"
        f'<div><pre class="card" id="model-card">{_text(champion.model_card or "(no model card)")}</pre>'
        "</div></div>"
    )


def render_scores(scores: ScoresOfDay, today: date) -> str:
    state = scores.state
    if scores.score_date is None or not state.rows:
        return _empty("No scores yet: the warehouse holds no scored customers.")
    when = "today" if scores.score_date == today else f"the latest scored date; none for today ({today})"
    widest = max(state.risk_bands.values())
    rows = "".join(
        f'<tr><td>{_text(band)}</td><td class="number">{count:,}</td>'
        f'<td class="number">{count / state.rows:.1%}</td>'
        f'<td style="width:55%"><div class="bar" style="width:{100 * count / widest:.1f}%"></div></td></tr>'
        for band, count in state.risk_bands.items()
    )
    return (
        f"<p>{state.rows:,} customers scored for <strong>{scores.score_date}</strong> ({_text(when)}) by model "
        f"version {_text(', '.join(state.model_versions))}; mean churn probability "
        f"{state.mean_probability:.3f}.</p>"
        '<table id="risk-bands"><thead><tr><th>risk band</th><th>customers</th><th>share</th><th></th></tr>'
        "</thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _raised_at(value: object) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if isinstance(value, datetime) else _text(value)


def render_alerts(alerts: TableExcerpt | None) -> str:
    """The latest alerts, newest raised first: what happened, to whom it went, where, and the error's start."""
    if alerts is None:
        return _empty("No alerts: none has ever been raised.")
    if not alerts.rows:
        return _empty("No alerts.")
    rows = []
    for values in alerts.rows:
        alert = dict(zip(alerts.columns, values, strict=True))
        what = _text(str(alert["kind"]).replace("_", " "))
        if alert.get("task_id"):
            what += f" of <code>{_text(alert['task_id'])}</code>"
        if alert.get("try_number") is not None:
            what += f" (try {_text(alert['try_number'])})"
        rows.append(
            f'<tr><td class="raised">{_raised_at(alert[ALERT_RAISED_AT])}</td><td>{what}</td>'
            f"<td>{_text(alert['phase'])}</td><td>{_text(alert['to_roles'].replace(',', ', '))}</td>"
            f"<td>{_text(alert['informed_roles'].replace(',', ', '))}</td>"
            f'<td class="identifier">{_text(alert["run_id"])}<span class="detail">score date '
            f"{_text(alert['score_date'] or 'unknown')}</span></td><td>{_cell(alert['error'])}</td></tr>"
        )
    count = f"{len(rows)} alert{'' if len(rows) == 1 else 's'}"
    return (
        f'<p class="muted">{count} of <code>{_text(alerts.table)}</code>, the newest raised first.</p>'
        '<table id="alerts"><thead><tr><th>raised (UTC)</th><th>alert</th><th>phase</th>'
        "<th>to (Responsible, Accountable)</th><th>informed</th><th>run</th><th>error</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _share(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _figure(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def render_monitoring(page: RolesPage, links: PageLinks) -> str:
    """The latest monitored date: one row per feature (drifted ones first, highlighted), the
    predictions' figures beside, and the run's monitoring report."""
    figures = page.monitoring
    if figures is None:
        return _empty("No monitoring yet: no monitoring figures have been recorded.")
    drifted = [feature for feature in figures.features if feature.drifted]
    threshold = next((feature.threshold for feature in figures.features if feature.threshold is not None), None)
    found = [_link(airflow_run_url(links.airflow_ui, figures.run_id), figures.run_id)]
    if figures.run_id in page.monitoring_reports:
        found.insert(
            0, _link(report_url(links.page_prefix, figures.run_id, MONITORING_REPORT), "monitoring report")
        )
    summary = (
        f"<p>Score date <strong>{figures.score_date}</strong>, model version {_text(figures.model_version)}: "
        f"<strong>{len(drifted)} of {len(figures.features)}</strong> features drifted"
        + (f" (PSI above {threshold:g})" if threshold is not None else "")
        + f"{'; the predictions drifted' if figures.prediction_drifted else ''}. {' · '.join(found)}</p>"
    )
    feature_rows = "".join(
        f'<tr class="{"drifted" if feature.drifted else ""}"><td>{_text(feature.feature)}'
        f"{' <span class=flag>drifted</span>' if feature.drifted else ''}</td>"
        f'<td class="number">{_figure(feature.psi)}</td>'
        f'<td class="number">{_share(feature.unseen_share)}'
        f"{f'<span class=detail>{_text(feature.unseen_detail)}</span>' if feature.unseen_detail else ''}</td>"
        f'<td class="number">{_share(feature.missing_rate)}</td>'
        f'<td class="number">{_share(feature.training_missing_rate)}</td></tr>'
        for feature in figures.features
    )
    features = (
        '<table id="monitoring-features"><thead><tr><th>feature</th><th>PSI</th><th>unseen categories</th>'
        f"<th>missing</th><th>missing in training</th></tr></thead><tbody>{feature_rows}</tbody></table>"
    )
    limit = figures.prediction_psi_threshold
    prediction_rows = [
        f'<tr class="{"drifted" if figures.prediction_drifted else ""}"><td>prediction PSI'
        f"{' <span class=flag>drifted</span>' if figures.prediction_drifted else ''}</td>"
        f'<td class="number">{_figure(figures.prediction_psi)}</td>'
        f'<td class="number">{"" if limit is None else f"threshold {limit:g}"}</td></tr>',
        f'<tr><td>mean churn probability</td><td class="number">{_figure(figures.probability_mean)}</td>'
        f'<td class="number">{_figure(figures.training_probability_mean)}</td></tr>',
        *(
            f'<tr><td>risk band {_text(band.band)}</td><td class="number">{_share(band.share)}</td>'
            f'<td class="number">{_share(band.training_share)}</td></tr>'
            for band in figures.risk_bands
        ),
    ]
    if figures.realised_roc_auc is not None:
        prediction_rows.append(
            f'<tr><td>realised ROC AUC<span class="detail">{_text(figures.realised_detail)}</span></td>'
            f'<td class="number">{_figure(figures.realised_roc_auc)}</td><td></td></tr>'
        )
    predictions = (
        '<table id="monitoring-predictions"><thead><tr><th>predictions</th><th>value</th><th>training</th></tr>'
        f"</thead><tbody>{''.join(prediction_rows)}</tbody></table>"
    )
    return f'{summary}<div class="monitoring"><div>{features}</div><div>{predictions}</div></div>'


def render_roles_page(page: RolesPage, links: PageLinks) -> str:
    """The whole page as HTML: styled inline, with no script and nothing loaded from elsewhere."""
    sections = {
        "Latest run of each phase": render_phases(page, links),
        "Roles (RACI matrix)": render_matrix_table(page.matrix, page.phases),
        "Champion model": render_champion(page.champion, links),
        "Scores by risk band": render_scores(page.scores, page.today),
        "Monitoring": render_monitoring(page, links),
        "Alerts": render_alerts(page.alerts),
    }
    body = "".join(
        f"<section><h2>{html.escape(title)}</h2>{content}</section>" for title, content in sections.items()
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Churn pipeline: roles and runs</title><style>{STYLE}</style></head><body><main>"
        "<h1>Churn pipeline: roles and runs</h1>"
        f'<p class="lead">Who owns each phase of <code>churn_pipeline</code>, how its latest run went, and what '
        f"the pipeline has produced. As of {page.today}.</p>{body}</main></body></html>"
    )


def gather_roles_page(
    matrix: RaciMatrix,
    records: Iterable[TaskRecord],
    settings: Settings,
    today: date,
    drift_runs: Iterable[DagRunRecord] = (),
) -> RolesPage:
    """Everything the page shows: ``records`` are the DAGs' task instances and ``drift_runs``
    the drift-started pipeline runs (Airflow's metadata); the rest is read from the warehouse
    (the monitoring and alerts tables pipeline.yaml names; none while a table does not exist),
    the MLflow registry and the run folders."""
    phases = latest_phase_runs(matrix, records, drift_runs)
    monitoring = alerts = None
    if not sqlite_file_missing(settings.warehouse_url):
        engine = configured_warehouse_engine(settings)
        schema = settings.config.warehouse.schema_name
        try:
            monitoring = monitoring_figures(
                latest_monitoring_rows(engine, settings.config.monitoring.table, schema)
            )
            alerts = recent_rows(engine, settings.config.alerts.table, schema, ALERT_RAISED_AT, ALERT_COLUMNS)
        finally:
            engine.dispose()
    runs_dir = local_runs_dir(settings)

    def with_report(run_ids: Iterable[str | None], report: RunReport) -> frozenset[str]:
        if runs_dir is None:
            return frozenset()
        return frozenset(run for run in run_ids if run and run_report_folder(runs_dir, run, report) is not None)

    monitored = [run.run_id for run in phases if run.task_id == "monitor"] + [
        monitoring.run_id if monitoring else None
    ]
    return RolesPage(
        matrix,
        phases,
        champion_model(settings),
        monitoring,
        alerts,
        scores_of_day(settings, today),
        today,
        with_report((run.run_id for run in phases if run.task_id == "validate"), DATA_REPORT),
        with_report(monitored, MONITORING_REPORT),
    )


def mlflow_run_page(settings: Settings, mlflow_ui: str, mlflow_run_id: str) -> str:
    """The MLflow run's page (its experiment looked up in the tracking store)."""
    import mlflow

    from churn.tracking import use_mlflow

    use_mlflow(settings)
    return mlflow_run_url(mlflow_ui, mlflow.get_run(mlflow_run_id).info.experiment_id, mlflow_run_id)
