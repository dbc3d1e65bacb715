"""Follow a trail: yield its events as writers append them, each once, in ``event_id`` order.

Each stream has a cursor (segment, byte offset) that moves past complete lines only, so a line
is read once, however many polls it takes to be written, and across rotation. A poll reads
every stream to its end; writers in other threads, processes or hosts may still be writing a
lower ID when a higher one is read, so an event is held until every lower ID has been read, or
until the lower ones have been missing for ``settle`` seconds (a writer that died after taking
them leaves a gap for good). An ID that turns up after that is still yielded, late, never
dropped. Object stores are followed the same way, by polling.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from trailstore.backend import Backend, StreamKey
from trailstore.events import AuditEvent
from trailstore.lines import MAX_LINE_BYTES, line_event_id

log = logging.getLogger("trailstore")
#: an event and its line as stored
Read = tuple[AuditEvent, bytes]
#: at most this much of a segment is held at once
_BLOCK_BYTES = 1024 * 1024


#: how long a follower waits for a missing lower ID before it goes on without it
DEFAULT_SETTLE_SECONDS = 2.0


@dataclass
class FollowSettings:
    """How often to look for new lines, and how long a missing lower ID is waited for."""

    poll_interval: float
    settle: float = DEFAULT_SETTLE_SECONDS


class StreamCursor:
    """Where the complete lines read from one stream end."""

    def __init__(
        self,
        backend: Backend,
        stream: StreamKey,
        segment: int,
        parse: Callable[[StreamKey, int, Iterator[bytes]], Iterator[Read]],
        on_torn: Callable[[StreamKey, int], None],
    ) -> None:
        self._backend, self.stream = backend, stream
        self.segment, self.offset = segment, 0
        self._parse, self._on_torn = parse, on_torn

    def drain(self, after_event_id: int) -> Iterator[Read]:
        """Every complete line written since the last drain, parsed, then on into newer
        segments; lines with IDs up to ``after_event_id`` are passed over unparsed."""
        size = _BLOCK_BYTES
        while True:
            try:
                block = self._backend.read_range(
                    self.stream, self.segment, self.offset, self.offset + size
                )
            except FileNotFoundError:
                block = b""  # pruned or not created yet: newer segments tell
            complete = block[: block.rfind(b"\n") + 1]
            if not complete and len(block) == size and size <= MAX_LINE_BYTES:
                size *= 2  # one line longer than a block
                continue
            if not complete and len(block) == size:  # longer than any line: damage
                complete = block
            if complete:
                self.offset += len(complete)
                size = _BLOCK_BYTES
                lines = complete.splitlines(keepends=True)
                wanted = (line for line in lines if not _at_or_below(line, after_event_id))
                yield from self._parse(self.stream, self.segment, wanted)
                continue
            newer = [n for n in self._backend.list_segments(self.stream) if n > self.segment]
            if not newer:
                return
            if block:  # a writer that died mid-line left it; writing went on in a newer one
                self._on_torn(self.stream, self.segment)
            self.segment, self.offset = newer[0], 0


def _at_or_below(line: bytes, event_id: int) -> bool:
    """Whether a line's ID, read without a full parse, is at most ``event_id``."""
    line_id = line_event_id(line)
    return line_id is not None and line_id <= event_id


class Sequencer:
    """Releases reads in ``event_id`` order: holds one until every lower ID has come, or
    until they have been missing ``settle`` seconds; a late one is released when it comes."""

    def __init__(self, after_event_id: int, settle: float, on_duplicate: Callable[[], None]):
        self.next_id = after_event_id + 1
        self._settle, self._on_duplicate = settle, on_duplicate
        self._held: list[tuple[int, float, int, Read]] = []
        self._order = itertools.count()
        self._gaps: list[list[int]] = []  # IDs passed over, still welcome: [first, last]

    def add(self, read: Read, now: float) -> Iterator[Read]:
        """Hold a read; yield it at once if it is a late one."""
        event_id = read[0].event_id
        if event_id >= self.next_id:
            heapq.heappush(self._held, (event_id, now, next(self._order), read))
        elif self._take_from_gap(event_id):
            yield read
        else:
            self._duplicate(event_id)

    def release(self, now: float, *, through: int = 0) -> Iterator[Read]:
        """Yield the held reads that are due, in ``event_id`` order; those up to ``through``
        without waiting for the IDs below them."""
        while self._held:
            event_id, since, _, read = self._held[0]
            if not (event_id <= max(self.next_id, through) or now - since >= self._settle):
                return
            heapq.heappop(self._held)
            if event_id < self.next_id:
                self._duplicate(event_id)
                continue
            if event_id > self.next_id:
                self._gaps.append([self.next_id, event_id - 1])
                log.info("following on past missing event IDs %d..%d", self.next_id, event_id - 1)
            self.next_id = event_id + 1
            yield read

    @property
    def last_held(self) -> int:
        """The highest ID held (0 when none is)."""
        return max((held[0] for held in self._held), default=0)

    def _take_from_gap(self, event_id: int) -> bool:
        for position, (first, last) in enumerate(self._gaps):
            if first <= event_id <= last:
                pieces = [[first, event_id - 1], [event_id + 1, last]]
                self._gaps[position : position + 1] = [[a, b] for a, b in pieces if a <= b]
                return True
        return False

    def _duplicate(self, event_id: int) -> None:
        self._on_duplicate()
        log.warning("event_id %d appears more than once", event_id)


def follow_reads(
    backend: Backend,
    cursors: dict[StreamKey, StreamCursor],
    new_cursor: Callable[[StreamKey], StreamCursor],
    after_event_id: int,
    settings: FollowSettings,
    stop: threading.Event | None,
    on_duplicate: Callable[[], None],
) -> Iterator[Read]:
    """Catch up from ``cursors``, then poll every stream (new ones too) until ``stop`` is set
    or the consumer stops iterating; every read with an ID above ``after_event_id`` once."""
    sequencer = Sequencer(after_event_id, settings.settle, on_duplicate)
    # catching up: what was written before comes in ID order from a merge of the
    # streams, and an ID missing there is not waited for (one written meanwhile is late)
    handed_out = backend.last_event_id()
    _add_new_streams(backend, cursors, new_cursor)
    drains = [cursor.drain(after_event_id) for cursor in cursors.values()]
    for read in heapq.merge(*drains, key=lambda read: read[0].event_id):
        now = time.monotonic()
        yield from sequencer.add(read, now)
        yield from sequencer.release(now, through=handed_out)
    while True:
        _add_new_streams(backend, cursors, new_cursor)
        for cursor in list(cursors.values()):
            for read in cursor.drain(after_event_id):
                yield from sequencer.add(read, time.monotonic())
        stopping = stop is not None and stop.is_set()
        through = sequencer.last_held if stopping else 0
        yield from sequencer.release(time.monotonic(), through=through)
        if stopping:
            return
        if stop is not None:
            stop.wait(settings.poll_interval)
        else:
            time.sleep(settings.poll_interval)


def _add_new_streams(
    backend: Backend,
    cursors: dict[StreamKey, StreamCursor],
    new_cursor: Callable[[StreamKey], StreamCursor],
) -> None:
    for stream in backend.list_streams():
        if stream not in cursors:
            cursors[stream] = new_cursor(stream)
