"""Segment contents: merging a segment's objects into lines, sealing chunks into the segment
object, and moving torn bytes aside."""

from __future__ import annotations

import contextlib
import heapq
import logging
import time
from collections.abc import Iterator, Mapping, Sequence

from trailstore.backend import StreamKey
from trailstore.errors import ConflictError, StorageError
from trailstore.lines import line_event_id
from trailstore_s3.layout import SegmentObjects, TrailLocation
from trailstore_s3.store import ObjectStore

log = logging.getLogger("trailstore")

_POLL = 0.05
_GIVE_UP = 30.0


def _keyed(data: bytes) -> Iterator[tuple[int, bytes]]:
    """The lines of one object with their event IDs (a line without one keeps its place)."""
    current = 0
    for line in data.splitlines(keepends=True):
        event_id = line_event_id(line)
        current = current if event_id is None else event_id
        yield current, line


def merge_lines(sources: Sequence[bytes]) -> list[bytes]:
    """Lines of several ID-ordered objects merged in event-ID order; identical repeats dropped."""
    merged: list[bytes] = []
    for _, line in heapq.merge(*(_keyed(data) for data in sources), key=lambda item: item[0]):
        if not merged or merged[-1] != line:
            merged.append(line)
    return merged


def held_by(sealed: bytes, chunks: Mapping[str, bytes]) -> list[str]:
    """Keys of the ``chunks`` (key → bytes) whose every line the sealed object holds: copies,
    to be deleted so that they are neither stored nor counted against the segment twice."""
    lines = set(sealed.splitlines(keepends=True))
    return [key for key, data in chunks.items() if lines.issuperset(data.splitlines(True))]


def segment_keys(
    location: TrailLocation, stream: StreamKey, number: int, objects: SegmentObjects
) -> list[str]:
    """Keys of a segment's objects: the sealed object first, then the chunks in ID order."""
    keys = [location.segment_key(stream, number)] if objects.sealed_size is not None else []
    return keys + [location.chunk_key(stream, number, name) for name in objects.chunks]


def read_objects(
    location: TrailLocation, store: ObjectStore, stream: StreamKey, number: int
) -> SegmentObjects | None:
    """List one segment's objects; ``None`` if it has none."""
    listing = location.parse_listing(store.list_keys(location.segment_key(stream, number)))
    return listing.get(stream, {}).get(number)


class Segments:
    """Reads, seals and repairs the segments of one trail."""

    def __init__(self, location: TrailLocation, store: ObjectStore) -> None:
        self.location = location
        self.store = store

    def lines(self, stream: StreamKey, number: int, objects: SegmentObjects | None) -> list[bytes]:
        """Every line of a segment (sealed object plus any chunks), in event-ID order.

        ``objects`` is a possibly stale listing; if an object vanished (chunks sealed meanwhile)
        the segment is listed again. Raises ``FileNotFoundError`` if it has no objects.
        """
        for attempt in range(3):
            if objects is None or attempt:
                objects = read_objects(self.location, self.store, stream, number)
            if objects is None:
                break
            keys = segment_keys(self.location, stream, number, objects)
            bodies = self.store.get_many(keys)
            if len(bodies) == len(keys):
                return merge_lines([bodies[key] for key in keys])
        raise FileNotFoundError(
            f"segment {number} of {stream} in {self.location.url} does not exist"
        )

    def seal(
        self,
        stream: StreamKey,
        number: int,
        expected_size: int,
        known: Mapping[str, bytes],
        grace: float,
    ) -> None:
        """Compact a rotated segment's chunks into ``audit-NNNNNN.jsonl`` (create-only), then
        delete them.

        Waits up to ``grace`` seconds for chunks still being uploaded (committed ``expected_size``
        bytes); one arriving later stays a chunk beside the sealed object, and readers merge it.
        ``known`` holds chunk bodies this process wrote (key → bytes), saving their download.
        """
        deadline = time.monotonic() + grace
        while True:
            objects = read_objects(self.location, self.store, stream, number)
            if objects is None or objects.sealed_size is not None or not objects.chunks:
                return
            keys = segment_keys(self.location, stream, number, objects)
            if objects.chunk_bytes >= expected_size or time.monotonic() >= deadline:
                fetched = self.store.get_many([key for key in keys if key not in known])
                fetched.update((key, data) for key, data in known.items() if key in keys)
                if len(fetched) == len(keys):
                    break
            if time.monotonic() >= deadline + _GIVE_UP:
                raise StorageError(f"chunks of {stream} segment {number} keep vanishing")
            time.sleep(_POLL)
        bodies = [
            self.keep_complete(stream, number, name, fetched[key])
            for name, key in zip(objects.chunks, keys, strict=True)
        ]
        segment_key = self.location.segment_key(stream, number)
        try:
            self.store.put(segment_key, b"".join(merge_lines(bodies)))
        except ConflictError:
            # sealed already: by another writer sealing at the same time, or by our own PUT
            # whose answer was lost and whose retry was answered 412
            sealed = self.store.get(segment_key)[0]
            keys = held_by(sealed, dict(zip(keys, bodies, strict=True)))
        self.store.delete(keys)

    def drop_sealed_chunks(self, stream: StreamKey, number: int, names: Sequence[str]) -> list[str]:
        """Delete the chunks of a sealed segment that the sealed object holds (a sealer
        stopped before deleting them); return the names of the others (chunks uploaded
        after sealing, or torn)."""
        segment_key = self.location.segment_key(stream, number)
        keys = {self.location.chunk_key(stream, number, name): name for name in names}
        bodies = self.store.get_many([segment_key, *keys])
        sealed = bodies.pop(segment_key, None)
        if sealed is None:
            return list(names)
        redundant = held_by(sealed, bodies)
        self.store.delete(redundant)
        return [name for key, name in keys.items() if key in bodies and key not in redundant]

    def keep_complete(self, stream: StreamKey, number: int, name: str, data: bytes) -> bytes:
        """The complete lines of chunk ``name``; a torn tail is moved to a quarantine object."""
        cut = data.rfind(b"\n") + 1
        if cut == len(data):
            return data
        key = self.location.quarantine_key(stream, number, name)
        with contextlib.suppress(ConflictError):  # moved aside by an earlier attempt
            self.store.put(key, data[cut:] + b"\n")
        log.warning(
            "moved %d torn bytes of %s segment %d aside to %s", len(data) - cut, stream, number, key
        )
        return data[:cut]

    def repair_chunks(self, stream: StreamKey, number: int, names: Sequence[str]) -> None:
        """Check chunks for a torn tail; a torn chunk is replaced by its complete lines (a new
        chunk) and the torn bytes go to quarantine."""
        keys = {self.location.chunk_key(stream, number, name): name for name in names}
        for key, data in self.store.get_many(list(keys)).items():
            name = keys[key]
            complete = self.keep_complete(stream, number, name, data)
            repaired = f"{name.split('.')[0]}.repaired.jsonl"
            if complete != data and repaired != name:
                if complete:
                    replacement = self.location.chunk_key(stream, number, repaired)
                    self.store.create_many([(replacement, complete)])
                self.store.delete([key])
