"""The evidence a trail keeps beside its segments, as stored: checkpoints and segment seals.

A **checkpoint** is one JSON object per file, numbered from 1, each naming the SHA-256 of the
one before (so none can be removed, reordered or changed without breaking the chain). It
covers the trail's events up to ``size``: the IDs above the previous checkpoint's size are
listed as ``pieces`` (byte ranges of segments, with their SHA-256, the IDs they hold and a
CRC-32 per line to locate a change) and ``gaps`` (IDs a crashed writer spent and never wrote).
``positions`` say where each stream's covered bytes end, ``seals`` which segments it sealed
and the SHA-256 of their seal files, ``pruned`` (only when there are any) which sealed segments
were removed from the trail's own storage since the previous checkpoint (kept in an archive,
or discarded on purpose). With a signing key, ``signature`` is an Ed25519
signature of the checkpoint's canonical body (every field but the signature).

A **seal** (``audit-000001.seal.json`` beside ``audit-000001.jsonl``) describes a segment
that is complete: its size, SHA-256, event count, and ID and timestamp ranges.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from trailstore.backend import StreamKey, segment_name
from trailstore.names import validate_name

CHECKPOINT_FORMAT = "trailstore-checkpoint/1"
SEAL_FORMAT = "trailstore-seal/1"
PRUNED_FORMAT = "trailstore-pruned/1"
EVIDENCE_DIRECTORY = ".trailstore/evidence"
_CHECKPOINT_PREFIX, _CHECKPOINT_SUFFIX = "checkpoint-", ".json"

#: runs of consecutive IDs, ``((first, last), ...)``
Runs = tuple[tuple[int, int], ...]


class DamagedEvidenceError(ValueError):
    """A checkpoint or seal file that does not parse as one."""


def checkpoint_path(number: int) -> str:
    """The path of checkpoint ``number`` below the trail root."""
    return f"{EVIDENCE_DIRECTORY}/{_CHECKPOINT_PREFIX}{number:012d}{_CHECKPOINT_SUFFIX}"


def parse_checkpoint_name(name: str) -> int | None:
    """The number of a checkpoint file's name, ``None`` for any other name."""
    digits = name.removeprefix(_CHECKPOINT_PREFIX).removesuffix(_CHECKPOINT_SUFFIX)
    if len(digits) + len(_CHECKPOINT_PREFIX) + len(_CHECKPOINT_SUFFIX) != len(name):
        return None
    return int(digits) if len(digits) >= 12 and digits.isdigit() else None


def seal_path(stream: StreamKey, number: int) -> str:
    """The path of a segment's seal below the trail root."""
    return (
        f"{stream.domain}/{stream.category}/{segment_name(number).removesuffix('.jsonl')}.seal.json"
    )


def pruned_path(stream: StreamKey, number: int) -> str:
    """The path of the marker a prune leaves where it removed a segment: readers tell a
    pruned segment from a lost one by it (``verify`` by the checkpoint recording it)."""
    return seal_path(stream, number).removesuffix(".seal.json") + ".pruned.json"


def runs_of(ids: Iterable[int]) -> Runs:
    """Ascending IDs as runs of consecutive ones."""
    runs: list[tuple[int, int]] = []
    for event_id in ids:
        if runs and runs[-1][1] + 1 == event_id:
            runs[-1] = (runs[-1][0], event_id)
        else:
            runs.append((event_id, event_id))
    return tuple(runs)


def ids_in(runs: Runs) -> Iterator[int]:
    for first, last in runs:
        yield from range(first, last + 1)


