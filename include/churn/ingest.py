"""Data Collection: land the training and scoring snapshots in the run folder as they are.

Files are copied byte for byte, with their checksum, and tables are exported to Parquet,
so a run keeps exactly what it was given. Judging the data, including whether a file can
be read at all, is validation's job: every input problem is reported in one place.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from churn.manifest import recording_failure, write_manifest, writing_atomically
from churn.settings import Settings
from churn.sources import FileSource, SourceError, TableSource, parse_source

CSV_SNIFF_BYTES = 8192


def read_table(source: TableSource, sqlalchemy_url: str | None) -> pd.DataFrame:
    """Read a whole table through SQLAlchemy."""
    if not sqlalchemy_url:
        raise SourceError(f"{source.describe()}: no database URL for connection {source.conn_id}")
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


def read_snapshot_file(path: Path, file_format: str) -> pd.DataFrame:
    """Read a CSV or Parquet snapshot; CSV cells stay text, so nothing is silently coerced.

    Raises :class:`SourceError` saying why the file is not readable, without its path: the
    caller names the snapshot.
    """
    if path.stat().st_size == 0:
        raise SourceError("the file is empty (0 bytes)")
    if file_format == "csv":
        return _read_csv_text(path)
    try:
        return pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several types for damaged files
        raise SourceError(f"not a readable Parquet file (damaged or truncated?): {error}") from error


def _read_csv_text(path: Path) -> pd.DataFrame:
    """Read a CSV as UTF-8 text, naming the usual reasons a file is not one."""
    with path.open("rb") as handle:
        head = handle.read(CSV_SNIFF_BYTES)
    if b"\x00" in head:
        raise SourceError("not a text CSV: it holds binary data (NUL bytes) in its first bytes")
    try:
        return pd.read_csv(path, dtype="string", keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError as error:
        raise SourceError(
            f"not UTF-8 text (byte {error.object[error.start : error.start + 1]!r} at offset {error.start}); "
            "save it as UTF-8"
        ) from error
    except pd.errors.EmptyDataError as error:
        raise SourceError("it holds no header row: the file has only blank lines") from error
    except pd.errors.ParserError as error:
        raise SourceError(f"not well-formed CSV: {error}") from error


def write_parquet_atomically(frame: pd.DataFrame, path: Path) -> Path:
    """Write Parquet so that readers never see half a file."""
    with writing_atomically(path) as partial:
        frame.to_parquet(partial, index=False)
    return path


def copy_atomically(source: Path, destination: Path) -> Path:
    """Copy a file so that readers never see half a copy."""
    with writing_atomically(destination) as partial:
        shutil.copyfile(source, partial)
    return destination


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def land_snapshot(
    source: FileSource | TableSource, landing_dir: Path, name: str, *, sqlalchemy_url: str | None = None
) -> dict[str, Any]:
    """Land one snapshot unchanged as ``landing_dir/<name>.<format>``; returns where, and its checksum."""
    if isinstance(source, TableSource):
        file_format = "parquet"
        landed = write_parquet_atomically(read_table(source, sqlalchemy_url), landing_dir / f"{name}.parquet")
    else:
        if not source.path.is_file():
            raise SourceError(f"source file not found: {source.path}")
        file_format = source.file_format
        landed = copy_atomically(source.path, landing_dir / f"{name}.{file_format}")
    return {
        "source": source.describe(),
        "path": str(landed),
        "format": file_format,
        "bytes": landed.stat().st_size,
        "sha256": file_sha256(landed),
    }


def resolve_score_date(requested: str | None, logical_date: datetime | None, run_after: datetime) -> date:
    """The date the scores are for: the trigger's choice, else the run's logical date.

    Manual runs in Airflow 3 may have no logical date; they fall back to the moment the
    run was queued for, never to the wall clock of whichever worker runs the task.
    """
    if requested:
        try:
            return date.fromisoformat(requested)
        except ValueError as error:
            raise ValueError(f"score_date {requested!r} is not a date in YYYY-MM-DD form") from error
    return (logical_date or run_after).date()


def run_ingest(
    settings: Settings,
    *,
    airflow_run_id: str,
    score_date: date,
    training_source: str,
    scoring_source: str,
    contract: str,
    connection_url: Callable[[str], str | None],
) -> dict[str, Any]:
    """Start the run record and land both snapshots; ``connection_url`` resolves SQL sources."""
    run_dir = settings.run_dir(score_date.isoformat(), airflow_run_id)
    landed: dict[str, Any] = {}
    with recording_failure(run_dir, "ingest"):
        for name, spec in (("training", training_source), ("scoring", scoring_source)):
            source = parse_source(spec, score_date)
            url = connection_url(source.conn_id) if isinstance(source, TableSource) else None
            landed[name] = land_snapshot(source, run_dir / "raw", name, sqlalchemy_url=url)
    run = {
        "airflow_run_id": airflow_run_id,
        "score_date": score_date.isoformat(),
        "run_dir": str(run_dir),
        "contract": contract,
    }
    return {**run, "ingest": write_manifest(run_dir, "ingest", landed)}
