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
import itertools
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, get_args

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from churn.contract import CsvDelimiter, CsvDialect
from churn.locations import location
from churn.sources import SourceError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

CSV_SNIFF_BYTES = 8192
# Offending rows of an unreadable file a message names (it counts them all).
ROWS_SHOWN = 5
CSV_DELIMITERS = get_args(CsvDelimiter)
# Where a line ends at a carriage return not followed by a line feed.
BARE_CARRIAGE_RETURN = re.compile(rb"(?<=\r)(?!\n)")
# Parquet's integers as pandas' nullable integers: a column with blanks would otherwise become
# float64, which writes 7 as "7.0" and rounds integers past 2**53.
EXACT_INTEGERS = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(),
    pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(),
    pa.uint64(): pd.UInt64Dtype(),
}
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
    its path: the caller names the snapshot): a CSV file before its first chunk, as it is
    read through once first (see :func:`check_csv_records`), a Parquet file when the
    unreadable part is reached. Parquet integers keep their exact values, blanks or not. A
    file without rows still yields one empty frame, so its columns are seen.
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
        try:
            widths = {len(row) for row in csv.reader(io.StringIO(complete), delimiter=delimiter) if row}
        except csv.Error:  # not CSV read this way (a lone carriage return, binary data): not this one
            continue
        if len(widths) == 1 and (fields := widths.pop()) > most_fields:
            best, most_fields = delimiter, fields
    return best


def _csv_text_chunks(path: ObjectStoragePath, chunk_rows: int, dialect: CsvDialect) -> Iterator[pd.DataFrame]:
    with path.open("rb") as handle:
        head = handle.read(CSV_SNIFF_BYTES)
    # utf-8-sig reads UTF-8 with or without the byte order mark spreadsheet programs write.
    utf8 = codecs.lookup(dialect.encoding).name == "utf-8"
    encoding = "utf-8-sig" if utf8 else dialect.encoding
    delimiter = dialect.delimiter or detect_delimiter(head.decode(encoding, errors="ignore"))
    try:
        check_csv_records(path, delimiter, encoding)
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
    except pd.errors.EmptyDataError as error:
        raise SourceError("it holds no header row: the file has only blank lines") from error
    except (pd.errors.ParserError, csv.Error) as error:
        raise SourceError(f"not well-formed CSV (read with delimiter {delimiter!r}): {error}") from error


def check_csv_records(path: ObjectStoragePath, delimiter: str, encoding: str) -> None:
    """Read a CSV file through once, a line at a time, and raise :class:`SourceError` at a NUL
    byte anywhere (text never holds one) or when any record's number of fields differs from
    the header's: pandas would read a row cut short with blanks, as if the customer had them,
    and take a first row with a field too many as holding an index. Blank lines are skipped,
    as pandas skips them; rows are numbered as in messages (1: the first under the header),
    with their line in the file. Text not in ``encoding`` is refused too, saying where."""
    # A cell may be longer than the csv module's default limit (128 KiB); pandas has none.
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    with path.open("rb") as handle:
        records = csv.reader(_decoded_lines(handle, encoding), delimiter=delimiter)
        width, row, wrong, shown = None, 0, 0, []
        for record in records:
            if not record or (len(record) == 1 and not record[0].strip()):
                continue
            if width is None:
                width = len(record)
                continue
            row += 1
            if len(record) != width:
                wrong += 1
                if len(shown) < ROWS_SHOWN:
                    shown.append(f"row {row:,} (line {records.line_num:,}) has {len(record)}")
    if wrong:
        more = ", ..." if wrong > len(shown) else ""
        raise SourceError(
            f"not well-formed CSV (read with delimiter {delimiter!r}): {wrong:,} "
            f"{'row has' if wrong == 1 else 'rows have'} a number of fields other than the header's {width}: "
            f"{', '.join(shown)}{more}; a row cut short or run on would be read with its values "
            "missing or shifted, so the file is refused rather than guessed at"
        )


def _decoded_lines(handle: BinaryIO, encoding: str) -> Iterator[str]:
    """The lines of a binary file as text, refused at the first NUL byte or byte that is not
    ``encoding``, wherever it is."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = 0
    for line in itertools.chain(_lines(handle), [None]):  # None: the end, where a character may be cut short
        nul = -1 if line is None else line.find(b"\x00")
        if nul >= 0:
            raise SourceError(
                f"not a text CSV: it holds binary data (NUL bytes), the first at byte {offset + nul:,}"
            )
        try:
            yield decoder.decode(line or b"", final=line is None)
        except UnicodeDecodeError as error:
            byte = error.object[error.start : error.start + 1]
            raise SourceError(
                f"not {'UTF-8' if encoding == 'utf-8-sig' else encoding} text (byte {byte!r} at offset "
                f"{offset + error.start:,}); save it as UTF-8 or declare its encoding in the contract "
                "(csv: {encoding: ...})"
            ) from error
        offset += len(line or b"")


def _lines(handle: BinaryIO) -> Iterator[bytes]:
    """A binary file's lines, each with its ending: a line feed, a carriage return and line
    feed, or a carriage return alone (old Mac files; pandas ends a line at each of them too)."""
    for line in handle:
        if b"\r" in line.rstrip(b"\r\n"):
            yield from (part for part in BARE_CARRIAGE_RETURN.split(line) if part)
        else:
            yield line


def _parquet_chunks(path: ObjectStoragePath, chunk_rows: int) -> Iterator[pd.DataFrame]:
    try:
        with path.open("rb") as handle:
            parquet = pq.ParquetFile(handle)
            first = 0
            for batch in parquet.iter_batches(batch_size=chunk_rows):
                refuse_nul_bytes(batch, first)
                first += batch.num_rows
                yield batch.to_pandas(types_mapper=EXACT_INTEGERS.get)
            if not first:
                yield parquet.schema_arrow.empty_table().to_pandas(types_mapper=EXACT_INTEGERS.get)
    except pa.ArrowException as error:  # not an outage reading it: those must stay retryable
        raise SourceError(f"not a readable Parquet file (damaged or truncated?): {error}") from error


def parquet_schema(path: ObjectStoragePath) -> pa.Schema:
    """The Arrow schema of a Parquet file, read from its footer alone."""
    try:
        with path.open("rb") as handle:
            return pq.read_schema(handle)
    except pa.ArrowException as error:
        raise SourceError(f"not a readable Parquet file (damaged or truncated?): {error}") from error


def refuse_nul_bytes(batch: pa.RecordBatch, first: int) -> None:
    """Raise :class:`SourceError` naming the first text column of ``batch`` (whose first row is
    row ``first`` of the file) that holds a NUL byte, and its first such rows: text never holds
    one, and the warehouse could not store it in a customer id."""
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        holding = pc.fill_null(pc.match_substring(column, "\x00"), False)
        rows = pc.indices_nonzero(holding)
        if len(rows):
            shown = ", ".join(f"{first + row + 1:,}" for row in rows[:ROWS_SHOWN].to_pylist())
            raise SourceError(
                f"column {name!r} holds binary data (NUL bytes) at rows {shown}"
                f"{', ...' if len(rows) > ROWS_SHOWN else ''}: text never holds one"
            )
