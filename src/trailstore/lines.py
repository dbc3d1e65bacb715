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
_ID_START = len(ID_PREFIX)
#: longer digits are no ID a writer gives (and ``int`` refuses thousands of them)
_MAX_ID_DIGITS = 20
_TIMESTAMP_NAME = b'"timestamp"'
_TIMESTAMP_KEY = _TIMESTAMP_NAME + b":"
#: a ``\u`` escape of a character of ``event_id`` or ``timestamp`` (a-z and ``_``), the only
#: other way to spell the names in JSON; the writer escapes none of them
_ESCAPED_NAME_CHARACTER = re.compile(rb"\\u00(?:5[fF]|6[1-9a-fA-F]|7[0-9aA])")
_JSON_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
#: what an oversized line is cut down to when it is handed on (as a malformed line)
_OVERSIZED_HEAD = 64
#: lines are read this much at a time: nearly every line fits in one read
_PIECE = 1024 * 1024


def render_line(event_id: int, body: bytes) -> bytes:
    """Give an encoded body (whose first field is its placeholder ``event_id``) its real ID."""
    return b"%s%d,%s\n" % (ID_PREFIX, event_id, body[body.index(b",") + 1 :])


def names_once(data: bytes, lines: int = 1, end: int | None = None) -> bool:
    """Whether ``data[:end]``, ``lines`` lines each naming ``event_id`` and ``timestamp``,
    names each only once per line and cannot spell either with escapes: then the value at a
    line's start is the one a full parse takes (JSON lets a later duplicate key win)."""
    stop = len(data) if end is None else end
    if lines == 1 and stop == len(data):
        return _named_once(data)
    return (
        data.count(b'"event_id"', 0, stop) == lines
        and data.count(_TIMESTAMP_NAME, 0, stop) == lines
        and _ESCAPED_NAME_CHARACTER.search(data, 0, stop) is None
    )


def _named_once(line: bytes) -> bool:
    """``names_once`` of one line, in a few searches (it is asked of every line a reader may
    skip, and ``bytes.count`` of a word is several times slower)."""
    for name in (b'"event_id"', _TIMESTAMP_NAME):
        first = line.find(name)
        if first < 0 or line.find(name, first + len(name)) >= 0:
            return False
    return b"\\u" not in line or _ESCAPED_NAME_CHARACTER.search(line) is None


def split_lines(data: bytes) -> list[bytes]:
    """``data`` cut after each ``\n``, the only line end of the format (``bytes.splitlines``
    also cuts at ``\r`` and others, which JSON allows inside a line)."""
    lines = [line + b"\n" for line in data.split(b"\n")]
    last = lines.pop()[:-1]
    if last:
        lines.append(last)
    return lines


def line_event_id(line: bytes) -> int | None:
    """Read the ``event_id`` a line was written under by any version, without a full parse:
    where it stands (locating a line, recovering the counter), even in a damaged line.

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


def quick_event_id(line: bytes) -> int | None:
    """The ``event_id`` a full parse of a line would give, read from its start without one;
    ``None`` when only a full parse can tell (another layout, a name twice or escaped): what
    a reader may skip a line by. (Written out in full: it is asked of every line skipped.)"""
    if not line.startswith(ID_PREFIX):
        return None
    end = line.find(b",", _ID_START)
    digits = line[_ID_START:end]
    if end < 0 or not digits.isdigit() or len(digits) > _MAX_ID_DIGITS:
        return None
    if line.find(b'"event_id"', _ID_START) >= 0:
        return None
    first = line.find(_TIMESTAMP_NAME, end)
    if first < 0 or line.find(_TIMESTAMP_NAME, first + len(_TIMESTAMP_NAME)) >= 0:
        return None
    if b"\\u" in line and _ESCAPED_NAME_CHARACTER.search(line) is not None:
        return None
    return int(digits)


def line_timestamp(line: bytes) -> float | None:
    """The ``timestamp`` of a line laid out as this library and the original writer write it
    (right after ``event_id``), without a full parse; ``None`` when that cannot be exact:
    another layout, a name twice, or escapes that could spell one."""
    if not line.startswith(ID_PREFIX) or not names_once(line):
        return None
    start = line.find(b",", len(ID_PREFIX)) + 1
    if not line.startswith(_TIMESTAMP_KEY, start):
        return None
    start += len(_TIMESTAMP_KEY)
    end = line.find(b",", start)
    number = _JSON_NUMBER.fullmatch(line, start, end) if end > 0 else None
    return None if number is None else float(number[0])


def oversized_line(start: bytes, *, ended: bool) -> bytes:
    """What a line longer than ``MAX_LINE_BYTES`` is handed on as, by every reader: its first
    bytes, ended by ``\\n`` if it was, which no reader takes for an event."""
    return start[:_OVERSIZED_HEAD] + (b"\n" if ended else b"")


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
        head, ended = pieces[0], pieces[-1].endswith(b"\n")
        del pieces
        while not ended and (piece := segment.readline(_PIECE)):
            ended = piece.endswith(b"\n")
        yield oversized_line(head, ended=ended)
