"""The warehouse table of churn scores: one row per customer and score date.

Writes replace a whole date in one transaction; reads tell the other phases what has been
scored already, so reruns and backfills keep a date's model.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd
import sqlalchemy as sa

from churn.settings import Settings, redact_url

INSERT_BATCH_ROWS = 10_000
SQLITE_WRITE_WAIT_SECONDS = 60


class WarehouseError(RuntimeError):
    """The warehouse could not be read or refused the write; the date's earlier rows are unchanged."""


@dataclass(frozen=True)
class ScoringRecord:
    """What the warehouse holds of a model's scores: the version that scored a date, and the latest date."""

    version_for_date: str | None
    latest_date: date | None


def warehouse_engine(url: str) -> sa.Engine:
    """An engine for the warehouse. On SQLite, transactions begun with the execution option
    ``write_lock=True`` take the write lock at once (BEGIN IMMEDIATE), so writers wait for
    each other instead of failing half-way through; readers never take it."""
    # hide_parameters: error messages must not carry customer rows into logs.
    if not url.startswith("sqlite"):
        return sa.create_engine(url, hide_parameters=True)
    engine = sa.create_engine(url, hide_parameters=True, connect_args={"timeout": SQLITE_WRITE_WAIT_SECONDS})

    @sa.event.listens_for(engine, "connect")
    def _let_sqlalchemy_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        immediate = connection.get_execution_options().get("write_lock", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def scores_table(metadata: sa.MetaData, name: str, schema: str | None) -> sa.Table:
    """The warehouse table of churn scores; one row per customer and score date."""
    return sa.Table(
        name,
        metadata,
        sa.Column("score_date", sa.Date, primary_key=True),
        sa.Column("customer_id", sa.String(64), primary_key=True),
        sa.Column("churn_probability", sa.Float(precision=53), nullable=False),
        sa.Column("risk_band", sa.String(16), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        schema=schema,
    )


def _copy_rows(connection: sa.Connection, table: sa.Table, records: list[dict[str, Any]]) -> None:
    """Stream rows into PostgreSQL with COPY, inside the caller's transaction."""
    from psycopg import sql

    columns = [column.name for column in table.columns]
    target = sql.Identifier(table.schema, table.name) if table.schema else sql.Identifier(table.name)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        target, sql.SQL(", ").join(sql.Identifier(name) for name in columns)
    )
    with connection.connection.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
        for record in records:
            copy.write_row(tuple(record[name] for name in columns))


def _insert_rows(connection: sa.Connection, table: sa.Table, records: list[dict[str, Any]]) -> None:
    for start in range(0, len(records), INSERT_BATCH_ROWS):
        connection.execute(sa.insert(table), records[start : start + INSERT_BATCH_ROWS])


def replace_scores(
    engine: sa.Engine, table: sa.Table, score_date: date, rows: pd.DataFrame, *, seen: ScoringRecord | None = None
) -> int:
    """Replace exactly ``score_date``'s rows with ``rows`` in one transaction.

    Readers see the date's old rows until the commit and the new ones after it. On
    PostgreSQL, writers of the table take turns (a transaction-scoped advisory lock), so
    two runs of one date end with one complete set rather than a key conflict, and the
    rows go in through COPY. With ``seen`` (the record the rows' model was chosen from),
    the write is refused if another run has scored the date with another version since.
    """
    records = rows.assign(score_date=score_date).to_dict(orient="records")
    try:
        _replace_in_transaction(engine, table, score_date, records, seen)
    except Exception as error:  # the driver's own errors (COPY) are not SQLAlchemy's
        raise WarehouseError(
            f"writing {len(records)} scores for {score_date} to {table.fullname} at "
            f"{redact_url(engine.url)} failed; unless the failure came at commit, the date's earlier rows are "
            f"unchanged: {error}"
        ) from error
    return len(records)


def _replace_in_transaction(
    engine: sa.Engine,
    table: sa.Table,
    score_date: date,
    records: list[dict[str, Any]],
    seen: ScoringRecord | None,
) -> None:
    postgres = engine.dialect.name == "postgresql"
    with engine.execution_options(write_lock=True).begin() as connection:
        if postgres:
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(table.fullname))))
        if table.schema and not sa.inspect(connection).has_schema(table.schema):
            connection.execute(sa.schema.CreateSchema(table.schema))
        table.metadata.create_all(connection, tables=[table], checkfirst=True)
        if seen is not None and records:
            now = _version_for_date(connection, table, score_date, records[0]["model_name"])
            if now not in {seen.version_for_date, records[0]["model_version"]}:
                raise RuntimeError(
                    f"another run scored {score_date} with version {now} while this one was scoring; a retry "
                    "scores the date with that version"
                )
        connection.execute(sa.delete(table).where(table.c.score_date == score_date))
        if postgres and engine.dialect.driver == "psycopg":
            _copy_rows(connection, table, records)
        else:
            _insert_rows(connection, table, records)


def _version_for_date(connection: sa.Connection, table: sa.Table, score_date: date, model_name: str) -> str | None:
    return connection.execute(
        sa.select(table.c.model_version)
        .where(table.c.model_name == model_name, table.c.score_date == score_date)
        .order_by(table.c.scored_at.desc())
        .limit(1)
    ).scalar()


@contextmanager
def open_scores_table(settings: Settings) -> Iterator[tuple[sa.Engine, sa.Table]]:
    """An engine for the configured warehouse and its scores table; the engine is closed after."""
    engine = warehouse_engine(settings.warehouse_url)
    try:
        warehouse = settings.config.warehouse
        yield engine, scores_table(sa.MetaData(), warehouse.table, warehouse.schema_name)
    finally:
        engine.dispose()


def scoring_record(engine: sa.Engine, table: sa.Table, score_date: date, model_name: str) -> ScoringRecord:
    """Which version of ``model_name`` scored ``score_date``, and the latest date it scored."""
    try:
        if not sa.inspect(engine).has_table(table.name, schema=table.schema):
            return ScoringRecord(None, None)
        with engine.connect() as connection:
            version = _version_for_date(connection, table, score_date, model_name)
            latest = connection.execute(
                sa.select(sa.func.max(table.c.score_date)).where(table.c.model_name == model_name)
            ).scalar()
    except sa.exc.SQLAlchemyError as error:
        raise WarehouseError(
            f"reading {table.fullname} at {redact_url(engine.url)} failed before anything was written; the "
            f"date's earlier rows are unchanged: {error}"
        ) from error
    # SQLite hands back max() of a date column as text.
    return ScoringRecord(version, date.fromisoformat(latest) if isinstance(latest, str) else latest)
