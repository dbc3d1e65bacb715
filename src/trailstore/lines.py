"""Segment lines as bytes, without the event model: what backends and tools need to read IDs,
put an allocated ID into an encoded line, and split a segment into lines in bounded memory."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import BinaryIO

#: the longest line the writer stores and the reader takes in whole; a longer one is damage
MAX_LINE_BYTES = 16 * 1024 * 1024
ID_PREFIX = b'{"event_id":'
_TIMESTAMP_KEY = b'"timestamp":'
_JSON_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
#: what an oversized line is cut down to when it is handed on (as a malformed line)
_OVERSIZED_HEAD = 64
#: lines are read this much at a time: nearly every line fits in one read
_PIECE = 1024 * 1024


def render_line(event_id: int, body: bytes) -> bytes:
    """Give an encoded body (whose first field is its placeholder ``event_id``) its real ID."""
    return b"%s%d,%s\n" % (ID_PREFIX, event_id, body[body.index(b",") + 1 :])


def line_event_id(line: bytes) -> int | None:
    """Read the ``event_id`` of a line written by any version, without a full parse.

    Returns ``None`` for anything else, however hostile (deep nesting, thousands of digits).
    """
    try:
        if line.startswith(ID_PREFIX):
            end = line.find(b",", len(ID_PREFIX))
            digits = line[len(ID_PREFIX) : end]
            if end > 0 and digits.isdigit():
                return int(digits)
        value = json.loads(line).get("event_id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return value if isinstance(value, int) else None


def line_timestamp(line: bytes) -> float | None:
    """The ``timestamp`` of a line laid out as this library and the original writer write it
    (right after ``event_id``), without a full parse; ``None`` when that cannot be exact:
    another layout, the key twice, or escapes that could spell it."""
    if not line.startswith(ID_PREFIX) or b"\\u" in line or line.count(_TIMESTAMP_KEY) != 1:
        return None
    start = line.find(b",", len(ID_PREFIX)) + 1
    if not line.startswith(_TIMESTAMP_KEY, start):
        return None
    start += len(_TIMESTAMP_KEY)
    end = line.find(b",", start)
    number = _JSON_NUMBER.fullmatch(line, start, end) if end > 0 else None
    return None if number is None else float(number[0])


def bounded_lines(segment: BinaryIO, limit: int = MAX_LINE_BYTES) -> Iterator[bytes]:
    """The lines of an open segment (the last may lack its ``\\n``), holding about ``limit``
    bytes at most: a longer line is skipped to its end and handed on as its first bytes
    (ended by ``\\n`` if it had one), which no reader takes for an event."""
    while line := segment.readline(_PIECE):
        if line.endswith(b"\n") or len(line) < _PIECE:
            yield line
            continue
        pieces, size = [line], len(line)
        while size <= limit and (piece := segment.readline(_PIECE)):
            pieces.append(piece)
            size += len(piece)
            if piece.endswith(b"\n"):
                break
        if size <= limit:
            yield b"".join(pieces)
            continue
        head, ended = pieces[0][:_OVERSIZED_HEAD], pieces[-1].endswith(b"\n")
        del pieces
        while not ended and (piece := segment.readline(_PIECE)):
            ended = piece.endswith(b"\n")
        yield head + (b"\n" if ended else b"")
