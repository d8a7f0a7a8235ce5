"""Files in the run folder: written atomically, read with reasons when they cannot be.

Every phase writes through here, so a reader (or a rerun) sees an earlier file whole or
the new one whole, never half of one. Files are opened through their paths, never by name,
so the same code reads and writes a run folder on local disk or in object storage (see
:mod:`churn.locations`).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, get_args

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churn.contract import CsvDelimiter, CsvDialect
from churn.locations import location
from churn.sources import SourceError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

CSV_SNIFF_BYTES = 8192
CSV_DELIMITERS = get_args(CsvDelimiter)
# Rows per Parquet row group: a reader going batch by batch decompresses one group at a time,
# so this bounds its memory however long the table is.
PARQUET_ROW_GROUP_ROWS = 100_000


@contextmanager
def writing_atomically(path: ObjectStoragePath) -> Iterator[ObjectStoragePath]:
    """Where to write ``path`` so that readers see the old file or the whole new one, never
    half of one: on local disk a temporary name beside it (one per writer), renamed onto it
    once the write is done and removed if the write fails; in object storage ``path`` itself,
    since an object becomes visible only once it is completely uploaded."""
    path = location(path)
    if path.protocol != "file":
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        yield partial
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def write_parquet_atomically(frame: pd.DataFrame, path: ObjectStoragePath) -> ObjectStoragePath:
    """Write Parquet so that readers never see half a file."""
    return write_parquet_batches_atomically([frame], path)


def write_parquet_batches_atomically(
    batches: Iterable[pd.DataFrame | pa.Table], path: ObjectStoragePath
) -> ObjectStoragePath:
    """Write frames (or Arrow tables) one after the other as one Parquet file, holding one at
    a time in memory, so that readers never see half a file. The first batch sets the schema."""
    path = location(path)
    with writing_atomically(path) as partial, partial.open("wb") as handle:
        writer = None
        try:
            for batch in batches:
                schema = writer.schema if writer else None
                table = (
                    batch
                    if isinstance(batch, pa.Table)
                    else pa.Table.from_pandas(batch, schema, preserve_index=False)
                )
                writer = writer or pq.ParquetWriter(handle, table.schema)
                writer.write_table(table, row_group_size=PARQUET_ROW_GROUP_ROWS)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise ValueError(f"nothing to write to {path}: no batch, not even an empty one")
    return path


def read_parquet(path: ObjectStoragePath) -> pd.DataFrame:
    """A whole Parquet file as a frame (for the tables that are small: the test split, say)."""
    with location(path).open("rb") as handle:
        return pd.read_parquet(handle)


def read_parquet_batches(path: ObjectStoragePath, batch_rows: int | None = None) -> Iterator[pd.DataFrame]:
    """A Parquet file as frames of at most ``batch_rows`` rows (a row group's), in file order."""
    with location(path).open("rb") as handle:
        for batch in pq.ParquetFile(handle).iter_batches(batch_size=batch_rows or PARQUET_ROW_GROUP_ROWS):
            yield batch.to_pandas()


def parquet_rows(path: ObjectStoragePath) -> int:
    """How many rows a Parquet file holds, from its footer alone."""
    with location(path).open("rb") as handle:
        return pq.ParquetFile(handle).metadata.num_rows


def read_parquet_row_range(
    path: ObjectStoragePath, first: int, end: int, batch_rows: int | None = None
) -> Iterator[pd.DataFrame]:
    """Rows ``first`` to ``end`` (exclusive) of a Parquet file as frames of at most ``batch_rows``
    rows, in file order, decompressing only the row groups that hold them."""
    with location(path).open("rb") as handle:
        yield from _row_range(pq.ParquetFile(handle), first, end, batch_rows or PARQUET_ROW_GROUP_ROWS)


def _row_range(parquet: pq.ParquetFile, first: int, end: int, batch_rows: int) -> Iterator[pd.DataFrame]:
    groups, group_first, position = [], None, 0
    for group in range(parquet.metadata.num_row_groups):
        group_end = position + parquet.metadata.row_group(group).num_rows
        if position < end and group_end > first:
            groups.append(group)
            group_first = position if group_first is None else group_first
        position = group_end
    position = group_first or 0
    for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=groups):
        wanted = batch.slice(
            max(first - position, 0), max(min(end, position + batch.num_rows) - max(first, position), 0)
        )
        position += batch.num_rows
        if wanted.num_rows:
            yield wanted.to_pandas()


def copy_atomically(source: Path | ObjectStoragePath, destination: ObjectStoragePath) -> ObjectStoragePath:
    """Copy a file so that readers never see half a copy."""
    destination = location(destination)
    with writing_atomically(destination) as partial, source.open("rb") as reading, partial.open("wb") as writing:
        shutil.copyfileobj(reading, writing, 1 << 20)
    return destination


