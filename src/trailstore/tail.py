"""The newest events of a trail, read from the end of each stream.

A stream's IDs rise from segment to segment, so its newest matching events are in its last
segments: each is read backwards in blocks, newest line first, until enough events passed the
filters (a seal that rules a segment out skips it unread). The streams' candidates are then
merged, and the newest ``count`` of them returned in ascending ``event_id``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator

from trailstore.backend import Backend, StreamKey
from trailstore.bounds import ReadBounds
from trailstore.events import AuditEvent
from trailstore.evidence.records import Seal
from trailstore.seal_index import SealIndex

#: an event and its line as stored
Read = tuple[AuditEvent, bytes]
#: how much of a segment is read at a time, from its end
BLOCK_BYTES = 256 * 1024


def lines_backwards(backend: Backend, stream: StreamKey, number: int) -> Iterator[bytes]:
    """The lines of a segment, last first, each as stored (a torn last line without its
    ``\\n``), in memory bounded by the longest line."""
    end = backend.segment_size(stream, number)
    head = b""  # the start of the segment's bytes read so far: may end inside a line
    while end > 0:
        start = max(0, end - BLOCK_BYTES)
        block = backend.read_range(stream, number, start, end) + head
        end = start
        if start > 0:
            cut = block.find(b"\n") + 1
            if cut == 0:  # a line longer than a block: keep reading back
                head = block
                continue
            head, block = block[:cut], block[cut:]
        else:
            head = b""
        pieces = block.split(b"\n")
        if pieces[-1]:
            yield pieces[-1]  # the last line of the segment, torn
        for piece in reversed(pieces[:-1]):
            yield piece + b"\n"


def newest_reads(
    streams: dict[StreamKey, list[int]],
    count: int,
    read_segment_backwards: Callable[[StreamKey, int], Iterator[Read]],
    admits: Callable[[AuditEvent], bool],
    seals: SealIndex,
    bounds: ReadBounds,
) -> list[Read]:
    """The ``count`` newest reads that ``admits`` passes, ascending by ``event_id``."""
    candidates: list[Read] = []
    for stream, numbers in streams.items():
        found = 0
        for number in reversed(numbers):
            if found >= count or _all_below(seals.seal(stream, number), bounds.min_event_id):
                break
            if seals.can_skip(stream, number, bounds):
                continue
            for read in read_segment_backwards(stream, number):
                if admits(read[0]):
                    candidates.append(read)
                    found += 1
                    if found >= count:
                        break
    newest = heapq.nlargest(count, candidates, key=lambda read: read[0].event_id)
    newest.reverse()
    return newest


def _all_below(seal: Seal | None, min_event_id: int | None) -> bool:
    """Whether a sealed segment (and so every older one of its stream) lies below an ID."""
    return (
        min_event_id is not None
        and seal is not None
        and seal.ids is not None
        and seal.ids[1] < min_event_id
    )
