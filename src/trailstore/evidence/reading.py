"""Reading segments for evidence a block at a time, so that memory stays bounded whatever a
segment holds (a damaged line of 100 MB is hashed as it streams past, never held whole)."""

from __future__ import annotations

import bisect
import hashlib
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import cast

from trailstore.backend import Backend, StreamKey
from trailstore.errors import EvidenceError
from trailstore.evidence.scan import head_fields, pack_checksums, scan
from trailstore.lines import split_lines

#: bytes read at a time; a line longer than this is known by its first bytes only
READ_BLOCK = 8 * 1024 * 1024
_HEAD = 256


@dataclass
class Run:
    """The lines read from ``start`` of one segment: what a checkpoint's piece records."""

    start: int
    end: int = 0
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256)
    ids: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    checksums: list[bytes] = field(default_factory=list)
    #: indexes (in the run) of the lines that are not events
    damaged: list[int] = field(default_factory=list)
    lines: int = 0
    #: ``(length, CRC-32)`` of the run's last line
    last_line: tuple[int, int] | None = None
    #: the segment ended right after the run (no line past it, complete or torn)
    finished: bool = False


def read_run(
    backend: Backend, stream: StreamKey, number: int, start: int, *, through: int, after: int
) -> Run:
    """The complete lines of a segment from ``start`` whose IDs are at most ``through`` (it
    stops at the first one above), each above ``after`` and the one before it; lines that are
    not events are taken as they are. ``EvidenceError`` for IDs out of order."""
    run = Run(start, start)
    while True:
        block = backend.read_range(stream, number, run.end, run.end + READ_BLOCK)
        cut = block.rfind(b"\n") + 1
        if cut == 0 and len(block) == READ_BLOCK:
            if not _take_long_line(backend, stream, number, run, block, through, after):
                return run
            after = run.ids[-1] if run.ids else after
            continue
        lines = scan(block, cut)
        taken = _count_taken(lines.ids, through, after, f"{stream} segment {number}")
        end = lines.end(taken - 1) if taken else 0
        if taken:
            last = memoryview(block)[lines.starts[taken - 1] : end]
            run.last_line = (len(last), zlib.crc32(last))
        run.hasher.update(memoryview(block)[:end])
        _keep(run, lines.ids[:taken], lines.timestamps[:taken])
        after = run.ids[-1] if run.ids else after
        run.checksums.append(lines.checksums(block, taken))
        run.lines += taken
        run.end += end
        if taken < len(lines) or len(block) < READ_BLOCK:
            run.finished = taken == len(lines) and cut == len(block)
            return run


def _count_taken(ids: list[int | None], through: int, after: int, where: str) -> int:
    """How many of ``ids`` to take: up to the first above ``through``, each above ``after``
    and the one before (``None``, a line that is not an event, is taken as it is)."""
    if None not in ids:  # the usual block: checked with C-speed list operations
        events = cast("list[int]", ids)
        taken = bisect.bisect_right(events, through)
        head = events[:taken]
        ascending = not head or (head[0] > after and head == sorted(set(head)))
        if ascending and (taken == len(events) or events[taken] > through):
            return taken
    taken = 0
    for event_id in ids:
        if event_id is not None:
            if event_id > through:
                break
            if event_id <= after:
                raise EvidenceError(
                    f"{where}: event {event_id} follows event {after} (at or below an "
                    "earlier checkpoint's size, or out of order)"
                )
            after = event_id
        taken += 1
    return taken


def _keep(run: Run, ids: list[int | None], times: list[float | None]) -> None:
    """Add taken lines' IDs and timestamps to ``run``; a line that is not an event is
    recorded as damaged."""
    if None not in ids:
        run.ids.extend(cast("list[int]", ids))
        run.times.extend(cast("list[float]", times))
    else:
        for index, (event_id, moment) in enumerate(zip(ids, times, strict=True)):
            if event_id is None or moment is None:
                run.damaged.append(run.lines + index)
            else:
                run.ids.append(event_id)
                run.times.append(moment)


