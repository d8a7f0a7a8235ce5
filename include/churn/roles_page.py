"""The roles page: who owns each phase of the pipeline and how its latest run went, the champion
model, the latest monitoring figures and alerts, and the scores by risk band, as one HTML page.

The Airflow UI plugin (``plugins/churn_roles.py``) serves it behind Airflow's login; this module
gathers and renders and never imports Airflow: the plugin hands it the task instances it reads
from Airflow's metadata database as plain records. The page loads nothing from the internet:
its style is inline, and each run's Great Expectations report is served through the page.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa

from churn.links import mlflow_run_url, model_version_url
from churn.raci import RaciMatrix
from churn.settings import Settings, safe_path_part
from churn.warehouse import (
    WarehouseState,
    configured_warehouse_engine,
    database_date,
    open_scores_table,
    sqlite_file_missing,
    warehouse_state,
)

# Rows of each of those tables the page shows at most, newest first.
RECENT_ROWS = 40
# The run folder's Great Expectations Data Docs (see churn.data_docs).
REPORT_FOLDER = "data_docs"
REPORT_INDEX = "index.html"
# A phase's state when its tasks disagree (the score group's three steps): the worst first.
STATES_WORST_FIRST = (
    "failed",
    "upstream_failed",
    "up_for_retry",
    "up_for_reschedule",
    "restarting",
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


@dataclass(frozen=True)
class PhaseRun:
    """A phase of the RACI matrix and its latest run; ``run_id`` is None when it never ran
    (or has no task yet)."""

    phase: str
    task_id: str | None
    owner: str
    run_id: str | None = None
    state: str | None = None
    seconds: float | None = None


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
    monitoring: TableExcerpt | None
    alerts: TableExcerpt | None
    scores: ScoresOfDay
    today: date
    # Airflow runs whose Great Expectations report the page serves.
    reports: frozenset[str] = frozenset()


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


def latest_phase_runs(matrix: RaciMatrix, records: Iterable[TaskRecord]) -> list[PhaseRun]:
    """Each phase of ``matrix`` with its owner and its latest run: the latest Airflow run in which
    one of its tasks has a state (the score group's steps together: worst state, first start to
    last end)."""
    by_phase: dict[str, dict[str, list[TaskRecord]]] = {}
    for record in records:
        if record.state is not None:
            phase = record.task_id.split(".", 1)[0]
            by_phase.setdefault(phase, {}).setdefault(record.run_id, []).append(record)
    phases = []
    for row in matrix.phases:
        runs = by_phase.get(row.task_id or "", {})
        if not runs:
            phases.append(PhaseRun(row.phase, row.task_id, row.responsible))
            continue
        tasks = max(runs.values(), key=lambda run: run[0].run_after)
        starts = [task.start_date for task in tasks if task.start_date]
        ends = [task.end_date for task in tasks if task.end_date]
        seconds = (max(ends) - min(starts)).total_seconds() if starts and ends else None
        state = phase_state(task.state for task in tasks if task.state)
        phases.append(PhaseRun(row.phase, row.task_id, row.responsible, tasks[0].run_id, state, seconds))
    return phases


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
    engine: sa.Engine, table_name: str, schema: str | None = None, *, latest_only: bool = False
) -> TableExcerpt | None:
    """The newest ``RECENT_ROWS`` rows of ``table_name`` by its first date or time column (with
    ``latest_only``, the rows of that column's latest value: a date's figures), or None when the
    table does not exist."""
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table(table_name, schema=schema):
            return None
        table = sa.Table(table_name, sa.MetaData(), schema=schema, autoload_with=connection)
        query = sa.select(table).limit(RECENT_ROWS)
        timed = [column for column in table.columns if isinstance(column.type, (sa.Date, sa.DateTime))]
        if timed:
            query = query.order_by(timed[0].desc())
            if latest_only:
                latest = sa.select(sa.func.max(timed[0])).scalar_subquery()
                query = query.where(sa.or_(timed[0] == latest, latest.is_(None)))  # no dates: every row
        rows = [tuple(row) for row in connection.execute(query)]
    return TableExcerpt(table_name, [column.name for column in table.columns], rows)


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


def run_report_folder(runs_dir: Path, airflow_run_id: str) -> Path | None:
    """The Great Expectations report folder of an Airflow run, or None if it wrote none."""
    folders = sorted(runs_dir.glob(f"score_date=*/run_id={safe_path_part(airflow_run_id)}/{REPORT_FOLDER}"))
    return folders[-1] if folders and (folders[-1] / REPORT_INDEX).is_file() else None


def report_file(runs_dir: Path, airflow_run_id: str, relative_path: str) -> Path:
    """A file of the run's report, refused (:class:`ReportNotFound`) unless it lies inside the
    report folder: ``..``, absolute paths and links out of the folder are never followed."""
    folder = run_report_folder(runs_dir, airflow_run_id)
    if folder is None:
        raise ReportNotFound(f"run {airflow_run_id!r} has no data report")
    root = folder.resolve()
    target = (root / relative_path).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise ReportNotFound(f"{relative_path!r} is not a file of run {airflow_run_id!r}'s data report")
    return target


def report_url(page_prefix: str, airflow_run_id: str) -> str:
    """The page's address of an Airflow run's data report."""
    return f"{page_prefix}/runs/{quote(airflow_run_id, safe='')}/report/{REPORT_INDEX}"


def airflow_run_url(airflow_ui: str, airflow_run_id: str) -> str:
    return f"{airflow_ui}/dags/churn_pipeline/runs/{quote(airflow_run_id, safe='')}"


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
.excerpt { max-height: 440px; overflow: auto; border: 1px solid var(--line); }
.excerpt table { margin: 0; }
.excerpt td { overflow-wrap: anywhere; min-width: 7em; }
#raci td:last-child { width: 34%; }
.excerpt th { position: sticky; top: 0; }
.empty { padding: 10px 12px; background: var(--soft); border-radius: 4px; color: var(--muted); }
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
        return [_link(report_url(links.page_prefix, run.run_id), "data report")]
    return []


def render_phases(page: RolesPage, links: PageLinks) -> str:
    rows = []
    for run in page.phases:
        task = f"<code>{_text(run.task_id)}</code>" if run.task_id else '<span class="muted">no task yet</span>'
        airflow_run = _link(airflow_run_url(links.airflow_ui, run.run_id), run.run_id) if run.run_id else ""
        rows.append(
            f"<tr><td>{_text(run.phase)}</td><td>{task}</td><td>{_text(run.owner)}</td>"
            f'<td>{_state(run.state) if run.task_id else ""}</td><td class="number">{_seconds(run.seconds)}</td>'
            f'<td class="run">{airflow_run}</td><td>{" · ".join(_phase_links(run, page, links))}</td></tr>'
        )
    return (
        '<table id="phases"><thead><tr><th>phase</th><th>task</th><th>owner (Responsible)</th><th>state</th>'
        "<th>duration</th><th>latest Airflow run</th><th>links</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def render_matrix_table(matrix: RaciMatrix) -> str:
    rows = "".join(
        f"<tr><td>{_text(row.phase)}</td><td>{_text(row.task_id or 'no task yet')}</td>"
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


def render_excerpt(excerpt: TableExcerpt | None, absent: str, empty: str, element_id: str) -> str:
    """A table's rows, as readable as a table of unknown columns can be."""
    if excerpt is None:
        return _empty(absent)
    if not excerpt.rows:
        return _empty(empty)
    # Columns empty on every row are left out; one value on every row is said once above them.
    blank = {index for index in range(len(excerpt.columns)) if all(row[index] is None for row in excerpt.rows)}
    same = [
        index
        for index in range(len(excerpt.columns))
        if index not in blank and len(excerpt.rows) > 1 and len({row[index] for row in excerpt.rows}) == 1
    ]
    shown = [index for index in range(len(excerpt.columns)) if index not in same and index not in blank]
    common = " · ".join(
        f"{_text(excerpt.columns[index])} <strong>{_cell(excerpt.rows[0][index])}</strong>" for index in same
    )
    head = "".join(f"<th>{_text(excerpt.columns[index])}</th>" for index in shown)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(row[index])}</td>" for index in shown) + "</tr>" for row in excerpt.rows
    )
    rows = f"{len(excerpt.rows)} row{'' if len(excerpt.rows) == 1 else 's'}"
    caption = f'<p class="muted">{rows} of <code>{_text(excerpt.table)}</code>, newest first'
    caption += f"; on every row: {common}</p>" if common else "</p>"
    return (
        f'{caption}<div class="excerpt"><table id="{element_id}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def render_roles_page(page: RolesPage, links: PageLinks) -> str:
    """The whole page as HTML: styled inline, with no script and nothing loaded from elsewhere."""
    sections = {
        "Latest run of each phase": render_phases(page, links),
        "Roles (RACI matrix)": render_matrix_table(page.matrix),
        "Champion model": render_champion(page.champion, links),
        "Scores by risk band": render_scores(page.scores, page.today),
        "Monitoring": render_excerpt(
            page.monitoring,
            "No monitoring yet: no monitoring figures have been recorded.",
            "No monitoring figures yet.",
            "monitoring",
        ),
        "Alerts": render_excerpt(page.alerts, "No alerts: none has ever been raised.", "No alerts.", "alerts"),
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
    matrix: RaciMatrix, records: Iterable[TaskRecord], settings: Settings, today: date
) -> RolesPage:
    """Everything the page shows: ``records`` are the DAG's task instances (Airflow's metadata),
    the rest is read from the warehouse (the monitoring and alerts tables pipeline.yaml names,
    whatever their columns; None while a table does not exist), the MLflow registry and the
    run folders."""
    phases = latest_phase_runs(matrix, records)
    monitoring = alerts = None
    if not sqlite_file_missing(settings.warehouse_url):
        engine = configured_warehouse_engine(settings)
        schema = settings.config.warehouse.schema_name
        try:
            monitoring = recent_rows(engine, settings.config.monitoring.table, schema, latest_only=True)
            alerts = recent_rows(engine, settings.config.alerts.table, schema)
        finally:
            engine.dispose()
    runs_dir = local_runs_dir(settings)
    reports = frozenset(
        run.run_id
        for run in phases
        if run.run_id and runs_dir is not None and run_report_folder(runs_dir, run.run_id) is not None
    )
    return RolesPage(
        matrix,
        phases,
        champion_model(settings),
        monitoring,
        alerts,
        scores_of_day(settings, today),
        today,
        reports,
    )


def mlflow_run_page(settings: Settings, mlflow_ui: str, mlflow_run_id: str) -> str:
    """The MLflow run's page (its experiment looked up in the tracking store)."""
    import mlflow

    from churn.tracking import use_mlflow

    use_mlflow(settings)
    return mlflow_run_url(mlflow_ui, mlflow.get_run(mlflow_run_id).info.experiment_id, mlflow_run_id)
