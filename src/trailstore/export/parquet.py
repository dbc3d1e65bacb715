"""Parquet through pyarrow (the ``parquet`` extra), one bounded row group at a time."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from trailstore.errors import MissingDependencyError
from trailstore.events import AuditEvent
from trailstore.export.destination import CountingSink
from trailstore.export.schema import COLUMNS, ColumnKind, Row, event_row

#: a row group closes at this many rows (readers skip and parallelise by row group) ...
ROW_GROUP_ROWS = 65_536
#: ... or once its text reaches about this size, so that large payloads stay bounded too
ROW_GROUP_TEXT_BYTES = 64 * 1024 * 1024
#: the rows of a row group are turned into Arrow data in this many slices
_SLICES = 16
#: the columns that get dictionary encoding and min/max statistics per row group: JSON text is
#: mostly unique and its min and max of no use to a reader
_PLAIN = [column.name for column in COLUMNS if column.kind != "json"]


def require_pyarrow() -> None:
    """Raise ``MissingDependencyError`` unless pyarrow can be imported: checked before an
    export opens its destination."""
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            "exporting Parquet needs pyarrow: pip install 'trailstore[parquet]'"
        ) from exc


def _arrow_type(kind: ColumnKind) -> Any:
    import pyarrow as pa

    types = {
        "integer": pa.int64(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "float": pa.float64(),
        "text": pa.string(),
        "json": pa.string(),
    }
    return types[kind]


def arrow_schema() -> Any:
    """The Arrow schema of ``COLUMNS``: non-null columns are required in the file."""
    import pyarrow as pa

    return pa.schema(
        pa.field(column.name, _arrow_type(column.kind), nullable=column.nullable)
        for column in COLUMNS
    )


def _text(row: Row) -> int:
    return sum(len(value) for value in row if isinstance(value, str))


class _RowGroup:
    """The row group being filled. Its rows become Arrow batches a slice at a time, so that
    few Python objects are held, and the batches are written as one row group when full."""

    def __init__(self, writer: Any, schema: Any) -> None:
        self._writer, self._schema = writer, schema
        self._rows: list[Row] = []
        self._text = 0
        self._batches: list[Any] = []
        self._batched_rows = self._batched_text = 0

    def add(self, row: Row) -> None:
        self._rows.append(row)
        self._text += _text(row)
        rows, text = self._batched_rows + len(self._rows), self._batched_text + self._text
        if rows >= ROW_GROUP_ROWS or text >= ROW_GROUP_TEXT_BYTES:
            self.write()
        elif (
            len(self._rows) * _SLICES >= ROW_GROUP_ROWS
            or self._text * _SLICES >= ROW_GROUP_TEXT_BYTES
        ):
            self._batch()

    def _batch(self) -> None:
        import pyarrow as pa

        typed = zip(zip(*self._rows, strict=True), self._schema, strict=True)
        arrays = [pa.array(values, type=field.type) for values, field in typed]
        self._batches.append(pa.RecordBatch.from_arrays(arrays, schema=self._schema))
        self._batched_rows += len(self._rows)
        self._batched_text += self._text
        self._rows.clear()
        self._text = 0

    def write(self) -> None:
        """Write the rows held as one row group (if any), and let them go."""
        import pyarrow as pa

        if self._rows:
            self._batch()
        if self._batches:
            table = pa.Table.from_batches(self._batches, schema=self._schema)
            self._writer.write_table(table, ROW_GROUP_ROWS)
        self._batches.clear()
        self._batched_rows = self._batched_text = 0


def write_parquet(events: Iterable[AuditEvent], sink: CountingSink) -> None:
    """Events as Parquet (zstd), holding no more than one row group's rows at a time."""
    import pyarrow.parquet as pq

    schema = arrow_schema()
    with pq.ParquetWriter(
        sink,
        schema,
        compression="zstd",
        use_dictionary=_PLAIN,
        write_statistics=_PLAIN,
    ) as writer:
        group = _RowGroup(writer, schema)
        for event in events:
            group.add(event_row(event))
        group.write()