def canonical(document: dict[str, Any]) -> bytes:
    """The one byte form of a document that is hashed and signed."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


@dataclass(frozen=True)
class IdSet:
    """Ascending IDs as a bitmap from ``first`` (bit ``i`` set: ID ``first + i`` is held): a
    stream's share of a range where streams interleave, stored in about a bit per ID."""

    first: int
    bits: int

    @classmethod
    def of(cls, ids: list[int]) -> IdSet:
        if not ids:
            return cls(0, 0)
        first = ids[0]
        bitmap = bytearray((ids[-1] - first) // 8 + 1)
        for event_id in ids:
            offset = event_id - first
            bitmap[offset >> 3] |= 1 << (offset & 7)
        return cls(first, int.from_bytes(bitmap, "little"))

    def __len__(self) -> int:
        return self.bits.bit_count()

    def __bool__(self) -> bool:
        return self.bits != 0

    @property
    def last(self) -> int:
        return self.first + self.bits.bit_length() - 1

    def __iter__(self) -> Iterator[int]:
        bitmap = self.bits.to_bytes((self.bits.bit_length() + 7) // 8, "little")
        for index, byte in enumerate(bitmap):
            for bit in range(8):
                if byte >> bit & 1:
                    yield self.first + index * 8 + bit

    def mask_from(self, floor: int) -> int:
        """The bitmap as seen from ID ``floor + 1`` (bit 0)."""
        return self.bits << (self.first - floor - 1) if self.bits else 0

    def to_json(self) -> list[Any]:
        length = (self.bits.bit_length() + 7) // 8
        return [self.first, base64.b64encode(self.bits.to_bytes(length, "little")).decode()]

    @classmethod
    def from_json(cls, document: Any) -> IdSet:
        first, encoded = document
        bits = int.from_bytes(base64.b64decode(encoded, validate=True), "little")
        if bits and _natural(first) < 1:
            raise ValueError("IDs start at 1")
        return cls(_natural(first), bits)


@dataclass(frozen=True)
class TimeRange:
    """The lowest and highest timestamp of some events."""

    low: float
    high: float

    def including(self, other: TimeRange | None) -> TimeRange:
        if other is None:
            return self
        return TimeRange(min(self.low, other.low), max(self.high, other.high))


@dataclass(frozen=True)
class Piece:
    """Bytes ``start..end`` of one segment, covered by one checkpoint."""

    stream: StreamKey
    segment: int
    start: int
    end: int
    sha256: str
    ids: IdSet
    times: TimeRange | None
    #: CRC-32 of each line, packed big-endian, in base64 (decoded only to locate a change)
    lines: str
    #: the lines (by index in the piece) that are not events: damage found when covered
    damaged: tuple[int, ...] = ()

    @functools.cached_property
    def checksums(self) -> bytes:
        return base64.b64decode(self.lines, validate=True)

    @property
    def events(self) -> int:
        return len(self.ids)

    def line_ids(self) -> list[int | None]:
        """Each line's ID in order, ``None`` for the damaged ones."""
        ids = iter(self.ids)
        damaged = set(self.damaged)
        return [
            None if index in damaged else next(ids) for index in range(len(self.checksums) // 4)
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "stream": str(self.stream),
            "segment": self.segment,
            "start": self.start,
            "end": self.end,
            "sha256": self.sha256,
            "ids": self.ids.to_json(),
            "time": None if self.times is None else [self.times.low, self.times.high],
            "lines": self.lines,
            "damaged": list(self.damaged),
        }

    @classmethod
    def from_json(cls, document: Any) -> Piece:
        return cls(
            stream=_stream(document["stream"]),
            segment=_natural(document["segment"]),
            start=_natural(document["start"]),
            end=_natural(document["end"]),
            sha256=_hex(document["sha256"]),
            ids=IdSet.from_json(document["ids"]),
            times=_times(document["time"]),
            lines=str(document["lines"]),
            damaged=tuple(_natural(index) for index in document["damaged"]),
        )


@dataclass(frozen=True)
class Position:
    """Where a stream's covered bytes end, with what the covered part of that segment holds
    (carried from checkpoint to checkpoint to write the segment's seal when it completes)."""

    segment: int
    offset: int = 0
    events: int = 0
    ids: tuple[int, int] | None = None
    times: TimeRange | None = None
    #: ``(start, end, SHA-256)`` of the pieces covering the segment so far: its seal is
    #: written only once its bytes are checked against them
    pieces: tuple[tuple[int, int, str], ...] = ()
    #: ``(length, CRC-32)`` of the last covered line: the next checkpoint starts only where
    #: that line still ends
    last_line: tuple[int, int] | None = None

    def to_json(self) -> list[Any]:
        times = None if self.times is None else [self.times.low, self.times.high]
        ids = None if self.ids is None else list(self.ids)
        pieces = [list(piece) for piece in self.pieces]
        last = None if self.last_line is None else list(self.last_line)
        return [self.segment, self.offset, self.events, ids, times, pieces, last]

    @classmethod
    def from_json(cls, document: Any) -> Position:
        segment, offset, events, ids, times, pieces, last = document
        first_last = None if ids is None else (_natural(ids[0]), _natural(ids[1]))
        return cls(
            _natural(segment),
            _natural(offset),
            _natural(events),
            first_last,
            _times(times),
            tuple((_natural(start), _natural(end), _hex(digest)) for start, end, digest in pieces),
            None if last is None else (_natural(last[0]), _natural(last[1])),
        )


@dataclass(frozen=True)
class Seal:
    """A complete segment, described by its seal file."""

    stream: StreamKey
    segment: int
    size: int
    sha256: str
    events: int
    ids: tuple[int, int] | None
    times: TimeRange | None

    def encode(self) -> bytes:
        return canonical(
            {
                "format": SEAL_FORMAT,
                "stream": str(self.stream),
                "segment": self.segment,
                "bytes": self.size,
                "sha256": self.sha256,
                "events": self.events,
                "first_event_id": None if self.ids is None else self.ids[0],
                "last_event_id": None if self.ids is None else self.ids[1],
                "min_timestamp": None if self.times is None else self.times.low,
                "max_timestamp": None if self.times is None else self.times.high,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> Seal:
        try:
            document = json.loads(data)
            if document["format"] != SEAL_FORMAT:
                raise ValueError(f"format {document['format']!r}")
            first, last = document["first_event_id"], document["last_event_id"]
            low, high = document["min_timestamp"], document["max_timestamp"]
            return cls(
                stream=_stream(document["stream"]),
                segment=_natural(document["segment"]),
                size=_natural(document["bytes"]),
                sha256=_hex(document["sha256"]),
                events=_natural(document["events"]),
                ids=None if first is None else (_natural(first), _natural(last)),
                times=None if low is None else _times([low, high]),
            )
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            raise DamagedEvidenceError(f"not a seal: {exc}") from exc


@dataclass(frozen=True)
class PrunedMarker:
    """What ``pruned_path`` holds: the segment removed, and the SHA-256 of its seal file."""

    stream: StreamKey
    segment: int
    seal_sha256: str

    def encode(self) -> bytes:
        return canonical(
            {
                "format": PRUNED_FORMAT,
                "stream": str(self.stream),
                "segment": self.segment,
                "seal_sha256": self.seal_sha256,
            }
        )


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint of the chain (see the module docstring)."""

    origin: str
    number: int
    size: int
    previous: str | None
    written: float
    pieces: tuple[Piece, ...] = ()
    gaps: Runs = ()
    positions: dict[StreamKey, Position] = field(default_factory=dict)
    #: ``(stream, segment, SHA-256 of its seal file)``
    seals: tuple[tuple[StreamKey, int, str], ...] = ()
    #: ``(stream, segment, SHA-256 of its seal file)`` of segments pruned since the previous
    pruned: tuple[tuple[StreamKey, int, str], ...] = ()
    key_id: str | None = None
    signature: bytes | None = None
    #: the body as stored (what was hashed and signed), for a decoded checkpoint
    stored_body: bytes = field(default=b"", compare=False, repr=False)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "format": CHECKPOINT_FORMAT,
            "origin": self.origin,
            "number": self.number,
            "size": self.size,
            "previous": self.previous,
            "written": self.written,
            "pieces": [piece.to_json() for piece in self.pieces],
            "gaps": [list(run) for run in self.gaps],
            "positions": {
                str(stream): position.to_json()
                for stream, position in sorted(self.positions.items())
            },
            "seals": [[str(stream), number, digest] for stream, number, digest in self.seals],
            "key": self.key_id,
        }
        if self.pruned:  # absent otherwise, so checkpoints of trails never pruned are unchanged
            body["pruned"] = [[str(stream), number, seal] for stream, number, seal in self.pruned]
        return body

    def signed_bytes(self) -> bytes:
        """What the signature signs and the next checkpoint's ``previous`` hashes: the body
        as stored (its first line), or in canonical form for a new checkpoint."""
        return self.stored_body or canonical(self.body())

    @property
    def digest(self) -> str:
        """The SHA-256 of the canonical body: the head of the chain at this checkpoint."""
        return hashlib.sha256(self.signed_bytes()).hexdigest()

    def with_signature(self, key_id: str, signature: bytes) -> Checkpoint:
        return replace(self, key_id=key_id, signature=signature)

    def encode(self) -> bytes:
        """The file: the canonical body on one line, then the signature, if any, on another."""
        signed = self.signed_bytes() + b"\n"
        if self.signature is None:
            return signed
        return signed + canonical({"signature": base64.b64encode(self.signature).decode()}) + b"\n"

    @classmethod
    def decode(cls, data: bytes) -> Checkpoint:
        try:
            body, _, rest = data.partition(b"\n")
            document = json.loads(body)
            if document["format"] != CHECKPOINT_FORMAT:
                raise ValueError(f"format {document['format']!r}")
            signature = json.loads(rest)["signature"] if rest.strip() else None
            previous = document["previous"]
            key_id = document["key"]
            return cls(
                origin=str(document["origin"]),
                number=_natural(document["number"]),
                size=_natural(document["size"]),
                previous=None if previous is None else _hex(previous),
                written=float(document["written"]),
                pieces=tuple(Piece.from_json(piece) for piece in document["pieces"]),
                gaps=_runs(document["gaps"]),
                positions={
                    _stream(name): Position.from_json(position)
                    for name, position in document["positions"].items()
                },
                seals=_segment_digests(document["seals"]),
                pruned=_segment_digests(document.get("pruned", [])),
                key_id=None if key_id is None else str(key_id),
                signature=None if signature is None else base64.b64decode(signature, validate=True),
                stored_body=body,
            )
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise DamagedEvidenceError(f"not a checkpoint: {exc}") from exc


def _stream(name: Any) -> StreamKey:
    """A stream named in a checkpoint or seal: two safe names (``InvalidNameError``, a
    ``ValueError``, otherwise), so that no forged record leads a path out of a root."""
    domain, category = str(name).split("/")
    return StreamKey(validate_name("domain", domain), validate_name("category", category))


def _segment_digests(document: Any) -> tuple[tuple[StreamKey, int, str], ...]:
    return tuple(
        (_stream(name), _natural(number), _hex(digest)) for name, number, digest in document
    )


def _natural(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{value!r} is not a natural number")
    return value


def _hex(value: Any) -> str:
    text = str(value)
    bytes.fromhex(text)
    return text


def _runs(document: Any) -> Runs:
    return tuple((_natural(first), _natural(last)) for first, last in document)


def _times(document: Any) -> TimeRange | None:
    if document is None:
        return None
    low, high = document
    return TimeRange(float(low), float(high))
