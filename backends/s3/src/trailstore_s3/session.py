"""``S3CommitSession``: IDs under a lease, one compare-and-swap, then create-only chunk uploads.

1. The first ``allocate`` takes the trail's lease with one compare-and-swap of ``index.json``,
   reserving exactly the IDs asked for; later ``allocate`` calls of the same session (the batch
   committer's) hand out IDs locally and extend the reservation (doubling it, plus 64) only
   when it runs out. IDs are final when ``allocate`` returns: a writer taking over an expired
   lease starts above the reservation, so they are never reused. ``commit`` gives unused
   reserved IDs back; only a writer that dies or stalls holding the lease leaves them as a gap.
2. ``commit`` plans the chunks (rotation from the open segment sizes kept in the index), then
   one compare-and-swap publishes the new counter and sizes and releases the lease. A writer
   whose lease was taken over fails here with ``FencedError`` before writing anything.
3. The chunks are uploaded with ``If-None-Match: *``; ``commit`` returns once S3 acknowledged
   them. Segments the commit rotated away from are then sealed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from trailstore.backend import CommitSession, StreamKey, plan_rotation
from trailstore.errors import AuditTrailError
from trailstore.lines import line_event_id
from trailstore_s3.index import HeldLease, OpenSegment
from trailstore_s3.layout import chunk_name

if TYPE_CHECKING:
    from trailstore_s3.backend import ChunkUpload, S3Backend, SealJob


class S3CommitSession(CommitSession):
    """One commit of an ``S3Backend``; holds the backend's thread lock until it ends."""

    def __init__(self, backend: S3Backend, max_segment_bytes: int, *, hand_out: bool) -> None:
        super().__init__(hand_out=hand_out)
        self._backend = backend
        self._max_segment_bytes = max_segment_bytes
        self._held: HeldLease | None = None
        self._next_id = 0
        self._queued: dict[StreamKey, list[bytes]] = {}
        self._open = True

    def allocate(self, count: int) -> int:
        backend = self._backend
        if self._held is None:
            self._held = backend.acquire_lease(count, self.reserving)
            self._next_id = self._held.state.last_event_id + 1
        else:
            state = self._held.state
            assert state.lease is not None
            wanted = self._next_id + count - 1
            if wanted > state.lease.reserved_through:
                reserved = state.lease.reserved_through - state.last_event_id
                lease = replace(
                    state.lease,
                    expires=round(time.time() + backend.lease_seconds, 3),
                    reserved_through=max(wanted, state.lease.reserved_through + reserved + 64),
                )
                self.reserving(state.lease.reserved_through + 1, lease.reserved_through)
                self._held = backend.index.swap(self._held, replace(state, lease=lease))
        first = self._next_id
        self._next_id += count
        return first

    def append(self, stream: StreamKey, lines: Sequence[bytes]) -> None:
        self._queued.setdefault(stream, []).extend(lines)

    def commit(self, *, sync: bool) -> None:
        """Publish and upload; S3 acknowledges every PUT durably, so ``sync`` changes nothing."""
        try:
            held, self._held = self._held, None
            if held is None:
                return
            streams = dict(held.state.streams)
            uploads: list[ChunkUpload] = []
            rotated: list[SealJob] = []
            for stream, lines in self._queued.items():
                segment = streams.get(stream, OpenSegment(1, 0))
                number, size = segment.number, segment.size
                for new_segment, run in plan_rotation(size, lines, self._max_segment_bytes):
                    if new_segment:
                        rotated.append((stream, number, size))
                        number, size = number + 1, 0
                    uploads.append((stream, number, chunk_name(_first_id(run)), b"".join(run)))
                    size += len(uploads[-1][3])
                streams[stream] = OpenSegment(number, size)
            wanted = replace(
                held.state, last_event_id=self._next_id - 1, lease=None, streams=streams
            )
            self._backend.index.swap(held, wanted)
            self._backend.upload(uploads, rotated, streams)
        finally:
            self._finish()

    def abort(self) -> None:
        held, self._held = self._held, None
        try:
            if held is not None:
                self._backend.release_lease(held)
        finally:
            self._finish()

    def _finish(self) -> None:
        if self._open:
            self._open = False
            self._backend.end_session()


def _first_id(run: Sequence[bytes]) -> int:
    event_id = line_event_id(run[0])
    if event_id is None:
        raise AuditTrailError("a queued line has no event_id")
    return event_id
