"""Commits of a trail on storage that cannot append, and the state they add up to.

A commit is one object, created once under the next commit number: a header line, then the
event lines it adds, grouped by stream and segment in the order the header lists them::

    {"commit":42,"first":1001,"last":1010,"writer":"9f3a…","entries":[["shop/orders",3,4096,6],
     ["billing/invoices",1,812,4]],"lease":null}
    {"event_id":1001,…}
    …

Each entry is ``[stream, segment, bytes of that segment after the commit, lines]``. A commit may
also hold no lines and instead reserve IDs for a writer that hands them out before their
commit (``batch``), under a lease: ``"lease":{"holder":…,"through":N,"expires":T}``; or take
over an expired lease (``"takeover":"<holder>"``), skipping the IDs it had reserved.

``TrailState`` is what the commits add up to: the counter, the lease, and for every stream its
open segment, that segment's size and the commits holding its lines (the segments before it
are sealed, or are about to be). Checkpoints store it, so that a writer or reader replays only
the commits since the last one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from trailstore.backend import StreamKey

#: one part of a commit: ``(stream, segment number, segment bytes after it, lines)``
Entry = tuple[StreamKey, int, int, int]


class DamagedCommitError(ValueError):
    """A commit or checkpoint object that does not parse."""


@dataclass(frozen=True)
class Lease:
    """IDs reserved by a writer that hands them out before their commit; while the lease is
    valid, only its holder commits."""

    holder: str
    through: int
    expires: float


@dataclass(frozen=True)
class Commit:
    """One commit object, decoded."""

    seq: int
    #: the IDs the commit adds (``first > last`` for a commit of no events)
    first: int
    last: int
    writer: str
    entries: tuple[Entry, ...] = ()
    lines: tuple[bytes, ...] = ()
    #: the lease after this commit (``None``: released, or none held)
    lease: Lease | None = None
    #: the holder of an expired lease this commit took over
    takeover: str | None = None

    def encode(self) -> bytes:
        header: dict[str, Any] = {
            "commit": self.seq,
            "first": self.first,
            "last": self.last,
            "writer": self.writer,
            "entries": [
                [str(stream), number, size, count] for stream, number, size, count in self.entries
            ],
            "lease": None
            if self.lease is None
            else {
                "holder": self.lease.holder,
                "through": self.lease.through,
                "expires": self.lease.expires,
            },
        }
        if self.takeover is not None:
            header["takeover"] = self.takeover
        return json.dumps(header, separators=(",", ":")).encode() + b"\n" + b"".join(self.lines)

    @classmethod
    def decode(cls, data: bytes) -> Commit:
        """Parse a commit object; ``DamagedCommitError`` if it is not one."""
        head, _, body = data.partition(b"\n")
        try:
            header = json.loads(head)
            entries = tuple(
                (_stream(name), int(number), int(size), int(count))
                for name, number, size, count in header["entries"]
            )
            lease = header.get("lease")
            decoded = cls(
                seq=int(header["commit"]),
                first=int(header["first"]),
                last=int(header["last"]),
                writer=str(header["writer"]),
                entries=entries,
                lines=tuple(body.splitlines(keepends=True)),
                lease=None
                if lease is None
                else Lease(str(lease["holder"]), int(lease["through"]), float(lease["expires"])),
                takeover=header.get("takeover"),
            )
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise DamagedCommitError(f"not a commit: {exc}") from exc
        if sum(count for *_, count in entries) != len(decoded.lines):
            raise DamagedCommitError("the commit holds other lines than its header lists")
        return decoded

    def lines_of(self, stream: StreamKey, number: int) -> Iterator[bytes]:
        """The lines this commit adds to segment ``number`` of ``stream``."""
        position = 0
        for entry_stream, entry_number, _, count in self.entries:
            if entry_stream == stream and entry_number == number:
                yield from self.lines[position : position + count]
            position += count


def _stream(name: str) -> StreamKey:
    domain, category = name.split("/")
    return StreamKey(domain, category)


@dataclass(frozen=True)
class OpenSegment:
    """The segment of a stream that receives lines: its number, size, and the commits (by
    number) holding its lines."""

    number: int
    size: int
    commits: tuple[int, ...] = ()


@dataclass(frozen=True)
class TrailState:
    """What the commits up to ``seq`` add up to."""

    seq: int = 0
    #: the highest ID spent by a finished commit (a lease's reserved IDs are spent once the
    #: lease is released or taken over)
    last_event_id: int = 0
    lease: Lease | None = None
    streams: dict[StreamKey, OpenSegment] = field(default_factory=dict)
    #: segments that were open and are complete now, waiting to be sealed:
    #: ``(stream, number, commits holding its lines)``
    unsealed: tuple[tuple[StreamKey, int, tuple[int, ...]], ...] = ()

    @property
    def reserved_through(self) -> int:
        """The highest ID anybody may have handed out."""
        return max(self.last_event_id, self.lease.through if self.lease else 0)

    def after(self, commit: Commit) -> TrailState:
        """The state once ``commit`` (the next one) is added."""
        streams = dict(self.streams)
        unsealed = list(self.unsealed)
        for stream, number, size, _ in commit.entries:
            current = streams.get(stream)
            if current is not None and current.number != number:
                unsealed.append((stream, current.number, current.commits))
                current = None
            held = (*current.commits, commit.seq) if current is not None else (commit.seq,)
            streams[stream] = OpenSegment(number, size, held)
        last = max(self.last_event_id, commit.last)
        if commit.takeover is not None and self.lease is not None:
            last = max(last, self.lease.through)  # the expired lease's IDs stay spent
        return replace(
            self,
            seq=commit.seq,
            last_event_id=last,
            lease=commit.lease,
            streams=streams,
            unsealed=tuple(unsealed),
        )

    def sealed(self, stream: StreamKey, number: int) -> TrailState:
        """The state once segment ``number`` of ``stream`` is sealed."""
        kept = tuple(item for item in self.unsealed if item[:2] != (stream, number))
        return replace(self, unsealed=kept)

    def encode(self) -> bytes:
        document = {
            "commit": self.seq,
            "last_event_id": self.last_event_id,
            "lease": None
            if self.lease is None
            else [self.lease.holder, self.lease.through, self.lease.expires],
            "streams": {
                str(stream): [segment.number, segment.size, list(segment.commits)]
                for stream, segment in sorted(self.streams.items())
            },
            "unsealed": [
                [str(stream), number, list(held)] for stream, number, held in self.unsealed
            ],
        }
        return json.dumps(document, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> TrailState:
        try:
            document = json.loads(data)
            lease = document["lease"]
            return cls(
                seq=int(document["commit"]),
                last_event_id=int(document["last_event_id"]),
                lease=None
                if lease is None
                else Lease(str(lease[0]), int(lease[1]), float(lease[2])),
                streams={
                    _stream(name): OpenSegment(int(number), int(size), tuple(map(int, held)))
                    for name, (number, size, held) in document["streams"].items()
                },
                unsealed=tuple(
                    (_stream(name), int(number), tuple(map(int, held)))
                    for name, number, held in document["unsealed"]
                ),
            )
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise DamagedCommitError(f"not a checkpoint: {exc}") from exc


def commits_needed(state: TrailState) -> set[int]:
    """The commits still holding lines that no sealed segment holds."""
    needed = {seq for segment in state.streams.values() for seq in segment.commits}
    needed.update(seq for *_, held in state.unsealed for seq in held)
    return needed


def renumber(lines: Sequence[bytes], first: int) -> list[bytes]:
    """``lines`` (this library's, whose first field is ``event_id``) with IDs from ``first``."""
    from trailstore.lines import render_line

    return [render_line(first + n, line.rstrip(b"\n")) for n, line in enumerate(lines)]
