"""Incident response by the RACI matrix: who is told when a task fails or the scores are late,
and the local record of every alert.

An alert goes to its phase's Responsible and Accountable roles (``to``) and informs its
Informed ones (``informed``); Consulted roles are not written to. Every alert is kept twice,
so it can be seen and tested with no outside service: a line in
``<CHURN_HOME>/alerts/alerts.jsonl`` and a row of the warehouse table ``churn_alerts``. A
callback that runs twice records (and sends) its alert once: the row's key is the alert's
kind, run, task, map index and try. Sending alerts to people (e-mail, webhooks) is Airflow's
part, through its notifiers (``churn.airflow_alerts``); this module never imports Airflow.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from sqlalchemy.dialects import postgresql, sqlite

from churn.raci import PhaseRoles, RaciMatrix, load_matrix, phase_task_id
from churn.settings import AlertRoute, Settings, redact_text, redact_url

logger = logging.getLogger(__name__)
ALERTS_FILE = Path("alerts") / "alerts.jsonl"
# The phase that answers for a task the matrix has no row for, and checks the scores' deadline.
INCIDENT_RESPONSE_PHASE = "Incident Response"
DEADLINE_PHASE_TASK = "score"
AlertKind = Literal["task_failure", "deadline_missed"]


class Alert(BaseModel):
    """One message about one incident, addressed per the matrix."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: AlertKind
    dag_id: str
    run_id: str
    score_date: date | None
    task_id: str | None
    map_index: int | None = None
    phase: str
    try_number: int | None
    # The first lines of the error, passwords masked; for a missed deadline, what was due.
    error: str
    log_url: str | None
    to: tuple[str, ...]
    informed: tuple[str, ...]
    created_at: datetime

    @property
    def key(self) -> str:
        """The same incident, told again (a callback run twice), has the same key."""
        parts = (self.kind, self.dag_id, self.run_id, self.task_id, self.map_index, self.try_number)
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]

    def subject(self) -> str:
        if self.kind == "deadline_missed":
            return f"[churn] scores for {self.score_date} missed their deadline ({self.dag_id} {self.run_id})"
        where = self.task_id if self.map_index is None else f"{self.task_id}[{self.map_index}]"
        return f"[churn] {where} failed (try {self.try_number}) in {self.dag_id} {self.run_id}"

    def text(self) -> str:
        """The message in words: what happened, who must act, who is informed, the error, the log."""
        lines = [
            self.subject(),
            f"Phase: {self.phase}",
            f"To (Responsible, Accountable): {', '.join(self.to)}",
            f"Informed: {', '.join(self.informed) or 'nobody'}",
            f"Score date: {self.score_date or 'unknown'}",
        ]
        if self.log_url:
            lines.append(f"Log: {self.log_url}")
        return "\n".join(lines) + "\n\n" + self.error


def phase_for_task(task_id: str, matrix: RaciMatrix | None = None) -> PhaseRoles:
    """The matrix row that answers for ``task_id``: a step (``score.partition``, ``approve``)
    belongs to its phase (see :func:`~churn.raci.phase_task_id`); a task the matrix has no row
    for, to Incident Response."""
    matrix = matrix or load_matrix()
    phase = matrix.tasks().get(phase_task_id(task_id))
    return phase or incident_response(matrix)


def incident_response(matrix: RaciMatrix | None = None) -> PhaseRoles:
    """The matrix's Incident Response row."""
    return next(row for row in (matrix or load_matrix()).phases if row.phase == INCIDENT_RESPONSE_PHASE)


def addressees(row: PhaseRoles) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Who must act (Responsible, then Accountable, once each) and who is informed (the
    Informed roles that are not told already). Consulted roles are not written to."""
    to = tuple(dict.fromkeys((row.responsible, row.accountable)))
    return to, tuple(role for role in dict.fromkeys(row.informed) if role not in to)


def error_head(error: BaseException | str, lines: int) -> str:
    """The first ``lines`` lines of ``error`` (its type named), passwords masked."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    kept = redact_text(text).splitlines()
    head = "\n".join(kept[:lines])
    return head + (f"\n… ({len(kept) - lines} more lines in the log)" if len(kept) > lines else "")


def task_failure_alert(
    *,
    dag_id: str,
    run_id: str,
    task_id: str,
    map_index: int | None,
    try_number: int,
    error: BaseException | str,
    log_url: str | None,
    score_date: date | None,
    error_lines: int,
    now: datetime | None = None,
) -> Alert:
    """The alert for a failed task, addressed to its phase's roles."""
    row = phase_for_task(task_id)
    to, informed = addressees(row)
    return Alert(
        kind="task_failure",
        dag_id=dag_id,
        run_id=run_id,
        score_date=score_date,
        task_id=task_id,
        map_index=None if map_index is None or map_index < 0 else map_index,
        phase=row.phase,
        try_number=try_number,
        error=error_head(error, error_lines),
        log_url=log_url,
        to=to,
        informed=informed,
        created_at=now or datetime.now(UTC),
    )


