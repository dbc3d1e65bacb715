"""Export a trail's events as CSV, Parquet or JSON lines, streaming in bounded memory.

``export_events(reader, destination, format=..., **filters)`` reads the events the reader's
``iter_events`` filters select (the same keywords) and writes them to a path or a binary file:

- ``jsonl``: the lines exactly as the trail stores them (``iter_lines``), byte for byte;
- ``csv`` and ``parquet``: one row per event in the flat schema below (``COLUMNS``), the
  payload as JSON text, so that nothing of an event is lost and a spreadsheet, DuckDB or
  pandas reads it as it is. Parquet needs pyarrow: ``pip install 'trailstore[parquet]'``.

===================  ============================  ===================  ========
column               CSV                           Parquet              null
===================  ============================  ===================  ========
``event_id``         integer                       int64                never
``timestamp``        ISO 8601 UTC, µs (1)          timestamp[us, UTC]   (1)
``timestamp_unix``   float (2)                     double               never
``domain``           text                          string               never
``category``         text                          string               never
``model_name``       text                          string               never
``operation``        ``create|update|delete``      string               never
``logical_user_id``  text                          string               never
``request_id``       text                          string               yes
``before``           JSON (3)                      string, JSON (3)     yes
``after``            JSON (3)                      string, JSON (3)     yes
``delta``            JSON (3)                      string, JSON (3)     yes
===================  ============================  ===================  ========

(1) The stored Unix seconds rounded to the microsecond, in CSV as
``2024-05-01T12:00:00.250000+00:00``; null only for an instant outside the years 1-9999.

(2) The stored float exactly (in CSV in its shortest exact spelling), for sorting and joining
without rounding.

(3) Compact JSON, non-ASCII text as is; ``delta`` maps each field to ``{"old", "new",
"removed"}`` with the members that are null left out, as stored; null when the event has no
such part.

CSV is RFC 4180 (``\\r\\n`` rows, a header row) in UTF-8 without a byte-order mark; a null is
an empty field, so an empty ``request_id`` reads back as null (Parquet and JSON lines keep
the difference). Parquet is written in row groups of at most ``ROW_GROUP_ROWS`` rows (fewer
when their text passes ``ROW_GROUP_TEXT_BYTES``), zstd compressed, with statistics on the
non-JSON columns: one row group is the most an export holds in memory.

A path is written to a temporary file beside it and renamed into place when the export has
completed, so it never holds half an export (one that is killed may leave the hidden
temporary file, ``.NAME.*.tmp``); an existing path is refused with
``DestinationExistsError`` unless ``overwrite=True``. A binary file is written to as it is
and left open; what was written stays there if the export fails. Bad input (an unknown
format, a missing pyarrow, an existing path, a bad filter) raises before anything is
written. Damage the reader meets is counted in ``reader.report``, as when reading.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from typing import Literal, TypeVar, Unpack

from trailstore.bounds import EventFilters
from trailstore.errors import ConfigurationError
from trailstore.export.destination import CountingSink, Destination, check_destination, opened
from trailstore.export.parquet import (
    ROW_GROUP_ROWS,
    ROW_GROUP_TEXT_BYTES,
    require_pyarrow,
    write_parquet,
)
from trailstore.export.schema import COLUMNS, Column
from trailstore.export.text import write_csv, write_jsonl
from trailstore.reader import AuditTrailReader

__all__ = [
    "COLUMNS",
    "PROGRESS_EVERY",
    "ROW_GROUP_ROWS",
    "ROW_GROUP_TEXT_BYTES",
    "Column",
    "Destination",
    "EventFilters",
    "ExportFormat",
    "ExportResult",
    "FormatName",
    "export_events",
]

#: ``progress`` is called each time this many more events have been exported, and at the end
PROGRESS_EVERY = 10_000
_T = TypeVar("_T")


class ExportFormat(StrEnum):
    """The formats an export writes: the flat schema as CSV or Parquet, or the stored lines."""

    CSV = "csv"
    PARQUET = "parquet"
    JSONL = "jsonl"


#: the format names ``export_events`` takes besides ``ExportFormat`` members
FormatName = Literal["csv", "parquet", "jsonl"]


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: ``events`` events (rows, or lines), in ``bytes`` bytes."""

    events: int
    bytes: int


class _Progress:
    """Counts the items passed through, and reports the count every ``PROGRESS_EVERY``."""

    def __init__(self, callback: Callable[[int], object] | None) -> None:
        self.count = 0
        self._callback = callback

    def through(self, items: Iterable[_T]) -> Iterator[_T]:
        for item in items:
            self.count += 1
            if self._callback is not None and self.count % PROGRESS_EVERY == 0:
                self._callback(self.count)
            yield item


def _format(name: ExportFormat | str) -> ExportFormat:
    try:
        return ExportFormat(name)
    except ValueError:
        known = ", ".join(member.value for member in ExportFormat)
        raise ConfigurationError(f"unknown export format {name!r}; use one of {known}") from None


def export_events(
    reader: AuditTrailReader,
    destination: Destination,
    *,
    format: ExportFormat | FormatName,
    overwrite: bool = False,
    progress: Callable[[int], object] | None = None,
    **filters: Unpack[EventFilters],
) -> ExportResult:
    """Write the events of ``reader`` that ``filters`` select to ``destination`` (a path or
    a binary file) as ``format``, in ascending ``event_id``.

    ``progress`` is called with the number of events exported so far every
    ``PROGRESS_EVERY`` events and once at the end. Raises ``ConfigurationError`` for an
    unknown format or a bad filter, ``MissingDependencyError`` for Parquet without pyarrow
    and ``DestinationExistsError`` for an existing path without ``overwrite``, all before
    writing anything.
    """
    chosen = _format(format)
    if chosen is ExportFormat.PARQUET:
        require_pyarrow()
    counter = _Progress(progress)
    write: Callable[[CountingSink], None]
    if chosen is ExportFormat.JSONL:
        write = partial(write_jsonl, counter.through(reader.iter_lines(**filters)))
    else:
        events = counter.through(reader.iter_events(**filters))
        write = partial(write_csv if chosen is ExportFormat.CSV else write_parquet, events)
    check_destination(destination, overwrite=overwrite)
    with opened(destination, overwrite=overwrite) as sink:
        write(sink)
    if progress is not None:
        progress(counter.count)
    return ExportResult(events=counter.count, bytes=sink.written)
