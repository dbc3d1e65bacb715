"""Making the next checkpoint of a trail: what was added since the last one, read back from
the segments, hashed, and chained to it.

A checkpoint covers the IDs up to the backend's ``last_event_id``: every ID up to it is
written or was lost by a writer that died, so the covered part never changes afterwards. Any
writer may make the next checkpoint; the number is taken by a create-only write, and the
loser of a race simply finds the trail checkpointed.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from trailstore.backend import Backend, StreamKey
from trailstore.errors import EvidenceError
from trailstore.evidence.keys import key_id
from trailstore.evidence.reading import Run, range_digests, read_run
from trailstore.evidence.records import (
    EVIDENCE_DIRECTORY,
    Checkpoint,
    DamagedEvidenceError,
    IdSet,
    Piece,
    Position,
    Runs,
    Seal,
    TimeRange,
    checkpoint_path,
    parse_checkpoint_name,
    seal_path,
)

#: how many times a checkpoint is built again after other writers took its number
CHECKPOINT_ATTEMPTS = 100


def checkpoint_numbers(backend: Backend) -> list[int]:
    """The numbers of the trail's checkpoint files, ascending."""
    names = backend.list_evidence(EVIDENCE_DIRECTORY)
    return sorted(number for name in names if (number := parse_checkpoint_name(name)) is not None)


def read_checkpoint(backend: Backend, number: int) -> Checkpoint:
    """Checkpoint ``number``; ``DamagedEvidenceError`` if its file is not one (or not its own)."""
    checkpoint = Checkpoint.decode(backend.get_evidence(checkpoint_path(number)))
    if checkpoint.number != number:
        raise DamagedEvidenceError(
            f"file of checkpoint {number} holds checkpoint {checkpoint.number}"
        )
    return checkpoint


@dataclass
class _Extension:
    """What the next checkpoint adds, gathered stream by stream."""

    floor: int
    size: int
    positions: dict[StreamKey, Position]
    pieces: list[Piece] = field(default_factory=list)
    seals: list[tuple[StreamKey, int, str]] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)


