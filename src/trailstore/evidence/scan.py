"""What evidence needs from a run of complete segment lines: each line's ID, timestamp, place
and checksum, read in one regular-expression pass where the lines are this library's (and the
original writer's) compact JSON, and by a full parse only where they are not. A line that is
not an event (damage) has no ID and no timestamp."""

from __future__ import annotations

import json
import math
import re
import zlib
from array import array
from dataclasses import dataclass

from trailstore.encoding import decode_line
from trailstore.lines import names_once, split_lines

#: how a line starts as this library and the original writer render it: ``event_id`` first,
#: then ``timestamp`` (JSON numbers only: a line that does not start so is parsed in full)
_LEADING = (
    rb'\{"event_id":([1-9]\d{0,18}),"timestamp":(-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?)[,}]'
)
_LEADING_FIELDS = re.compile(_LEADING)
#: the same after a newline: searching for a newline and a literal is several times faster
#: than a multi-line ``^``
_NEXT_LEADING_FIELDS = re.compile(b"\n" + _LEADING)
#: checksums are stored big-endian whatever the machine
_LITTLE_ENDIAN = array("I", [1]).tobytes()[0] == 1


@dataclass(frozen=True)
class Lines:
    """Complete lines at the start of a block: parallel columns, offsets relative to it."""

    #: ``None`` for a line that is not an event
    ids: list[int | None]
    timestamps: list[float | None]
    #: where each line starts; ``starts[i + 1]`` (or ``size``) is where it ends
    starts: list[int]
    size: int

    def __len__(self) -> int:
        return len(self.ids)

    def end(self, index: int) -> int:
        """Offset just past line ``index``."""
        return self.starts[index + 1] if index + 1 < len(self.starts) else self.size

    def checksums(self, block: bytes, count: int) -> bytes:
        """CRC-32 of each of the first ``count`` lines, packed big-endian: they locate a
        changed line; the SHA-256 of the bytes is what proves them."""
        view = memoryview(block)
        ends = [*self.starts[1:count], self.end(count - 1)] if count else []
        sums = array("I", [zlib.crc32(view[s:e]) for s, e in zip(self.starts, ends, strict=False)])
        if _LITTLE_ENDIAN:
            sums.byteswap()
        return sums.tobytes()


def scan(block: bytes, end: int) -> Lines:
    """The lines of ``block[:end]``, which must end with a newline (or be empty)."""
    if not end:
        return Lines([], [], [], 0)
    first = _LEADING_FIELDS.match(block, 0, end)
    rest = list(_NEXT_LEADING_FIELDS.finditer(block, 0, end))
    if first is None or len(rest) + 1 != block.count(b"\n", 0, end):
        return _scan_slowly(block[:end])  # some line does not start as rendered here
    matches = [first, *rest]
    lines = Lines(
        ids=[int(match[1]) for match in matches],
        timestamps=[float(match[2]) for match in matches],
        starts=[0, *(match.start() + 1 for match in rest)],
        size=end,
    )
    if not names_once(block, len(matches), end):  # a line names a field twice: parse those
        for index, start in enumerate(lines.starts):
            line = block[start : lines.end(index)]
            if not names_once(line):
                lines.ids[index], lines.timestamps[index] = _fields(line)
    return lines


def head_fields(head: bytes) -> tuple[int | None, float | None]:
    """``(event_id, timestamp)`` from the first bytes of a line too long to hold whole, if
    it starts as this library renders events; ``(None, None)`` otherwise."""
    match = _LEADING_FIELDS.match(head)
    return (int(match[1]), float(match[2])) if match else (None, None)


def _scan_slowly(data: bytes) -> Lines:
    ids: list[int | None] = []
    timestamps: list[float | None] = []
    starts: list[int] = []
    offset = 0
    for line in split_lines(data):
        event_id, timestamp = _fields(line)
        ids.append(event_id)
        timestamps.append(timestamp)
        starts.append(offset)
        offset += len(line)
    return Lines(ids, timestamps, starts, len(data))


def _fields(line: bytes) -> tuple[int | None, float | None]:
    """``(event_id, timestamp)`` of a line in any JSON layout (a later duplicate key wins,
    as it does for the reader), or as the reader's parse takes them (it also takes numbers
    spelled as strings); ``(None, None)`` for a line that is not an event."""
    try:
        document = json.loads(line)
    except (ValueError, RecursionError):
        return None, None
    if isinstance(document, dict):
        event_id, timestamp = document.get("event_id"), document.get("timestamp")
        if (
            isinstance(event_id, int)
            and not isinstance(event_id, bool)
            and event_id >= 1
            and isinstance(timestamp, int | float)
            and not isinstance(timestamp, bool)
            and math.isfinite(timestamp)
        ):
            return event_id, float(timestamp)
    try:
        event = decode_line(line)
    except ValueError:
        return None, None
    return (event.event_id, event.timestamp) if event.event_id >= 1 else (None, None)


def pack_checksums(sums: list[int]) -> bytes:
    packed = array("I", sums)
    if _LITTLE_ENDIAN:
        packed.byteswap()
    return packed.tobytes()


def unpack_checksums(packed: bytes) -> list[int]:
    """The CRC-32 values ``Lines.checksums`` packed."""
    sums = array("I")
    sums.frombytes(packed)
    if _LITTLE_ENDIAN:
        sums.byteswap()
    return sums.tolist()
