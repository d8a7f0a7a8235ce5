"""Files in the run folder: written atomically, read with reasons when they cannot be.

Every phase writes through here, so a reader (or a rerun) sees an earlier file whole or
the new one whole, never half of one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churn.sources import SourceError

CSV_SNIFF_BYTES = 8192
# Rows per Parquet row group: a reader going batch by batch decompresses one group at a time,
# so this bounds its memory however long the table is.
PARQUET_ROW_GROUP_ROWS = 100_000


@contextmanager
def writing_atomically(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to, renamed onto ``path`` once the write is
    done, so readers see the old file or the whole new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    yield partial
    os.replace(partial, path)


def write_parquet_atomically(frame: pd.DataFrame, path: Path) -> Path:
    """Write Parquet so that readers never see half a file."""
    return write_parquet_batches_atomically([frame], path)


def write_parquet_batches_atomically(batches: Iterable[pd.DataFrame | pa.Table], path: Path) -> Path:
    """Write frames (or Arrow tables) one after the other as one Parquet file, holding one at
    a time in memory, so that readers never see half a file. The first batch sets the schema."""
    with writing_atomically(path) as partial:
        writer = None
        try:
            for batch in batches:
                schema = writer.schema if writer else None
                table = (
                    batch
                    if isinstance(batch, pa.Table)
                    else pa.Table.from_pandas(batch, schema, preserve_index=False)
                )
                writer = writer or pq.ParquetWriter(partial, table.schema)
                writer.write_table(table, row_group_size=PARQUET_ROW_GROUP_ROWS)
        finally:
            if writer is not None:
                writer.close()
        if writer is None:
            raise ValueError(f"nothing to write to {path}: no batch, not even an empty one")
    return path


def read_parquet_batches(path: Path, batch_rows: int | None = None) -> Iterator[pd.DataFrame]:
    """A Parquet file as frames of at most ``batch_rows`` rows (a row group's), in file order."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows or PARQUET_ROW_GROUP_ROWS):
        yield batch.to_pandas()


def parquet_rows(path: Path) -> int:
    """How many rows a Parquet file holds, from its footer alone."""
    return pq.ParquetFile(path).metadata.num_rows


def read_parquet_row_range(
    path: Path, first: int, end: int, batch_rows: int | None = None
) -> Iterator[pd.DataFrame]:
    """Rows ``first`` to ``end`` (exclusive) of a Parquet file as frames of at most ``batch_rows``
    rows, in file order, decompressing only the row groups that hold them."""
    parquet = pq.ParquetFile(path)
    groups, group_first, position = [], None, 0
    for group in range(parquet.metadata.num_row_groups):
        group_end = position + parquet.metadata.row_group(group).num_rows
        if position < end and group_end > first:
            groups.append(group)
            group_first = position if group_first is None else group_first
        position = group_end
    position = group_first or 0
    for batch in parquet.iter_batches(batch_size=batch_rows or PARQUET_ROW_GROUP_ROWS, row_groups=groups):
        wanted = batch.slice(
            max(first - position, 0), max(min(end, position + batch.num_rows) - max(first, position), 0)
        )
        position += batch.num_rows
        if wanted.num_rows:
            yield wanted.to_pandas()


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


def read_snapshot_file(path: Path, file_format: str) -> pd.DataFrame:
    """Read a CSV or Parquet snapshot; CSV cells stay text, so nothing is silently coerced.

    Raises :class:`SourceError` saying why the file is not readable, without its path: the
    caller names the snapshot.
    """
    if path.stat().st_size == 0:
        raise SourceError("the file is empty (0 bytes)")
    if file_format == "csv":
        return read_csv_text(path)
    try:
        return pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several types for damaged files
        raise SourceError(f"not a readable Parquet file (damaged or truncated?): {error}") from error


def read_csv_text(path: Path) -> pd.DataFrame:
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


def read_snapshot_chunks(path: Path, file_format: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """A CSV or Parquet snapshot as frames of at most ``chunk_rows`` rows, in file order, each
    indexed by its rows' positions in the file (0 for the first row under the header), so a
    reader holds one chunk, never the table. Cells and failures are those of
    :func:`read_snapshot_file`: CSV cells stay text, and a file that is not readable raises
    :class:`SourceError` saying why, when the unreadable part is reached. A file without rows
    still yields one empty frame, so its columns are seen.
    """
    if path.stat().st_size == 0:
        raise SourceError("the file is empty (0 bytes)")
    chunks = _csv_text_chunks(path, chunk_rows) if file_format == "csv" else _parquet_chunks(path, chunk_rows)
    first = 0
    for chunk in chunks:
        chunk.index = pd.RangeIndex(first, first + len(chunk))
        first += len(chunk)
        yield chunk


def _csv_text_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    with path.open("rb") as handle:
        head = handle.read(CSV_SNIFF_BYTES)
    if b"\x00" in head:
        raise SourceError("not a text CSV: it holds binary data (NUL bytes) in its first bytes")
    try:
        # The parser and options of read_csv_text: chunking changes how much is held, not what is read.
        with (
            path.open("rb") as handle,
            pd.read_csv(
                handle, dtype="string", keep_default_na=False, encoding="utf-8", chunksize=chunk_rows
            ) as reader,
        ):
            yield from reader
    except UnicodeDecodeError as error:
        raise SourceError(
            f"not UTF-8 text (byte {error.object[error.start : error.start + 1]!r} at offset {error.start}); "
            "save it as UTF-8"
        ) from error
    except pd.errors.EmptyDataError as error:
        raise SourceError("it holds no header row: the file has only blank lines") from error
    except pd.errors.ParserError as error:
        raise SourceError(f"not well-formed CSV: {error}") from error


def _parquet_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    try:
        with path.open("rb") as handle:
            parquet = pq.ParquetFile(handle)
            empty = True
            for batch in parquet.iter_batches(batch_size=chunk_rows):
                empty = False
                yield batch.to_pandas()
            if empty:
                yield parquet.schema_arrow.empty_table().to_pandas()
    except Exception as error:  # pyarrow raises several types for damaged files
        raise SourceError(f"not a readable Parquet file (damaged or truncated?): {error}") from error
