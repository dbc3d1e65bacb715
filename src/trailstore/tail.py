"""The newest events of a trail, read from the end of each stream.

A stream's IDs rise from segment to segment, so its newest matching events are in its last
segments: each is read backwards in blocks, newest line first, until enough events passed the
filters (a seal that rules a segment out skips it unread). The newest ``count`` across the
streams are returned in ascending ``event_id``.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator

from trailstore.backend import Backend, StreamKey
from trailstore.bounds import Read, ReadBounds
from trailstore.evidence.records import Seal
from trailstore.lines import MAX_LINE_BYTES, oversized_line, quick_event_id
from trailstore.seal_index import SealIndex

#: how much of a segment is read at a time, from its end
BLOCK_BYTES = 256 * 1024


def lines_backwards(backend: Backend, stream: StreamKey, number: int) -> Iterator[bytes]:
    """The lines of a segment, last first, each as stored (a torn last line without its
    ``\n``), in memory bounded by ``MAX_LINE_BYTES``: a longer line is handed on as its first
    bytes, as the forward reader does, which no reader takes for an event."""
    end = backend.segment_size(stream, number)
    rest = _LineEnd()  # the end of the line whose start is not read yet
    while end > 0:
        start = max(0, end - BLOCK_BYTES)
        pieces = backend.read_range(stream, number, start, end).split(b"\n")
        end = start
        if len(pieces) == 1:
            rest.prepend(pieces[0])
            continue
        line = rest.line(pieces[-1])
        if line:
            yield line
        for piece in reversed(pieces[1:-1]):
            yield piece + b"\n"
        rest = _LineEnd(pieces[0] + b"\n")
    line = rest.line(b"")
    if line:
        yield line


class _LineEnd:
    """The end of a line met reading backwards, held in pieces up to ``MAX_LINE_BYTES``."""

    def __init__(self, piece: bytes = b"") -> None:
        self._pieces = [piece] if piece else []
        self._size = len(piece)
        self._ended = piece.endswith(b"\n")

    def prepend(self, piece: bytes) -> None:
        self._size += len(piece)
        if self._size <= MAX_LINE_BYTES:
            self._pieces.append(piece)
        else:
            self._pieces = []  # too long to be an event: only its start will be kept

    def line(self, start: bytes) -> bytes:
        """The whole line, given its first bytes."""
        if self._size + len(start) <= MAX_LINE_BYTES:
            return start + b"".join(reversed(self._pieces))
        return oversized_line(start, ended=self._ended)


def newest_reads(
    streams: dict[StreamKey, list[int]],
    count: int,
    lines_of: Callable[[StreamKey, int], Iterator[bytes]],
    parse: Callable[[StreamKey, int, bytes], Read | None],
    seals: SealIndex,
    bounds: ReadBounds,
) -> list[Read]:
    """The ``count`` newest reads that ``parse`` passes (it returns ``None`` for a line it
    filters out), ascending by ``event_id``.

    The newest ``count`` found so far are kept; once there are that many, a stream is read
    back only until its IDs fall below the oldest kept (twice in a row: one low ID may be a
    damaged digit), so all streams together parse little more than ``count`` lines.
    """
    kept: list[tuple[int, int, Read]] = []  # a min-heap of the newest found so far
    order = itertools.count()

    def floor() -> int:
        return kept[0][0] if len(kept) >= count else 0

    for stream, numbers in streams.items():
        for number in reversed(numbers):
            seal = seals.seal(stream, number)
            if _all_below(seal, max(floor(), bounds.min_event_id or 0)):
                break
            if seals.can_skip(stream, number, bounds):
                continue
            if _read_back(stream, number, lines_of, parse, bounds, kept, order, count, floor):
                break
    return [read for _, _, read in sorted(kept)]


def _read_back(
    stream: StreamKey,
    number: int,
    lines_of: Callable[[StreamKey, int], Iterator[bytes]],
    parse: Callable[[StreamKey, int, bytes], Read | None],
    bounds: ReadBounds,
    kept: list[tuple[int, int, Read]],
    order: Iterator[int],
    count: int,
    floor: Callable[[], int],
) -> bool:
    """Read one segment backwards into ``kept``; True when the stream's older segments
    cannot hold anything newer than what is kept (or than ``min_event_id``)."""
    below = 0
    for line in lines_of(stream, number):
        event_id = quick_event_id(line)
        if event_id is not None:
            if event_id < max(floor(), bounds.min_event_id or 0):
                below += 1
                if below == 2:
                    return True
                continue
            below = 0
            if not bounds.holds_id(event_id):
                continue
        read = parse(stream, number, line)
        if read is not None:
            heapq.heappush(kept, (read[0].event_id, next(order), read))
            if len(kept) > count:
                heapq.heappop(kept)
    return False


def _all_below(seal: Seal | None, event_id: int) -> bool:
    """Whether a sealed segment (and so every older one of its stream) lies below an ID."""
    return seal is not None and seal.ids is not None and seal.ids[1] < event_id
