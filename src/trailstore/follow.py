"""Follow a trail: yield its events as writers append them, each once, in ``event_id`` order.

Each stream has a cursor (segment, byte offset) that moves past complete lines only, so a line
is read once, however many polls it takes to be written, and across rotation. A poll reads
every stream to its end; writers in other threads, processes or hosts may still be writing a
lower ID when a higher one is read, so an event is held until every lower ID has been read, or
until the lower ones have been missing for ``settle`` seconds (a writer that died after taking
them leaves a gap for good). An ID that turns up after that is still yielded, late, never
dropped. Object stores are followed the same way, by polling.

A commit that fails half-way (a full disk) is cut back out of its segment and its IDs go to
the next events. A cursor sees its segment shrink under it, goes back to the last line it
read that is still there, and reads on: an event that then comes under an ID already yielded,
with other bytes, is yielded as well (and counted as a duplicate), as ``iter_events`` would.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import zlib
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from trailstore.backend import Backend, StreamKey
from trailstore.bounds import Read
from trailstore.lines import MAX_LINE_BYTES, oversized_line, quick_event_id, split_lines

log = logging.getLogger("trailstore")
#: how much of a segment is read at a time (a line longer than that is read whole, up to
#: ``MAX_LINE_BYTES``); catching up holds one block per stream
_BLOCK_BYTES = 64 * 1024
#: line ends a cursor remembers, to go back to after its segment was cut back
_REMEMBERED_LINES = 4096
#: IDs yielded whose lines a sequencer remembers, to tell a line read again from a new one
_REMEMBERED_IDS = 65536
#: gaps a sequencer keeps waiting for late IDs (the oldest are given up first)
_REMEMBERED_GAPS = 4096
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
        #: ``(start, end, CRC-32)`` of the last lines read, newest last
        self._read_lines: deque[tuple[int, int, int]] = deque(maxlen=_REMEMBERED_LINES)
        #: the first bytes of a line too long to be an event, while its rest is passed over
        self._oversized: bytes | None = None

    def drain(self, after_event_id: int) -> Iterator[Read]:
        """Every complete line written since the last drain, parsed, then on into newer
        segments; lines with IDs up to ``after_event_id`` are passed over unparsed."""
        while True:
            lines = self._complete_lines()
            if lines:
                wanted = (line for line in lines if not _at_or_below(line, after_event_id))
                yield from self._parse(self.stream, self.segment, wanted)
                continue
            newer = [n for n in self._backend.list_segments(self.stream) if n > self.segment]
            if not newer:
                return
            # a newer segment exists, so this one is final: what reached it before is read
            # first, and only then are bytes without a line end a torn line
            if self._read(self.offset, None).count(b"\n"):
                continue
            if self._read(self.offset, None) or self._oversized is not None:
                self._on_torn(self.stream, self.segment)
            self.segment, self.offset, self._oversized = newer[0], 0, None
            self._read_lines.clear()

    def _complete_lines(self) -> list[bytes]:
        """The complete lines from the offset on (a block's worth), the offset moved past
        them; an empty list when none is complete yet. A line longer than ``MAX_LINE_BYTES``
        is given as its first bytes, as the reader gives it (damage)."""
        size = _BLOCK_BYTES
        while True:
            block = self._read_after_last_line(self.offset + size)
            if block is None:
                continue  # cut back: the offset went back
            if self._oversized is not None:
                return self._pass_oversized(block)
            cut = block.rfind(b"\n") + 1
            if cut or len(block) < size:
                return [self._advance(line) for line in split_lines(block[:cut])]
            if size > MAX_LINE_BYTES:  # no line end within the longest line: pass over it
                self._oversized = oversized_line(block, ended=False)
                self.offset += len(block)
                continue
            size = min(2 * size, MAX_LINE_BYTES + 1)

    def _pass_oversized(self, block: bytes) -> list[bytes]:
        assert self._oversized is not None
        newline = block.find(b"\n")
        if newline < 0:
            self.offset += len(block)
            return []
        self.offset += newline + 1
        head, self._oversized = oversized_line(self._oversized, ended=True), None
        return [head]

    def _advance(self, line: bytes) -> bytes:
        """Move past ``line``; it as the reader takes it."""
        start, self.offset = self.offset, self.offset + len(line)
        self._read_lines.append((start, self.offset, zlib.crc32(line)))
        if len(line) <= MAX_LINE_BYTES:
            return line
        return oversized_line(line, ended=True)

    def _read_after_last_line(self, end: int) -> bytes | None:
        """The bytes from the offset to ``end``, read together with the last line read, which
        must still be there; ``None`` when it is not (the segment was cut back, by a failed
        commit rolled back): the offset is then back after the last line still in place."""
        if not self._read_lines or self._read_lines[-1][1] != self.offset:
            return self._read(self.offset, end)
        start, _, checksum = self._read_lines[-1]
        data = self._read(start, end)
        if zlib.crc32(data[: self.offset - start]) == checksum:
            return data[self.offset - start :]
        while self._read_lines and not self._in_place(*self._read_lines[-1]):
            self._read_lines.pop()
        self.offset = self._read_lines[-1][1] if self._read_lines else 0
        self._oversized = None
        log.warning(
            "%s segment %d was cut back below what was read (a failed commit rolled back); "
            "reading it again from byte %d",
            self.stream,
            self.segment,
            self.offset,
        )
        return None

    def _in_place(self, start: int, end: int, checksum: int) -> bool:
        return zlib.crc32(self._read(start, end)) == checksum

    def _read(self, start: int, end: int | None) -> bytes:
        try:
            return self._backend.read_range(self.stream, self.segment, start, end)
        except FileNotFoundError:
            return b""  # pruned, or not created yet: newer segments tell


def _at_or_below(line: bytes, event_id: int) -> bool:
    """Whether a line's ID, read without a full parse, is at most ``event_id``."""
    line_id = quick_event_id(line)
    return line_id is not None and line_id <= event_id


class Sequencer:
    """Releases reads in ``event_id`` order: holds one until every lower ID has come, or
    until they have been missing ``settle`` seconds; a late one is released when it comes."""

    def __init__(self, after_event_id: int, settle: float, on_duplicate: Callable[[], None]):
        self._after = after_event_id
        self.next_id = after_event_id + 1
        self._settle, self._on_duplicate = settle, on_duplicate
        self._held: list[tuple[int, float, int, Read]] = []
        self._order = itertools.count()
        #: IDs passed over, still welcome: ``[first, last]``, oldest first
        self._gaps: deque[list[int]] = deque(maxlen=_REMEMBERED_GAPS)
        #: the CRC-32 of the line of each recent ID released
        self._released: OrderedDict[int, int] = OrderedDict()

    def add(self, read: Read, now: float) -> Iterator[Read]:
        """Hold a read; yield it at once if it comes late (or anew, under a released ID)."""
        event_id = read[0].event_id
        if event_id <= self._after:
            return
        if event_id >= self.next_id:
            heapq.heappush(self._held, (event_id, now, next(self._order), read))
        elif self._take_from_gap(event_id) or self._is_new(read):
            self._remember(read)
            yield read

    def release(self, now: float, *, through: int = 0) -> Iterator[Read]:
        """Yield the held reads that are due, in ``event_id`` order; those up to ``through``
        without waiting for the IDs below them."""
        while self._held:
            event_id, since, _, read = self._held[0]
            if not (event_id <= max(self.next_id, through) or now - since >= self._settle):
                return
            heapq.heappop(self._held)
            if event_id < self.next_id:
                if self._is_new(read):
                    self._remember(read)
                    yield read
                continue
            if event_id > self.next_id:
                self._gaps.append([self.next_id, event_id - 1])
                log.info("following on past missing event IDs %d..%d", self.next_id, event_id - 1)
            self.next_id = event_id + 1
            self._remember(read)
            yield read

    @property
    def last_held(self) -> int:
        """The highest ID held (0 when none is)."""
        return max((held[0] for held in self._held), default=0)

    def _take_from_gap(self, event_id: int) -> bool:
        for position, (first, last) in enumerate(self._gaps):
            if first <= event_id <= last:
                del self._gaps[position]
                for low, high in ((first, event_id - 1), (event_id + 1, last)):
                    if low <= high:
                        self._gaps.insert(position, [low, high])
                        position += 1
                return True
        return False

    def _is_new(self, read: Read) -> bool:
        """False for a line read again (the same bytes under an ID released); a different
        line under a released ID is a duplicate ID, counted, and yielded as a reader does."""
        event_id, line = read[0].event_id, read[1]
        if self._released.get(event_id) == zlib.crc32(line):
            return False
        self._on_duplicate()
        log.warning("event_id %d appears more than once", event_id)
        return True

    def _remember(self, read: Read) -> None:
        self._released[read[0].event_id] = zlib.crc32(read[1])
        if len(self._released) > _REMEMBERED_IDS:
            self._released.popitem(last=False)


def follow_reads(
    backend: Backend,
    cursors: dict[StreamKey, StreamCursor],
    new_cursor: Callable[[StreamKey], StreamCursor],
    after_event_id: int,
    settings: FollowSettings,
    stop: threading.Event | None,
    on_duplicate: Callable[[], None],
    through_event_id: int | None = None,
) -> Iterator[Read]:
    """Catch up from ``cursors``, then poll every stream (new ones too) until ``stop`` is set,
    every ID up to ``through_event_id`` is yielded, or the consumer stops iterating: every
    read with an ID above ``after_event_id`` once."""
    sequencer = Sequencer(after_event_id, settings.settle, on_duplicate)

    def done() -> bool:
        return through_event_id is not None and sequencer.next_id > through_event_id

    if done():
        return
    # catching up: what was written before comes in ID order from a merge of the streams,
    # and an ID missing there is not waited for (one written meanwhile comes late)
    handed_out = backend.last_event_id()
    _add_new_streams(backend, cursors, new_cursor)
    drains = [cursor.drain(after_event_id) for cursor in cursors.values()]
    for read in heapq.merge(*drains, key=lambda read: read[0].event_id):
        now = time.monotonic()
        yield from sequencer.add(read, now)
        yield from sequencer.release(now, through=handed_out)
        if done() or (stop is not None and stop.is_set()):
            break
    while not done():
        _add_new_streams(backend, cursors, new_cursor)
        for cursor in list(cursors.values()):
            for read in cursor.drain(after_event_id):
                yield from sequencer.add(read, time.monotonic())
        stopping = stop is not None and stop.is_set()
        through = sequencer.last_held if stopping else 0
        yield from sequencer.release(time.monotonic(), through=through)
        if stopping or done():
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
