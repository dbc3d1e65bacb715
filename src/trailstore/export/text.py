"""The text formats, with the standard library alone: JSON lines verbatim, and CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import datetime

from trailstore.events import AuditEvent
from trailstore.export.destination import CountingSink
from trailstore.export.schema import COLUMNS, event_row

#: output is handed to the destination in pieces of about this size: few writes, little held
_PIECE_BYTES = 1024 * 1024


def write_jsonl(lines: Iterable[bytes], sink: CountingSink) -> None:
    """The lines as the trail stores them, byte for byte (each ``\\n`` ended)."""
    piece: list[bytes] = []
    size = 0
    for line in lines:
        piece.append(line)
        size += len(line)
        if size >= _PIECE_BYTES:
            sink.write(b"".join(piece))
            piece.clear()
            size = 0
    sink.write(b"".join(piece))


def _csv_text(value: object) -> object:
    """A timestamp as ISO 8601 with a fixed six digits of microseconds; other values as the
    ``csv`` module writes them (``None`` as an empty field, a float in its exact shortest
    form)."""
    return value.isoformat(timespec="microseconds") if isinstance(value, datetime) else value


def write_csv(events: Iterable[AuditEvent], sink: CountingSink) -> None:
    """RFC 4180 CSV (``\\r\\n`` rows, quoted where needed) in UTF-8 without a byte-order
    mark, a header row of the column names first."""
    text = io.StringIO()
    rows = csv.writer(text)
    rows.writerow(column.name for column in COLUMNS)
    for event in events:
        rows.writerow([_csv_text(value) for value in event_row(event)])
        if text.tell() >= _PIECE_BYTES:
            sink.write(text.getvalue().encode())
            text.seek(0)
            text.truncate()
    sink.write(text.getvalue().encode())