class Checkpointer:
    """Writes checkpoints of one trail, signed when given a key."""

    def __init__(self, backend: Backend, signing_key: Ed25519PrivateKey | None = None) -> None:
        self._backend = backend
        self._key = signing_key
        self._key_id = None if signing_key is None else key_id(signing_key.public_key())
        self._latest: Checkpoint | None = None

    def latest(self) -> Checkpoint | None:
        """The newest checkpoint (the one this writer made last is not read again)."""
        numbers = checkpoint_numbers(self._backend)
        if not numbers:
            return None
        if self._latest is None or self._latest.number != numbers[-1]:
            try:
                self._latest = read_checkpoint(self._backend, numbers[-1])
            except (DamagedEvidenceError, FileNotFoundError) as exc:
                raise EvidenceError(
                    f"checkpoint {numbers[-1]} of {self._backend.url}: {exc}"
                ) from exc
        return self._latest

    def checkpoint(self, pruned: Sequence[tuple[StreamKey, int, str]] = ()) -> Checkpoint | None:
        """Write the next checkpoint, covering every event settled now and recording the
        ``pruned`` segments (stream, number, SHA-256 of the seal); ``None`` if there is
        nothing new to cover or record. When another writer takes the number first, its
        checkpoint is extended in turn, so that once this returns the events settled when it
        was called are covered (by this writer's checkpoint or another's).

        Raises ``EvidenceError`` if the trail does not continue its last checkpoint.
        """
        for _ in range(CHECKPOINT_ATTEMPTS):
            previous = self.latest()
            size, streams = self._backend.settled_streams()
            if size <= (0 if previous is None else previous.size) and not pruned:
                return None
            if previous is not None:
                size = max(size, previous.size)
            try:
                checkpoint = self._next(previous, size, streams, tuple(pruned))
            except (EvidenceError, FileNotFoundError):
                if self._superseded(previous):
                    continue  # built on a checkpoint a newer one replaced (a prune since?)
                raise
            if self._backend.put_evidence(checkpoint_path(checkpoint.number), checkpoint.encode()):
                self._latest = checkpoint
                return checkpoint
        raise EvidenceError(
            f"{self._backend.url}: other writers took the next checkpoint's number "
            f"{CHECKPOINT_ATTEMPTS} times in a row"
        )

    def _superseded(self, checkpoint: Checkpoint | None) -> bool:
        """Whether a newer checkpoint than ``checkpoint`` has been written meanwhile."""
        numbers = checkpoint_numbers(self._backend)
        return bool(numbers) and numbers[-1] > (0 if checkpoint is None else checkpoint.number)

    def _next(
        self,
        previous: Checkpoint | None,
        size: int,
        streams: list[StreamKey],
        pruned: tuple[tuple[StreamKey, int, str], ...],
    ) -> Checkpoint:
        """The checkpoint after ``previous`` covering the IDs up to ``size``."""
        floor = 0 if previous is None else previous.size
        extension = _Extension(floor, size, dict(previous.positions) if previous else {})
        for stream in streams:
            self._extend_stream(extension, stream)
        checkpoint = Checkpoint(
            origin=uuid.uuid4().hex if previous is None else previous.origin,
            number=1 if previous is None else previous.number + 1,
            size=size,
            previous=None if previous is None else previous.digest,
            written=round(time.time(), 3),
            pieces=tuple(extension.pieces),
            gaps=_gaps(extension.ids, floor, size, self._backend.url),
            positions=extension.positions,
            seals=tuple(extension.seals),
            pruned=pruned,
            key_id=self._key_id,
        )
        if self._key is None:
            return checkpoint
        return checkpoint.with_signature(
            self._key_id or "", self._key.sign(checkpoint.signed_bytes())
        )

    def _extend_stream(self, extension: _Extension, stream: StreamKey) -> None:
        """Add the stream's lines from its position on, up to the checkpoint's size; seal the
        segments it completes."""
        numbers = self._backend.list_segments(stream)
        if not numbers:
            return
        position = extension.positions.get(stream)
        if position is None:
            position = Position(numbers[0])
        elif position.segment not in numbers:
            raise EvidenceError(f"{stream} segment {position.segment}, covered before, is gone")
        after = extension.floor if position.ids is None else position.ids[1]
        for number in (n for n in numbers if n >= position.segment):
            if number != position.segment:
                position = Position(number)
            elif position.last_line is not None:
                self._check_last_line(stream, number, position)
            run = read_run(
                self._backend, stream, number, position.offset, through=extension.size, after=after
            )
            if run.lines:
                piece = _piece(stream, number, run)
                extension.pieces.append(piece)
                extension.ids.extend(run.ids)
                position = _advanced(position, piece, run.last_line)
                after = run.ids[-1] if run.ids else after
            if not run.finished or number == numbers[-1]:
                break
            extension.seals.append(self._seal(stream, number, position))
        extension.positions[stream] = position

    def _check_last_line(self, stream: StreamKey, number: int, position: Position) -> None:
        """The last line a checkpoint covered must still end where it did: the bytes after it
        are then the ones added since (a change before it is found at the seal, and by
        ``verify``)."""
        assert position.last_line is not None
        length, checksum = position.last_line
        start = position.offset - length
        held = self._backend.read_range(stream, number, start, position.offset)
        if zlib.crc32(held) != checksum:
            raise EvidenceError(
                f"{stream} segment {number}: the last covered line, bytes {start}-"
                f"{position.offset}, changed (covered bytes were altered)"
            )

    def _seal(
        self, stream: StreamKey, number: int, position: Position
    ) -> tuple[StreamKey, int, str]:
        """Write the seal of a complete segment, once its bytes are checked against the pieces
        that covered them; returns its record for the checkpoint."""
        boundaries = [0, *(end for _, end, _ in position.pieces)]
        digests, whole, size = range_digests(self._backend, stream, number, boundaries, whole=True)
        if size != position.offset:
            raise EvidenceError(
                f"{stream} segment {number} holds {size} bytes; {position.offset} were covered"
            )
        for (start, end, digest), found in zip(position.pieces, digests, strict=True):
            if found != digest:
                raise EvidenceError(
                    f"{stream} segment {number}: bytes {start}-{end} changed since a checkpoint "
                    "covered them"
                )
        seal = Seal(
            stream=stream,
            segment=number,
            size=size,
            sha256=whole or "",
            events=position.events,
            ids=position.ids,
            times=position.times,
        )
        encoded = seal.encode()
        if not self._backend.put_evidence(seal_path(stream, number), encoded):
            raise EvidenceError(f"the seal of {stream} segment {number} exists and differs")
        return stream, number, hashlib.sha256(encoded).hexdigest()


def _piece(stream: StreamKey, number: int, run: Run) -> Piece:
    return Piece(
        stream=stream,
        segment=number,
        start=run.start,
        end=run.end,
        sha256=run.hasher.hexdigest(),
        ids=IdSet.of(run.ids),
        times=TimeRange(min(run.times), max(run.times)) if run.times else None,
        lines=base64.b64encode(b"".join(run.checksums)).decode(),
        damaged=tuple(run.damaged),
    )


def _advanced(position: Position, piece: Piece, last_line: tuple[int, int] | None) -> Position:
    """The position just past ``piece``, with what it added to the segment's summary."""
    ids = position.ids
    if piece.ids:
        ids = (position.ids[0] if position.ids else piece.ids.first, piece.ids.last)
    times = position.times
    if piece.times is not None:
        times = piece.times.including(position.times)
    return Position(
        segment=position.segment,
        offset=piece.end,
        events=position.events + piece.events,
        ids=ids,
        times=times,
        pieces=(*position.pieces, (piece.start, piece.end, piece.sha256)),
        last_line=last_line,
    )


def _gaps(ids: list[int], floor: int, size: int, url: str) -> Runs:
    """The IDs above ``floor`` up to ``size`` that no stream holds (spent by writers that died);
    ``EvidenceError`` if two streams hold the same one."""
    ids.sort()
    gaps: list[tuple[int, int]] = []
    expected = floor + 1
    for event_id in ids:
        if event_id < expected:
            raise EvidenceError(f"event {event_id} of {url} is held by two segments")
        if event_id > expected:
            gaps.append((expected, event_id - 1))
        expected = event_id + 1
    if expected <= size:
        gaps.append((expected, size))
    return tuple(gaps)
