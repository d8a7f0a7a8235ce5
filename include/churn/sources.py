"""Source references: where a snapshot comes from. Light on purpose: the DAG file uses it.

A source is a CSV or Parquet file (a path or ``file://`` URL; relative paths are relative
to the project folder) or a SQL table read through an Airflow Connection
(``sql://<connection id>/<[schema.]table>``). ``{score_date}`` in a file path stands for the
run's score date, so one reference reads each date's own snapshot, in backfills too.
Ingest reads only files under the configured folders and tables through the configured
Connections (:func:`confined`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from churn.airflow_connections import WAREHOUSE_CONNECTION
from churn.errors import PermanentError
from churn.settings import PROJECT_DIR, Settings, validated_identifier

FILE_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
CONNECTION_ID = r"[A-Za-z0-9_.-]+"
# Loose on purpose: parse_source checks the names and says which one is wrong.
TABLE_SOURCE = re.compile(rf"^sql://(?P<conn_id>{CONNECTION_ID})/(?P<table>[A-Za-z0-9_.]+)$")
SCORE_DATE_PLACEHOLDER = "{score_date}"


# The accepted forms in words, for the trigger form's help and for every refusal below.
FILE_SUFFIXES = ", ".join(FILE_FORMATS)
SOURCE_FORMS = (
    f"a {FILE_SUFFIXES} file's path (absolute, or relative to the project folder; the suffix in "
    "any letter case), file://<path>, or sql://<connection id>/<[schema.]table>"
)


class SourceError(PermanentError, ValueError):
    """A source cannot be found, read or understood; the message names it."""


@dataclass(frozen=True)
class FileSource:
    path: Path
    file_format: str

    def describe(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class TableSource:
    conn_id: str
    schema: str | None
    table: str

    def describe(self) -> str:
        qualified = f"{self.schema}.{self.table}" if self.schema else self.table
        return f"table {qualified} via connection {self.conn_id}"


def parse_source(spec: str, score_date: date | None = None) -> FileSource | TableSource:
    """Understand a source reference, or say exactly what is wrong with it.

    ``{score_date}`` in the reference becomes ``score_date`` (YYYY-MM-DD).
    """
    spec = spec.strip()
    if SCORE_DATE_PLACEHOLDER in spec:
        if score_date is None:
            raise SourceError(f"source {spec!r}: {SCORE_DATE_PLACEHOLDER} needs a score date")
        spec = spec.replace(SCORE_DATE_PLACEHOLDER, score_date.isoformat())
    match = TABLE_SOURCE.match(spec)
    if match:
        schema, dot, table = match["table"].rpartition(".")
        try:
            return TableSource(
                conn_id=match["conn_id"],
                schema=validated_identifier(schema) if dot else None,
                table=validated_identifier(table),
            )
        except ValueError as error:
            raise SourceError(f"source {spec!r}: {error}") from error
    if "://" in spec and not spec.startswith("file://"):
        raise SourceError(f"source {spec!r}: unknown scheme; a source is {SOURCE_FORMS}")
    if ":" in spec.removeprefix("file://"):
        raise SourceError(f"source {spec!r}: a file path may not contain ':'")
    path = Path(spec.removeprefix("file://")).expanduser()
    if not path.is_absolute():
        path = PROJECT_DIR / path
    file_format = FILE_FORMATS.get(path.suffix.lower())
    if file_format is None:
        raise SourceError(f"source {spec!r}: a file must end in {FILE_SUFFIXES}; a source is {SOURCE_FORMS}")
    return FileSource(path=path, file_format=file_format)


def confined(source: FileSource | TableSource, settings: Settings) -> FileSource | TableSource:
    """``source`` if it may be read, a file with its real path (``..`` and symbolic links
    resolved, so the file checked is the file read); else a refusal naming the source, the rule
    and where to configure it, before anything of the source is opened."""
    if isinstance(source, TableSource):
        allowed = settings.config.sources.connections
        if source.conn_id == WAREHOUSE_CONNECTION:
            raise SourceError(
                f"source {source.describe()}: the warehouse's Connection is never a source, or the pipeline's "
                f"scores would come back as its input; read through one of the Connections in pipeline.yaml's "
                f"sources.connections ({', '.join(allowed)})"
            )
        if source.conn_id not in allowed:
            raise SourceError(
                f"source {source.describe()}: tables are read only through the Connections in pipeline.yaml's "
                f"sources.connections ({', '.join(allowed) or 'none'}); add {source.conn_id!r} there to allow it"
            )
        return source
    real = source.path.resolve()
    roots = settings.source_roots
    if not any(real.is_relative_to(root) for root in roots):
        raise SourceError(
            f"source {source.describe()} (really {real}): files are read only from {', '.join(map(str, roots))}; "
            "put the file there, or add its folder to the environment's CHURN_SOURCE_ROOTS (folders separated "
            "by ':')"
        )
    return FileSource(path=real, file_format=source.file_format)
