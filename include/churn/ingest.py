"""Data Collection: land the training and scoring snapshots in the run folder as they are.

Files are copied byte for byte, with their checksum, and tables are exported to Parquet,
so a run keeps exactly what it was given. Judging the data, including whether a file can
be read at all, is validation's job: every input problem is reported in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from churn.errors import shortened
from churn.handoffs import IngestResult, LandedSnapshot, RunContext
from churn.manifest import run_phase
from churn.run_parameters import check_score_date, read_run_parameters
from churn.settings import DatabaseTimeouts, Settings, load_settings
from churn.sources import FileSource, SourceError, TableSource, confined, parse_source
from churn.storage import (
    PARQUET_ROW_GROUP_ROWS,
    ROWS_SHOWN,
    copy_atomically,
    file_sha256,
    write_parquet_batches_atomically,
)
from churn.warehouse import warehouse_engine

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

logger = logging.getLogger(__name__)


def arrow_schema(table: sa.Table) -> pa.Schema:
    """The Arrow types of a database table's columns, from their SQL types, so every batch of
    an export lands with the same types even where a batch's values are all missing."""
    by_python_type = {
        bool: pa.bool_(),
        int: pa.int64(),
        float: pa.float64(),
        Decimal: pa.float64(),
        date: pa.date32(),
        datetime: pa.timestamp("us"),
    }
    fields = []
    for column in table.columns:
        try:
            python_type = column.type.python_type
        except NotImplementedError:
            python_type = str
        fields.append(pa.field(column.name, by_python_type.get(python_type, pa.string())))
    return pa.schema(fields)


def read_table_batches(
    source: TableSource, sqlalchemy_url: str | None, batch_rows: int, timeouts: DatabaseTimeouts | None = None
) -> Iterator[pa.Table]:
    """Read a table through SQLAlchemy, ``batch_rows`` rows at a time, as Arrow tables of one
    schema, each wait bounded by ``timeouts``. A missing Connection or table, or a login
    refused, is refused at once, before anything is landed."""
    if not sqlalchemy_url:
        raise SourceError(f"{source.describe()}: no Airflow Connection {source.conn_id!r} is defined")
    engine = warehouse_engine(sqlalchemy_url, timeouts, conn_id=source.conn_id)
    try:
        table = sa.Table(source.table, sa.MetaData(), schema=source.schema, autoload_with=engine)
    except Exception as error:
        engine.dispose()
        if isinstance(error, sa.exc.NoSuchTableError):
            raise SourceError(f"{source.describe()}: table not found") from error
        raise
    return _exported(engine, table, batch_rows, source.describe())


def _exported(engine: sa.Engine, table: sa.Table, batch_rows: int, described: str) -> Iterator[pa.Table]:
    schema = arrow_schema(table)
    try:
        with engine.connect().execution_options(stream_results=True) as connection:
            chunks = pd.read_sql(sa.select(table), connection, chunksize=batch_rows)
            batches = (
                as_declared(chunk, schema, described, number * batch_rows) for number, chunk in enumerate(chunks)
            )
            # A table with no rows still lands, as an empty file of its columns.
            yield next(batches, schema.empty_table())
            yield from batches
    finally:
        engine.dispose()


def as_declared(chunk: pd.DataFrame, schema: pa.Schema, described: str, first: int) -> pa.Table:
    """``chunk`` of an export (its first row the export's row ``first``, from 0) as Arrow in its
    columns' declared types. A database that lets a column hold values of another type (SQLite
    stores any value in any column: a word in an INTEGER column, an integer too large for 64
    bits as REAL) is refused with the column, the first such rows of the export and their
    values, never converted into other values."""
    try:
        return pa.Table.from_pandas(chunk, schema=schema, preserve_index=False).replace_schema_metadata()
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        for field in schema:
            values = chunk[field.name].tolist()
            misfits = [row for row, value in enumerate(values) if not _fits(value, field.type)][:ROWS_SHOWN]
            if misfits:
                shown = ", ".join(f"{first + row + 1:,} ({shortened(repr(values[row]))})" for row in misfits)
                raise SourceError(
                    f"{described}: column {field.name!r} is declared {field.type} but holds values that "
                    f"are not, at rows {shown} of the export: fix the values or the column's type"
                ) from None
        raise


def _fits(value: Any, arrow_type: pa.DataType) -> bool:
    try:
        pa.array([value], type=arrow_type, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return False
    return True


def land_snapshot(
    source: FileSource | TableSource,
    landing_dir: ObjectStoragePath,
    name: str,
    timeouts: DatabaseTimeouts | None = None,
) -> LandedSnapshot:
    """Land one snapshot unchanged as ``landing_dir/<name>.<format>``; returns where, and its
    checksum. A table's database sessions wait at most ``timeouts``.

    A table's database comes from the Airflow Connection its reference names, resolved here,
    in the task that reads it.
    """
    if isinstance(source, TableSource):
        from churn.airflow_connections import database_url

        file_format = "parquet"
        batches = read_table_batches(source, database_url(source.conn_id), PARQUET_ROW_GROUP_ROWS, timeouts)
        landed = write_parquet_batches_atomically(batches, landing_dir / f"{name}.parquet")
    else:
        if not source.path.is_file():
            raise SourceError(f"source file not found: {source.path}")
        file_format = source.file_format
        landed = copy_atomically(source.path, landing_dir / f"{name}.{file_format}")
    return LandedSnapshot(
        source=source.describe(),
        path=landed,
        format=file_format,
        bytes=landed.stat().st_size,
        sha256=file_sha256(landed),
    )


def resolve_score_date(requested: date | None, logical_date: datetime | None, run_after: datetime) -> date:
    """The date the scores are for: the trigger's choice, else the run's logical date.

    Manual runs in Airflow 3 may have no logical date; they fall back to the moment the
    run was queued for, never to the wall clock of whichever worker runs the task.
    """
    return requested or (logical_date or run_after).date()


def run_ingest(
    params: Mapping[str, Any],
    *,
    airflow_run_id: str,
    logical_date: datetime | None,
    run_after: datetime,
    drift_triggered: bool = False,
    settings: Settings | None = None,
) -> IngestResult:
    """Start the run record for the trigger's ``params`` and land both snapshots;
    ``drift_triggered`` says monitoring's drift event started the run."""
    settings = settings or load_settings()
    parameters = read_run_parameters(params)
    score_date = resolve_score_date(parameters.score_date, logical_date, run_after)
    # Refused before any run folder is made; "today" is the day the run was queued for.
    overridden = check_score_date(
        score_date,
        run_after.date(),
        settings.config.score_date_window,
        allow_any=parameters.allow_any_score_date,
    )
    if overridden:
        logger.warning("ingest: %s", overridden)
    run = RunContext(
        airflow_run_id=airflow_run_id,
        score_date=score_date,
        run_dir=settings.run_dir(score_date.isoformat(), airflow_run_id),
        contract=parameters.contract,
        drift_triggered=drift_triggered,
        allow_any_score_date=parameters.allow_any_score_date,
        allow_shrink=parameters.allow_shrink,
    )

    def land_both() -> IngestResult:
        landed = {
            name: land_snapshot(
                confined(parse_source(spec, score_date), settings),
                run.run_dir / "raw",
                name,
                settings.config.database_timeouts,
            )
            for name, spec in (("training", parameters.training_source), ("scoring", parameters.scoring_source))
        }
        return IngestResult(run=run, **landed)

    return run_phase("ingest", run, land_both)
