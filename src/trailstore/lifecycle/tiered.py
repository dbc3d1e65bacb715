"""One trail over two tiers: its own storage and its archive. Every segment is read from the
trail where it is still there, else from the archive, so readers, replay and ``verify`` see
each event once whether its segment is local, archived, or both. Read-only."""

from __future__ import annotations

import io
from collections.abc import Iterator

from trailstore.backend import Backend, CommitSession, StreamKey
from trailstore.errors import ConfigurationError
from trailstore.evidence.checkpointer import read_checkpoint
from trailstore.evidence.records import (
    DamagedEvidenceError,
    Seal,
    seal_path,
)
from trailstore.lifecycle.archive import Archive
from trailstore.lifecycle.codecs import CorruptCopyError
from trailstore.lines import bounded_lines


class TieredBackend(Backend):
    """``trail`` read together with ``archive`` (see the module docstring)."""

    def __init__(self, trail: Backend, archive: Archive) -> None:
        super().__init__(trail.url, **trail.storage_options)
        try:
            origin: str | None = read_checkpoint(trail, 1).origin
        except (FileNotFoundError, DamagedEvidenceError):  # no checkpoints, or the disk is lost
            origin = None
        archive.admit(trail.url, origin, holding=True)
        self.trail = trail
        self.archive = archive
        self._last: tuple[tuple[StreamKey, int], bytes] | None = None

    @property
    def coordination(self) -> str:
        return self.trail.coordination

    def open_for_writing(self) -> None:
        raise ConfigurationError("a trail read together with its archive is read-only")

    def begin(self, *, max_segment_bytes: int, hand_out: bool = False) -> CommitSession:
        raise ConfigurationError("a trail read together with its archive is read-only")

    def last_event_id(self) -> int:
        if self.trail.trail_exists():
            return self.trail.last_event_id()
        numbers = self.archive.checkpoints()  # the trail's own storage is lost: the archive
        return 0 if not numbers else _archived_size(self.archive, numbers[-1])

    def trail_exists(self) -> bool:
        return self.trail.trail_exists() or bool(self.archive.checkpoints())

    def list_streams(self) -> list[StreamKey]:
        return sorted(set(self.trail.list_streams()) | set(self.archive.streams()))

    def list_segments(self, stream: StreamKey) -> list[int]:
        return sorted(set(self.trail.list_segments(stream)) | set(self.archive.segments(stream)))

    def read_segment(self, stream: StreamKey, number: int) -> Iterator[bytes]:
        try:
            lines = iter(self.trail.read_segment(stream, number))
            first = next(lines, None)
        except FileNotFoundError:
            yield from bounded_lines(io.BytesIO(self._archived(stream, number)))
            return
        if first is not None:
            yield first
            yield from lines

    def segment_size(self, stream: StreamKey, number: int) -> int:
        try:
            return self.trail.segment_size(stream, number)
        except FileNotFoundError:
            return len(self._archived(stream, number))

    def read_range(self, stream: StreamKey, number: int, start: int, end: int | None) -> bytes:
        try:
            return self.trail.read_range(stream, number, start, end)
        except FileNotFoundError:
            return self._archived(stream, number)[start:end]

    def _archived(self, stream: StreamKey, number: int) -> bytes:
        """An archived segment, decompressed within the size the trail's own seal gives
        (kept for the last one read: verify reads a segment in several ranges)."""
        if self._last is not None and self._last[0] == (stream, number):
            return self._last[1]
        try:
            seal: Seal | None = Seal.decode(self.trail.get_evidence(seal_path(stream, number)))
        except (FileNotFoundError, DamagedEvidenceError):
            seal = None  # the trail's disk is lost: the archive's own seal bounds it
        try:
            data = self.archive.read_segment(stream, number, seal)
        except CorruptCopyError as exc:  # to readers, a segment that cannot be read
            raise FileNotFoundError(
                f"{self.archive.url}: {stream} segment {number} does not decompress ({exc})"
            ) from exc
        self._last = ((stream, number), data)
        return data

    def put_evidence(self, path: str, data: bytes) -> bool:
        return self.trail.put_evidence(path, data)

    def get_evidence(self, path: str) -> bytes:
        try:
            return self.trail.get_evidence(path)
        except FileNotFoundError:
            return self.archive.backend.get_evidence(path)

    def list_evidence(self, directory: str) -> list[str]:
        found = set(self.trail.list_evidence(directory))
        return sorted(found | set(self.archive.backend.list_evidence(directory)))

    def close(self) -> None:
        try:
            self.trail.close()
        finally:
            self.archive.close()


def _archived_size(archive: Archive, number: int) -> int:
    return read_checkpoint(archive.backend, number).size