def copy_folder(source: Path, destination: ObjectStoragePath) -> ObjectStoragePath:
    """Copy a local folder's files into ``destination``, each atomically, its top ``index.html``
    last, so that page never links to one not there yet; returns ``destination``."""
    destination = location(destination)
    files = sorted(
        (file for file in source.rglob("*") if file.is_file()), key=lambda file: file == source / "index.html"
    )
    for file in files:
        copy_atomically(file, destination.joinpath(*file.relative_to(source).parts))
    return destination


def file_sha256(path: Path | ObjectStoragePath) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_snapshot_chunks(
    path: ObjectStoragePath, file_format: str, chunk_rows: int, dialect: CsvDialect | None = None
) -> Iterator[pd.DataFrame]:
    """A CSV or Parquet snapshot as frames of at most ``chunk_rows`` rows, in file order, each
    indexed by its rows' positions in the file (0 for the first row under the header), so a
    reader holds one chunk, never the table. CSV cells stay text, so nothing is silently
    coerced; they are read in the contract's ``dialect``, the delimiter detected unless it is
    declared. A file that is not readable raises :class:`SourceError` saying why (without
    its path: the caller names the snapshot), when the unreadable part is reached. A file
    without rows still yields one empty frame, so its columns are seen.
    """
    if path.stat().st_size == 0:
        raise SourceError("the file is empty (0 bytes)")
    chunks = (
        _csv_text_chunks(path, chunk_rows, dialect or CsvDialect())
        if file_format == "csv"
        else _parquet_chunks(path, chunk_rows)
    )
    first = 0
    for chunk in chunks:
        chunk.index = pd.RangeIndex(first, first + len(chunk))
        first += len(chunk)
        yield chunk


def detect_delimiter(head: str) -> str:
    """The delimiter of CSV text starting with ``head``: of comma, semicolon, tab and pipe, the
    one that splits every complete line of ``head`` (quotes respected) into the same number of
    fields, and the most of them; a comma when none does."""
    complete = head[: head.rfind("\n") + 1] or head
    best, most_fields = ",", 1
    for delimiter in CSV_DELIMITERS:
        widths = {len(row) for row in csv.reader(io.StringIO(complete), delimiter=delimiter) if row}
        if len(widths) == 1 and (fields := widths.pop()) > most_fields:
            best, most_fields = delimiter, fields
    return best


def _csv_text_chunks(path: ObjectStoragePath, chunk_rows: int, dialect: CsvDialect) -> Iterator[pd.DataFrame]:
    with path.open("rb") as handle:
        head = handle.read(CSV_SNIFF_BYTES)
    if b"\x00" in head:
        raise SourceError("not a text CSV: it holds binary data (NUL bytes) in its first bytes")
    # utf-8-sig reads UTF-8 with or without the byte order mark spreadsheet programs write.
    utf8 = codecs.lookup(dialect.encoding).name == "utf-8"
    encoding = "utf-8-sig" if utf8 else dialect.encoding
    try:
        delimiter = dialect.delimiter or detect_delimiter(head.decode(encoding, errors="ignore"))
        with (
            path.open("rb") as handle,
            pd.read_csv(
                handle,
                sep=delimiter,
                dtype="string",
                keep_default_na=False,
                encoding=encoding,
                chunksize=chunk_rows,
            ) as reader,
        ):
            yield from reader
    except UnicodeDecodeError as error:
        byte = error.object[error.start : error.start + 1]
        raise SourceError(
            f"not {'UTF-8' if utf8 else dialect.encoding} text (byte {byte!r} at offset {error.start}); "
            "save it as UTF-8 or declare its encoding in the contract (csv: {encoding: ...})"
        ) from error
    except pd.errors.EmptyDataError as error:
        raise SourceError("it holds no header row: the file has only blank lines") from error
    except pd.errors.ParserError as error:
        raise SourceError(f"not well-formed CSV (read with delimiter {delimiter!r}): {error}") from error


def _parquet_chunks(path: ObjectStoragePath, chunk_rows: int) -> Iterator[pd.DataFrame]:
    try:
        with path.open("rb") as handle:
            parquet = pq.ParquetFile(handle)
            empty = True
            for batch in parquet.iter_batches(batch_size=chunk_rows):
                empty = False
                yield batch.to_pandas()
            if empty:
                yield parquet.schema_arrow.empty_table().to_pandas()
    except pa.ArrowException as error:  # not an outage reading it: those must stay retryable
        raise SourceError(f"not a readable Parquet file (damaged or truncated?): {error}") from error