def _take_long_line(
    backend: Backend,
    stream: StreamKey,
    number: int,
    run: Run,
    block: bytes,
    through: int,
    after: int,
) -> bool:
    """Take a line longer than a block, known by its first bytes; False if it is not to be
    taken (its ID is above ``through``) or it never ends (a torn tail)."""
    event_id, moment = head_fields(block[:_HEAD])
    if event_id is not None and event_id > through:
        return False
    if event_id is not None and event_id <= after:
        raise EvidenceError(f"{stream} segment {number}: event {event_id} follows event {after}")
    hasher, checksum, offset = run.hasher.copy(), 0, run.end
    while True:
        newline = block.find(b"\n")
        part = block if newline < 0 else block[: newline + 1]
        hasher.update(part)
        checksum = zlib.crc32(part, checksum)
        offset += len(part)
        if newline >= 0:
            break
        block = backend.read_range(stream, number, offset, offset + READ_BLOCK)
        if not block:
            return False
    run.last_line = (offset - run.end, checksum)
    run.hasher, run.end = hasher, offset
    if event_id is None or moment is None:
        run.damaged.append(run.lines)
    else:
        run.ids.append(event_id)
        run.times.append(moment)
    run.checksums.append(pack_checksums([checksum]))
    run.lines += 1
    return True


def range_digests(
    backend: Backend,
    stream: StreamKey,
    number: int,
    boundaries: Sequence[int],
    *,
    whole: bool = False,
) -> tuple[list[str], str | None, int]:
    """Read a segment from ``boundaries[0]`` to its end a block at a time: the SHA-256 of each
    range between consecutive boundaries, (with ``whole``) of everything read, and how many
    bytes were read."""
    ranges = [hashlib.sha256() for _ in boundaries[1:]]
    everything = hashlib.sha256() if whole else None
    offset = boundaries[0]
    while block := backend.read_range(stream, number, offset, offset + READ_BLOCK):
        if everything is not None:
            everything.update(block)
        view = memoryview(block)
        for index, hasher in enumerate(ranges):
            low = max(boundaries[index], offset) - offset
            high = min(boundaries[index + 1], offset + len(block)) - offset
            if low < high:
                hasher.update(view[low:high])
        offset += len(block)
    digest = None if everything is None else everything.hexdigest()
    return [hasher.hexdigest() for hasher in ranges], digest, offset - boundaries[0]


def segment_digest(backend: Backend, stream: StreamKey, number: int) -> tuple[str, int]:
    """The SHA-256 and size of a whole segment, read a block at a time."""
    whole, offset = hashlib.sha256(), 0
    while block := backend.read_range(stream, number, offset, offset + READ_BLOCK):
        whole.update(block)
        offset += len(block)
    return whole.hexdigest(), offset


@dataclass
class Tail:
    """Bytes after a segment's last complete line (a torn line), seen by ``complete_lines``."""

    torn: int = 0


def complete_lines(
    backend: Backend, stream: StreamKey, number: int, start: int, tail: Tail
) -> Iterator[tuple[bytes, int]]:
    """``(line, checksum)`` for each complete line of a segment from ``start``, a block at a
    time; a line longer than a block is given by its first bytes (its checksum is whole).
    The size of a torn last line is left in ``tail``."""
    offset = start
    while True:
        block = backend.read_range(stream, number, offset, offset + READ_BLOCK)
        cut = block.rfind(b"\n") + 1
        if cut == 0 and len(block) == READ_BLOCK:
            head, checksum, length = block[:_HEAD], 0, 0
            while block and (newline := block.find(b"\n")) < 0:
                checksum, length = zlib.crc32(block, checksum), length + len(block)
                block = backend.read_range(
                    stream, number, offset + length, offset + length + READ_BLOCK
                )
            if not block:
                tail.torn = length
                return
            checksum = zlib.crc32(block[: newline + 1], checksum)
            yield head, checksum
            offset += length + newline + 1
            continue
        for line in split_lines(block[:cut]):
            yield line, zlib.crc32(line)
        offset += cut
        if len(block) < READ_BLOCK:
            tail.torn = len(block) - cut
            return
