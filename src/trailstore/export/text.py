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
#: the positions of the timestamps in a row, spelt in ISO 8601 with a fixed six digits of
#: microseconds; the ``csv`` module writes the rest (``None`` as an empty field, a float in
#: its exact shortest form)
_MOMENTS = [position for position, column in enumerate(COLUMNS) if column.kind == "timestamp"]


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


def write_csv(events: Iterable[AuditEvent], sink: CountingSink) -> None:
    """RFC 4180 CSV (``\\r\\n`` rows, quoted where needed) in UTF-8 without a byte-order
    mark, a header row of the column names first."""
    text = io.StringIO()
    rows = csv.writer(text)
    rows.writerow(column.name for column in COLUMNS)
    for event in events:
        row: list[object] = list(event_row(event))
        for position in _MOMENTS:
            moment = row[position]
            if isinstance(moment, datetime):
                row[position] = moment.isoformat(timespec="microseconds")
        rows.writerow(row)
        if text.tell() >= _PIECE_BYTES:
            sink.write(text.getvalue().encode())
            text.seek(0)
            text.truncate()
    sink.write(text.getvalue().encode())
