"""The backend interface: what the writer and reader need from a storage system.

A backend owns the trail's ID counter, the choice and rotation of segments, and segment I/O.
Writes happen inside a ``CommitSession``: while one is open, no other writer (thread, process
or host) can allocate IDs or append to the trail, so IDs are contiguous and every stream is
written in ascending ``event_id`` order.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal, NamedTuple

from trailstore.errors import ConfigurationError

SEGMENT_PATTERN = re.compile(r"audit-(\d{6,})\.jsonl")
INDEX_NAME = "index.json"


class Durability(StrEnum):
    """When ``append_event`` returns (see the README's durability table)."""

    FSYNC = "fsync"
    FLUSH = "flush"
    BATCH = "batch"


#: the durability names a writer accepts besides ``Durability`` members
DurabilityName = Literal["fsync", "flush", "batch"]


class StreamKey(NamedTuple):
    """One ``<domain>/<category>`` pair of a trail."""

    domain: str
    category: str

    def __str__(self) -> str:
        return f"{self.domain}/{self.category}"


def segment_name(number: int) -> str:
    """File name of segment ``number``: zero-padded to six digits, wider past 999999."""
    return f"audit-{number:06d}.jsonl"


def parse_segment_name(name: str) -> int | None:
    """Segment number of a file name, or ``None`` if it is not a segment: only the exact
    name ``segment_name`` gives counts (``audit-0000001.jsonl`` is a foreign file, not an
    alias of segment 1)."""
    match = SEGMENT_PATTERN.fullmatch(name)
    if match is None:
        return None
    number = int(match.group(1))
    return number if segment_name(number) == name else None


def plan_rotation(
    size: int, lines: Sequence[bytes], limit: int
) -> Iterator[tuple[bool, list[bytes]]]:
    """Split ``lines`` into runs ``(starts_new_segment, run)`` for a segment of ``size`` bytes.

    No run grows a segment past ``limit``, except that a line longer than the limit is written
    alone into a segment of its own.
    """
    run: list[bytes] = []
    new_segment = False
    for line in lines:
        if size > 0 and size + len(line) > limit:
            if run:
                yield new_segment, run
            run, new_segment, size = [], True, 0
        run.append(line)
        size += len(line)
    if run:
        yield new_segment, run


class Retention(NamedTuple):
    """Write-once retention of an archived object (S3 Object Lock): ``mode`` ``governance``
    (users with a special permission may still delete) or ``compliance`` (nobody may, until
    ``until``)."""

    mode: Literal["governance", "compliance"]
    until: datetime


class CommitSession(ABC):
    """Exclusive right to allocate IDs and append, from ``Backend.begin`` to commit or abort.

    With ``hand_out`` (``batch`` mode) the IDs ``allocate`` returns are handed to callers
    before the commit: they are spent as soon as ``allocate`` returns, and a failed commit, an
    abort or the death of the process leaves them as a reported gap, never gives them to later
    events. Without it, IDs are spent only by a successful commit.

    Before any ID can become spent (reserved durably, or written), a session calls
    ``reserving(first, last)``: a gap the reader reports is then always one a session announced,
    which the crash kit of ``trailstore.testing`` checks.
    """

    def __init__(self, *, hand_out: bool) -> None:
        self.hand_out = hand_out

    def reserving(self, first: int, last: int) -> None:  # noqa: B027 - a hook, empty on purpose
        """IDs ``first..last`` are about to become spent; the default listens to nothing."""

    @abstractmethod
    def allocate(self, count: int) -> int:
        """Reserve ``count`` consecutive IDs and return the first."""

    @abstractmethod
    def append(self, stream: StreamKey, lines: Sequence[bytes]) -> None:
        """Queue complete lines for ``stream``; they are written by ``commit``."""

    @abstractmethod
    def commit(self, *, sync: bool) -> int:
        """Write the queued lines (rotating as needed), end the session, and return the first
        ID committed.

        Without ``hand_out`` the IDs ``allocate`` returned are provisional: a session that
        finds another writer committed first may renumber its lines (keeping their order, as
        one contiguous run from the returned ID). With ``sync`` the call returns only once the
        data is durable. On failure nothing of the session is left behind, no ID is spent,
        and the error is raised.
        """

    @abstractmethod
    def abort(self) -> None:
        """End the session without writing; allocated IDs are given back."""


class QueueingSession(CommitSession):
    """A session that counts IDs up from ``counter`` and keeps appended lines until commit;
    backends whose lock makes the counter theirs for the whole session build on it."""

    def __init__(self, counter: int, max_segment_bytes: int, *, hand_out: bool) -> None:
        super().__init__(hand_out=hand_out)
        self._start = counter
        self._end = counter
        self._max_segment_bytes = max_segment_bytes
        self._queued: dict[StreamKey, list[bytes]] = {}

    def allocate(self, count: int) -> int:
        first = self._end + 1
        self._end += count
        return first

    def append(self, stream: StreamKey, lines: Sequence[bytes]) -> None:
        self._queued.setdefault(stream, []).extend(lines)


class Backend(ABC):
    """A storage system seen as a trail of streams of numbered segments plus an ID counter."""

    #: several processes (or hosts) may write the same trail at once
    supports_concurrent_processes: ClassVar[bool] = False
    #: the trail outlives the process
    persistent: ClassVar[bool] = True
    #: sealed segments may be removed once archived (a trail on a disk of its own)
    prunes_segments: ClassVar[bool] = False
    #: how often a follower looks for new events by default, in seconds: each look lists
    #: and reads every stream, which object stores bill per request
    follow_poll_interval: ClassVar[float] = 2.0

    @property
    def survives_fork(self) -> bool:
        """Whether a writer made before ``fork()`` may be used in the child (it reopens the
        trail there); clients built on an event loop thread (s3fs, gcsfs, adlfs) may not."""
        return True

    @property
    def exclusive_sessions(self) -> bool:
        """Whether a commit session excludes every other writer while it lasts (a lock), or
        commits optimistically, renumbering its lines if another writer committed first."""
        return True

    @property
    def coordination(self) -> str:
        """How writers of the trail are kept from colliding, in words (``stats`` shows it):
        above all, whether they may run on several hosts."""
        return "not stated by this backend"

    def __init__(self, url: str, **storage_options: Any) -> None:
        self.url = url
        self.storage_options = storage_options
        #: segments this backend's commits completed (rotated away from), for writers that
        #: checkpoint when a segment is sealed
        self.rotations = 0

    @abstractmethod
    def open_for_writing(self) -> None:
        """Create the trail if needed, repair torn tails and reconcile the counter with the data."""

    @abstractmethod
    def begin(self, *, max_segment_bytes: int, hand_out: bool = False) -> CommitSession:
        """Start an exclusive commit session (blocks while another writer holds one); with
        ``hand_out`` its IDs are spent once allocated (see ``CommitSession``)."""

    @abstractmethod
    def last_event_id(self) -> int:
        """The highest ID allocated by a finished commit (0 for an empty trail): every ID up
        to it is written, or was lost by a writer that died."""

    def settled_streams(self) -> tuple[int, list[StreamKey]]:
        """``last_event_id()`` and then every stream that may hold an ID up to it: what a
        checkpoint covers. A backend that can read both at once overrides it."""
        last = self.last_event_id()
        return last, self.list_streams()

    @abstractmethod
    def trail_exists(self) -> bool:
        """Whether the root holds a trail: an index or at least one segment. A root that
        cannot hold one (a local path that is a file) raises ``StorageError``."""

    @abstractmethod
    def list_streams(self) -> list[StreamKey]:
        """Every stream of the trail, sorted."""

    @abstractmethod
    def list_segments(self, stream: StreamKey) -> list[int]:
        """Segment numbers of ``stream``, ascending."""

    @abstractmethod
    def read_segment(self, stream: StreamKey, number: int) -> Iterator[bytes]:
        """Yield the raw lines of a segment lazily; the last one may lack its newline.

        Raises ``FileNotFoundError`` if the segment does not exist (any more).
        """

    def segment_size(self, stream: StreamKey, number: int) -> int:
        """Size of a segment in bytes."""
        return sum(len(line) for line in self.read_segment(stream, number))

    def read_range(self, stream: StreamKey, number: int, start: int, end: int | None) -> bytes:
        """Bytes ``start`` to ``end`` (the segment's end if ``None``) of a segment as stored.

        Raises ``FileNotFoundError`` if the segment does not exist (any more).
        """
        return b"".join(self.read_segment(stream, number))[start:end]

    # -- evidence: checkpoints and seals, files beside the segments --------------------------

    @abstractmethod
    def put_evidence(self, path: str, data: bytes) -> bool:
        """Create the file ``path`` (relative to the root, made by this library) holding
        ``data``, durably, unless it exists: True if it holds ``data`` now, False if another
        writer created it with other bytes first. Never overwrites."""

    @abstractmethod
    def get_evidence(self, path: str) -> bytes:
        """The bytes of an evidence file; ``FileNotFoundError`` if there is none."""

    @abstractmethod
    def list_evidence(self, directory: str) -> list[str]:
        """The names of the files in ``directory`` (relative to the root), none if absent."""

    # -- lifecycle: archives and pruning ------------------------------------------------------

    def put_archived(self, path: str, data: bytes, retention: Retention | None = None) -> bool:
        """``put_evidence`` for a trail used as an archive; with ``retention`` the object is
        created write-once until then, which only storage with object locks can do."""
        if retention is not None:
            raise ConfigurationError(
                f"{self.url} cannot keep objects write-once: Object Lock retention needs an "
                "S3 archive (s3:// URLs, trailstore-s3)"
            )
        return self.put_evidence(path, data)

    def remove_sealed_segment(self, stream: StreamKey, number: int) -> None:
        """Delete a sealed segment (pruning); its seal stays. Only backends that
        ``prunes_segments`` do: an object-store trail is where archives go."""
        raise ConfigurationError(f"{self.url}: this backend keeps every segment")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; the default has none."""

    def abandon(self) -> None:  # noqa: B027 - optional hook
        """In a forked child: let go of handles inherited from the parent without releasing
        anything the parent still holds (its locks); the default has none."""
