"""What the seals of a stream say about its segments, so a read can skip what cannot match.

A writer seals each segment it completes (``audit-000001.seal.json`` beside it): its size,
event count, and its ID and timestamp ranges. A filter by time or ID then needs only the
segments whose ranges meet it. Timestamps are not monotonic (clocks differ between hosts and
move), so the skip is decided by each segment's own recorded range, never by its neighbours':
exact, not approximate. A seal is trusted only while its segment still has the size it
records; the open segment, and any segment sealed by no checkpoint yet, is always read.
"""

from __future__ import annotations

import logging

from trailstore.backend import Backend, StreamKey, parse_segment_name
from trailstore.bounds import ReadBounds
from trailstore.evidence.records import DamagedEvidenceError, Seal, seal_path

log = logging.getLogger("trailstore")
_SEAL_SUFFIX = ".seal.json"


class SealIndex:
    """The seals of a trail's streams, listed once per stream and read when first needed."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._sealed: dict[StreamKey, set[int]] = {}
        self._seals: dict[tuple[StreamKey, int], Seal | None] = {}

    def seal(self, stream: StreamKey, number: int) -> Seal | None:
        """The seal of a segment, if it has one that still describes it (else ``None``)."""
        if number not in self._sealed_numbers(stream):
            return None
        key = (stream, number)
        if key not in self._seals:
            self._seals[key] = self._read(stream, number)
        return self._seals[key]

    def can_skip(self, stream: StreamKey, number: int, bounds: ReadBounds) -> bool:
        """True when the segment's seal proves no event in it lies within ``bounds``."""
        if not (bounds.by_time or bounds.by_id):
            return False
        seal = self.seal(stream, number)
        if seal is None:
            return False
        if seal.ids is None or seal.times is None:
            return True  # a sealed segment without events
        (low_id, high_id), times = seal.ids, seal.times
        return (
            (bounds.min_timestamp is not None and times.high < bounds.min_timestamp)
            or (bounds.max_timestamp is not None and times.low > bounds.max_timestamp)
            or (bounds.min_event_id is not None and high_id < bounds.min_event_id)
            or (bounds.max_event_id is not None and low_id > bounds.max_event_id)
        )

    def _sealed_numbers(self, stream: StreamKey) -> set[int]:
        if stream not in self._sealed:
            try:
                names = self._backend.list_evidence(f"{stream.domain}/{stream.category}")
            except OSError:
                names = []
            numbers = (
                parse_segment_name(name.removesuffix(_SEAL_SUFFIX) + ".jsonl")
                for name in names
                if name.endswith(_SEAL_SUFFIX)
            )
            self._sealed[stream] = {number for number in numbers if number is not None}
        return self._sealed[stream]

    def _read(self, stream: StreamKey, number: int) -> Seal | None:
        try:
            seal = Seal.decode(self._backend.get_evidence(seal_path(stream, number)))
            size = self._backend.segment_size(stream, number)
        except (OSError, DamagedEvidenceError) as exc:
            log.debug("not using the seal of %s segment %d: %s", stream, number, exc)
            return None
        if seal.stream != stream or seal.segment != number or seal.size != size:
            log.debug("the seal of %s segment %d no longer describes it", stream, number)
            return None
        return seal
