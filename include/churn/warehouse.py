"""The warehouse table of churn scores: one row per customer and score date.

Writes replace a whole date in one transaction, as the batches are scored; reads
tell the other phases what has been scored already, so reruns and backfills keep a date's
model.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
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


class _ProducerFailed(Exception):
    """The rows' producer (the model scoring the next batch) raised, not the warehouse."""


def _produced(batches: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """``batches``, with a failure to produce one told apart from a failure to write it."""
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except Exception as error:
            raise _ProducerFailed from error
        yield batch


def copy_rows(connection: sa.Connection, table: sa.Table, rows: pd.DataFrame) -> None:
    """Stream ``rows`` into a PostgreSQL table with COPY, inside the caller's transaction.

    Arrow writes the rows as CSV in native code, outside the interpreter's lock, so a batch
    goes to the server without a Python call per row and the next batch's prediction is not
    held up meanwhile.
    """
    import pyarrow as pa
    import pyarrow.csv as arrow_csv
    from psycopg import sql

    columns = [column.name for column in table.columns]
    target = sql.Identifier(*filter(None, (table.schema, table.name)))
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
        target, sql.SQL(", ").join(sql.Identifier(name) for name in columns)
    )
    text = pa.BufferOutputStream()
    arrow_csv.write_csv(
        pa.Table.from_pandas(rows[columns], preserve_index=False),
        text,
        write_options=arrow_csv.WriteOptions(include_header=False),
    )
    with connection.connection.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(text.getvalue().to_pybytes())


def _insert_rows(connection: sa.Connection, table: sa.Table, rows: pd.DataFrame) -> None:
    records = rows[[column.name for column in table.columns]].to_dict(orient="records")
    for start in range(0, len(records), INSERT_BATCH_ROWS):
        connection.execute(sa.insert(table), records[start : start + INSERT_BATCH_ROWS])


def replace_scores(
    engine: sa.Engine,
    table: sa.Table,
    score_date: date,
    rows: pd.DataFrame | Iterable[pd.DataFrame],
    *,
    seen: ScoringRecord | None = None,
) -> int:
    """Replace exactly ``score_date``'s rows with ``rows`` (one frame, or batches as they are
    scored) in one transaction; returns how many rows were written.

    The date's old rows are deleted and the batches streamed in (COPY on PostgreSQL) in the
    same transaction, so readers see the old rows until the commit and the new ones after
    it, never a mix. Writers of the table take turns (on PostgreSQL, a transaction-scoped
    advisory lock; on SQLite, the write lock), so two runs of one date end with one complete
    set rather than a key conflict. With ``seen`` (the record the rows' model was chosen
    from), the write is refused if another run has scored the date with another version
    since. An error raised while producing a batch comes out unchanged.
    """
    batches = [rows] if isinstance(rows, pd.DataFrame) else rows
    try:
        return _replace_in_transaction(engine, table, score_date, _produced(batches), seen)
    except _ProducerFailed as failed:
        raise failed.__cause__ from None
    except Exception as error:  # the driver's own errors (COPY) are not SQLAlchemy's
        raise WarehouseError(
            f"writing the scores for {score_date} to {table.fullname} at {redact_url(engine.url)} failed; unless "
            f"the failure came at commit, the date's earlier rows are unchanged: {error}"
        ) from error


def _replace_in_transaction(
    engine: sa.Engine,
    table: sa.Table,
    score_date: date,
    batches: Iterator[pd.DataFrame],
    seen: ScoringRecord | None,
) -> int:
    postgres = engine.dialect.name == "postgresql"
    load = copy_rows if postgres and engine.dialect.driver == "psycopg" else _insert_rows
    written = 0
    with engine.execution_options(write_lock=True).begin() as connection:
        if postgres:
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(table.fullname))))
        if table.schema and not sa.inspect(connection).has_schema(table.schema):
            connection.execute(sa.schema.CreateSchema(table.schema))
        table.metadata.create_all(connection, tables=[table], checkfirst=True)
        first = next(batches, None)
        if seen is not None and first is not None and not first.empty:
            now = _version_for_date(connection, table, score_date, first["model_name"].iloc[0])
            if now not in {seen.version_for_date, first["model_version"].iloc[0]}:
                raise RuntimeError(
                    f"another run scored {score_date} with version {now} while this one was scoring; a retry "
                    "scores the date with that version"
                )
        connection.execute(sa.delete(table).where(table.c.score_date == score_date))
        for batch in itertools.chain([first] if first is not None else [], batches):
            load(connection, table, batch.assign(score_date=score_date))
            written += len(batch)
    return written


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
