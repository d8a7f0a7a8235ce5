"""Data Collection: land the training and scoring snapshots in the run folder as they are.

Files are copied byte for byte, with their checksum, and tables are exported to Parquet,
so a run keeps exactly what it was given. Judging the data, including whether a file can
be read at all, is validation's job: every input problem is reported in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from churn.handoffs import IngestResult, LandedSnapshot, RunContext
from churn.manifest import run_phase
from churn.run_parameters import read_run_parameters
from churn.settings import Settings, load_settings
from churn.sources import FileSource, SourceError, TableSource, parse_source
from churn.storage import copy_atomically, file_sha256, write_parquet_atomically


def read_table(source: TableSource, sqlalchemy_url: str | None) -> pd.DataFrame:
    """Read a whole table through SQLAlchemy."""
    if not sqlalchemy_url:
        raise SourceError(f"{source.describe()}: no Airflow Connection {source.conn_id!r} is defined")
    import sqlalchemy as sa

    engine = sa.create_engine(sqlalchemy_url)
    try:
        table = sa.Table(source.table, sa.MetaData(), schema=source.schema, autoload_with=engine)
        with engine.connect() as connection:
            return pd.read_sql(sa.select(table), connection)
    except sa.exc.NoSuchTableError as error:
        raise SourceError(f"{source.describe()}: table not found") from error
    finally:
        engine.dispose()


def land_snapshot(source: FileSource | TableSource, landing_dir: Path, name: str) -> LandedSnapshot:
    """Land one snapshot unchanged as ``landing_dir/<name>.<format>``; returns where, and its checksum.

    A table's database comes from the Airflow Connection its reference names, resolved here,
    in the task that reads it.
    """
    if isinstance(source, TableSource):
        from churn.airflow_connections import database_url

        file_format = "parquet"
        table = read_table(source, database_url(source.conn_id))
        landed = write_parquet_atomically(table, landing_dir / f"{name}.parquet")
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
    settings: Settings | None = None,
) -> IngestResult:
    """Start the run record for the trigger's ``params`` and land both snapshots."""
    settings = settings or load_settings()
    parameters = read_run_parameters(params)
    score_date = resolve_score_date(parameters.score_date, logical_date, run_after)
    run = RunContext(
        airflow_run_id=airflow_run_id,
        score_date=score_date,
        run_dir=settings.run_dir(score_date.isoformat(), airflow_run_id),
        contract=parameters.contract,
    )

    def land_both() -> IngestResult:
        landed = {
            name: land_snapshot(parse_source(spec, score_date), run.run_dir / "raw", name)
            for name, spec in (("training", parameters.training_source), ("scoring", parameters.scoring_source))
        }
        return IngestResult(run=run, **landed)

    return run_phase("ingest", run, land_both)
