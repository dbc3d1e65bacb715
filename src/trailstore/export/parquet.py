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
#: the columns whose min and max are kept per row group: readers prune by them (JSON's are of
#: no use)
_STATISTICS = [column.name for column in COLUMNS if column.kind != "json"]


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


class _RowGroup:
    """The rows of the row group being filled, column by column."""

    def __init__(self, writer: Any, schema: Any) -> None:
        self._writer, self._schema = writer, schema
        self._columns: list[list[Any]] = [[] for _ in COLUMNS]
        self._text = 0

    def add(self, row: Row) -> None:
        for values, value in zip(self._columns, row, strict=True):
            values.append(value)
        self._text += sum(len(value) for value in row if isinstance(value, str))
        if len(self._columns[0]) >= ROW_GROUP_ROWS or self._text >= ROW_GROUP_TEXT_BYTES:
            self.write()

    def write(self) -> None:
        """Write the rows held as one row group (if any), and let them go."""
        if not self._columns[0]:
            return
        import pyarrow as pa

        typed = zip(self._columns, self._schema, strict=True)
        arrays = [pa.array(values, type=field.type) for values, field in typed]
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self._schema), ROW_GROUP_ROWS)
        for values in self._columns:
            values.clear()
        self._text = 0


def write_parquet(events: Iterable[AuditEvent], sink: CountingSink) -> None:
    """Events as Parquet (zstd), holding no more than one row group's rows at a time."""
    import pyarrow.parquet as pq

    schema = arrow_schema()
    with pq.ParquetWriter(sink, schema, compression="zstd", write_statistics=_STATISTICS) as writer:
        group = _RowGroup(writer, schema)
        for event in events:
            group.add(event_row(event))
        group.write()
