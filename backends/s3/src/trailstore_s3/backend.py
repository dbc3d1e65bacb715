"""``S3Backend``: a trail in an S3-compatible bucket (``s3://bucket/prefix``), via s3fs.

Protocol (details in ``index``, ``session`` and ``layout``):

- ``index.json`` holds the counter, a ``writer_epoch``, the lease of the session currently
  allocating IDs, and each stream's open segment number and size. It only ever changes by
  compare-and-swap (``If-Match: <ETag>``; created with ``If-None-Match: *``); a writer that
  loses a race re-reads and retries with jittered backoff.
- ``allocate`` is cheap: the lease taken by a session's first ``allocate`` reserves its IDs, so
  they are final at once and never reused, even by a writer that takes over an expired lease.
- A commit publishes counter, sizes and rotation in one compare-and-swap, then uploads one
  immutable chunk object per stream (``If-None-Match: *``): an append costs O(batch).
- Rotated segments, and on ``close()`` the open segments this writer wrote, are sealed: the
  chunks are compacted into ``audit-NNNNNN.jsonl`` (create-only) and deleted.
- ``open_for_writing`` moves torn chunk tails to quarantine objects, seals segments left
  unsealed by an interrupted writer and, for a trail without a (complete) index, derives the
  counter and open segments from the data.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any, ClassVar

from trailstore.backend import Backend, CommitSession, StreamKey
from trailstore.errors import AuditTrailError, ConflictError, StorageError
from trailstore.lines import line_event_id
from trailstore_s3.index import HeldLease, IndexState, IndexStore, OpenSegment, Reserving
from trailstore_s3.layout import TrailListing, TrailLocation
from trailstore_s3.segments import Segments, read_objects
from trailstore_s3.session import S3CommitSession
from trailstore_s3.store import ObjectStore

log = logging.getLogger("trailstore")

#: chunks this process wrote are kept (up to this many bytes) so that sealing need not fetch them
CACHE_BYTES = 64 * 1024 * 1024
#: ``(stream, segment number, chunk name, bytes)``
ChunkUpload = tuple[StreamKey, int, str, bytes]
#: ``(stream, segment number, committed size)`` of a segment to seal
SealJob = tuple[StreamKey, int, int]


class S3Backend(Backend):
    """A trail under ``s3://bucket/prefix``; ``storage_options`` go to ``s3fs.S3FileSystem``."""

    supports_concurrent_processes = True
    #: how long a session may hold the trail before another writer may take it over
    lease_seconds: ClassVar[float] = 10.0
    #: how long sealing waits for chunks another writer committed but has not uploaded yet
    seal_grace_seconds: ClassVar[float] = 5.0
    #: how long a listing taken by ``list_streams`` serves ``list_segments``/``read_segment``
    listing_seconds: ClassVar[float] = 10.0

    def __init__(self, url: str, **storage_options: Any) -> None:
        super().__init__(url, **storage_options)
        self.location = TrailLocation.parse(url)
        self.store = ObjectStore(self.location, storage_options)
        self.index = IndexStore(self.store)
        self.segments = Segments(self.location, self.store)
        self._lock = threading.Lock()
        self._written: dict[tuple[StreamKey, int], dict[str, bytes]] = {}
        self._touched: set[StreamKey] = set()
        self._listing: tuple[float, TrailListing] | None = None

    # -- writing -----------------------------------------------------------------------------

    def open_for_writing(self) -> None:
        with self._lock:
            held = self.index.acquire(0, self.lease_seconds, create=True)
            try:
                state = self._reconcile(held.state)
            except BaseException:
                self.release_lease(held)
                raise
            self.index.swap(held, replace(state, lease=None, complete=True))

    def begin(self, *, max_segment_bytes: int, hand_out: bool = False) -> CommitSession:
        self._lock.acquire()
        return S3CommitSession(self, max_segment_bytes, hand_out=hand_out)

    def acquire_lease(self, reserve: int, reserving: Reserving) -> HeldLease:
        """Take the trail's lease for a session, reserving ``reserve`` IDs (announced to
        ``reserving`` before the write that reserves them)."""
        return self.index.acquire(reserve, self.lease_seconds, reserving=reserving)

    def release_lease(self, held: HeldLease) -> None:
        """Give a lease back without changing anything else (best effort)."""
        try:
            self.index.swap(held, replace(held.state, lease=None))
        except (AuditTrailError, OSError) as exc:
            log.warning("could not release the lease on %s: %s", self.url, exc)

    def end_session(self) -> None:
        """Called by a session when it ends."""
        self._lock.release()

    def upload(
        self,
        uploads: Sequence[ChunkUpload],
        rotated: Sequence[SealJob],
        streams: dict[StreamKey, OpenSegment],
    ) -> None:
        """Create the chunks of a published commit, then seal the segments it rotated away from."""
        keyed = [
            (self.location.chunk_key(stream, number, name), data)
            for stream, number, name, data in uploads
        ]
        try:
            self.store.create_many(keyed)
        except (ConflictError, StorageError) as exc:
            raise StorageError(
                f"events were published in {self.location.index_key} but not written to "
                f"{self.url}; readers will report them as a gap: {exc}"
            ) from exc
        for (stream, number, _, data), (key, _) in zip(uploads, keyed, strict=True):
            self._written.setdefault((stream, number), {})[key] = data
            self._touched.add(stream)
        for job in rotated:
            self._seal(job)
        cached = 0
        for stream, number in reversed(list(self._written)):
            chunks = self._written[stream, number]
            cached += sum(len(data) for data in chunks.values())
            if streams.get(stream, OpenSegment(0, 0)).number != number or cached > CACHE_BYTES:
                del self._written[stream, number]

    def close(self) -> None:
        """Seal the open segment of every stream this backend wrote to."""
        with self._lock:
            if not self._touched:
                return
            touched, self._touched = self._touched, set()
            held = self.index.acquire(0, self.lease_seconds)
            streams = dict(held.state.streams)
            jobs: list[SealJob] = []
            for stream in sorted(touched):
                segment = streams.get(stream)
                if segment is not None and segment.size > 0:
                    jobs.append((stream, segment.number, segment.size))
                    streams[stream] = OpenSegment(segment.number + 1, 0)
            self.index.swap(held, replace(held.state, lease=None, streams=streams))
            for job in jobs:
                self._seal(job)
            self._written.clear()

    def _seal(self, job: SealJob) -> None:
        stream, number, size = job
        known = self._written.pop((stream, number), {})
        try:
            self.segments.seal(stream, number, size, known, self.seal_grace_seconds)
        except (AuditTrailError, OSError) as exc:
            log.warning("could not seal segment %d of %s in %s: %s", number, stream, self.url, exc)

    def _reconcile(self, state: IndexState) -> IndexState:
        """Repair the data and bring the index's counter and open segments in line with it."""
        highest = state.last_event_id
        streams = dict(state.streams)
        for stream, segments in sorted(self._list_trail().items()):
            entry = streams.get(stream)
            for number, objects in sorted(segments.items()):
                if not objects.chunks:
                    continue
                names = list(objects.chunks)
                if objects.sealed_size is not None:
                    names = self.segments.drop_sealed_chunks(stream, number, names)
                    self.segments.repair_chunks(stream, number, names)
                elif entry is not None and number == entry.number:
                    if objects.chunk_bytes != entry.size:
                        self.segments.repair_chunks(stream, number, names)
                else:
                    self.segments.seal(stream, number, 0, {}, 0.0)
            last = max(segments)
            described = entry is not None and (
                last < entry.number or (last == entry.number and segments[last].sealed_size is None)
            )
            if not described:  # data the index does not know: continue after it, above its IDs
                lines = self.segments.lines(stream, last, None)
                ids = [line_event_id(line) for line in lines if line.endswith(b"\n")]
                highest = max([highest, *(i for i in ids if i is not None)])
                streams[stream] = OpenSegment(last + 1, 0)
        return replace(state, last_event_id=highest, streams=streams)

    # -- reading -----------------------------------------------------------------------------

    def last_event_id(self) -> int:
        return self.index.read()[0].last_event_id

    def trail_exists(self) -> bool:
        try:
            self.store.get(self.location.index_key)
        except FileNotFoundError:
            return bool(self._list_trail())
        return True

    def list_streams(self) -> list[StreamKey]:
        return sorted(self._list_trail())

    def list_segments(self, stream: StreamKey) -> list[int]:
        listing = self._recent_listing()
        if listing is None:
            listing = self.location.parse_listing(
                self.store.list_keys(self.location.stream_prefix(stream))
            )
        return sorted(listing.get(stream, {}))

    def read_segment(self, stream: StreamKey, number: int) -> Iterator[bytes]:
        listing = self._recent_listing() or {}
        yield from self.segments.lines(stream, number, listing.get(stream, {}).get(number))

    def segment_size(self, stream: StreamKey, number: int) -> int:
        """Bytes stored for a segment (sealed object plus chunks), from a listing."""
        listing = self._recent_listing() or {}
        objects = listing.get(stream, {}).get(number)
        if objects is None:
            objects = read_objects(self.location, self.store, stream, number)
        if objects is None:
            raise FileNotFoundError(f"segment {number} of {stream} in {self.url} does not exist")
        return (objects.sealed_size or 0) + objects.chunk_bytes

    def _list_trail(self) -> TrailListing:
        listing = self.location.parse_listing(self.store.list_keys(self.location.root))
        self._listing = (time.monotonic(), listing)
        return listing

    def _recent_listing(self) -> TrailListing | None:
        if self._listing is None or time.monotonic() - self._listing[0] > self.listing_seconds:
            return None
        return self._listing[1]