def deadline_missed_alert(
    *,
    dag_id: str,
    run_id: str,
    score_date: date | None,
    deadline: datetime,
    log_url: str | None,
    now: datetime | None = None,
) -> Alert:
    """The alert for a run whose scores were not written by ``deadline``, addressed to the score phase's roles."""
    row = load_matrix().tasks()[DEADLINE_PHASE_TASK]
    to, informed = addressees(row)
    return Alert(
        kind="deadline_missed",
        dag_id=dag_id,
        run_id=run_id,
        score_date=score_date,
        task_id=None,
        phase=row.phase,
        try_number=None,
        error=f"The scores for {score_date} were due by {deadline.isoformat()}; the warehouse holds none for it.",
        log_url=log_url,
        to=to,
        informed=informed,
        created_at=now or datetime.now(UTC),
    )


def missing_scores_alert(
    settings: Settings, *, dag_id: str, run_id: str, score_date: date, deadline: datetime, log_url: str | None
) -> Alert | None:
    """The deadline alert when the scores table holds no rows for ``score_date`` at ``deadline``, else None."""
    from churn.warehouse import warehouse_state

    if warehouse_state(settings, score_date).rows:
        return None
    return deadline_missed_alert(
        dag_id=dag_id, run_id=run_id, score_date=score_date, deadline=deadline, log_url=log_url
    )


def scores_due_schedule(scores_due: time) -> str:
    """The daily cron expression (UTC) of the check that the day's scores were written by ``scores_due``."""
    return f"{scores_due.minute} {scores_due.hour} * * *"


def recipients(roles: tuple[str, ...], routes: dict[str, AlertRoute]) -> list[str]:
    """The e-mail addresses of ``roles``, each once, in order."""
    return list(dict.fromkeys(address for role in roles if role in routes for address in routes[role].email))


def alerts_table(metadata: sa.MetaData, name: str, schema: str | None) -> sa.Table:
    """The warehouse table of alerts: one row per incident told."""
    return sa.Table(
        name,
        metadata,
        sa.Column("alert_key", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("score_date", sa.Date),
        sa.Column("task_id", sa.String(250)),
        sa.Column("map_index", sa.Integer),
        sa.Column("phase", sa.String(64), nullable=False),
        sa.Column("try_number", sa.Integer),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("log_url", sa.Text),
        sa.Column("to_roles", sa.String(512), nullable=False),  # comma-separated
        sa.Column("informed_roles", sa.String(512), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        schema=schema,
    )


def record_alert(alert: Alert, settings: Settings, *, in_warehouse: bool = True) -> bool:
    """Keep ``alert`` in the warehouse table (unless not ``in_warehouse``: its Connection could
    not be read) and the alerts file; whether it is new (and so to be sent). Told before (same
    key), nothing is written again. A warehouse that cannot be written is logged, not raised:
    the file still gets the alert, and people are still told."""
    path = settings.state_dir / ALERTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)  # also CHURN_HOME, where SQLite's warehouse is
    try:
        new = _insert_alert(alert, settings) if in_warehouse else True
    except Exception as error:  # an alert about one failure must not fail on another
        logger.warning(
            "could not record the alert in %s at %s: %s",
            settings.config.alerts.table,
            redact_url(settings.warehouse_url),
            redact_text(str(error)),
        )
        new = True
    if new:
        append_alert_line(alert, path)
    return new


def append_alert_line(alert: Alert, path: Path) -> None:
    """Append ``alert`` to ``path`` as one JSON line, written whole by a single append."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps({"alert_key": alert.key, **alert.model_dump(mode="json")}, sort_keys=True) + "\n").encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)


def read_alerts(path: Path) -> list[dict]:
    """The alerts file's alerts, oldest first; none when there is no file yet."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _insert_alert(alert: Alert, settings: Settings) -> bool:
    from churn.warehouse import configured_warehouse_engine

    config = settings.config
    table = alerts_table(sa.MetaData(), config.alerts.table, config.warehouse.schema_name)
    row = {
        "alert_key": alert.key,
        **alert.model_dump(exclude={"to", "informed"}),
        "to_roles": ",".join(alert.to),
        "informed_roles": ",".join(alert.informed),
    }
    engine = configured_warehouse_engine(settings)
    try:
        with engine.execution_options(write_lock=True).begin() as connection:
            dialect = connection.dialect.name
            if dialect == "postgresql":  # writers that create the table at once take turns
                connection.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(table.fullname))))
            if table.schema and not sa.inspect(connection).has_schema(table.schema):
                connection.execute(sa.schema.CreateSchema(table.schema))
            table.metadata.create_all(connection, tables=[table], checkfirst=True)
            if dialect in {"postgresql", "sqlite"}:
                module = postgresql if dialect == "postgresql" else sqlite
                statement = module.insert(table).values(**row).on_conflict_do_nothing(index_elements=["alert_key"])
                return connection.execute(statement.returning(table.c.alert_key)).first() is not None
            if connection.execute(sa.select(table.c.alert_key).where(table.c.alert_key == alert.key)).first():
                return False
            connection.execute(sa.insert(table).values(**row))
            return True
    finally:
        engine.dispose()
