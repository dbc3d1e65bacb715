"""The in-memory backend (``memory://name``): for tests, benchmarks and the library's CPU ceiling.

Trails live for the life of the process and are shared by every backend opened on the same
name, so reopening a ``memory://`` URL continues the same trail.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from trailstore.backend import Backend, CommitSession, QueueingSession, StreamKey, plan_rotation
from trailstore.lines import line_event_id


@dataclass
class MemoryTrail:
    """The state of one in-memory trail; tests may reach into it to simulate damage."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    counter: int = 0
    #: a writer opened it (an empty trail is still a trail)
    opened: bool = False
    segments: dict[StreamKey, dict[int, bytearray]] = field(default_factory=dict)


_TRAILS: dict[str, MemoryTrail] = {}
_TRAILS_LOCK = threading.Lock()


def memory_trail(url: str) -> MemoryTrail:
    """The shared trail behind a ``memory://`` URL, created on first use."""
    name = url.removeprefix("memory://")
    with _TRAILS_LOCK:
        return _TRAILS.setdefault(name, MemoryTrail())


class MemoryBackend(Backend):
    """A trail held in process memory."""

    persistent = False

    def __init__(self, url: str, **storage_options: Any) -> None:
        super().__init__(url, **storage_options)
        self.trail = memory_trail(url)

    def open_for_writing(self) -> None:
        with self.trail.lock:
            self.trail.opened = True
            for segments in self.trail.segments.values():
                if not segments:
                    continue
                tail = segments[max(segments)]
                del tail[tail.rfind(b"\n") + 1 :]
                ids = (line_event_id(line) for line in bytes(tail).splitlines())
                self.trail.counter = max([self.trail.counter, *(i for i in ids if i is not None)])

    def begin(self, *, max_segment_bytes: int, hand_out: bool = False) -> CommitSession:
        self.trail.lock.acquire()
        return _MemorySession(self.trail, max_segment_bytes, hand_out=hand_out)

    def last_event_id(self) -> int:
        return self.trail.counter

    def trail_exists(self) -> bool:
        with self.trail.lock:
            return self.trail.opened or bool(self.trail.segments)

    def list_streams(self) -> list[StreamKey]:
        with self.trail.lock:
            return sorted(self.trail.segments)

    def list_segments(self, stream: StreamKey) -> list[int]:
        with self.trail.lock:
            return sorted(self.trail.segments.get(stream, {}))

    def read_segment(self, stream: StreamKey, number: int) -> Iterator[bytes]:
        with self.trail.lock:
            segment = self.trail.segments.get(stream, {}).get(number)
            if segment is None:
                raise FileNotFoundError(f"memory segment {stream}/{number} does not exist")
            data = bytes(segment)
        return iter(data.splitlines(keepends=True))

    def segment_size(self, stream: StreamKey, number: int) -> int:
        with self.trail.lock:
            return len(self.trail.segments[stream][number])


class _MemorySession(QueueingSession):
    """Commits in memory; the counter moves only at commit, as the trail dies with the
    process (handed-out IDs cannot outlive a crash here)."""

    def __init__(self, trail: MemoryTrail, max_segment_bytes: int, *, hand_out: bool) -> None:
        super().__init__(trail.counter, max_segment_bytes, hand_out=hand_out)
        self._trail = trail
        self._open = True

    def commit(self, *, sync: bool) -> None:
        try:
            if self._end > self._start:
                self.reserving(self._start + 1, self._end)
            for stream, lines in self._queued.items():
                segments = self._trail.segments.setdefault(stream, {})
                number = max(segments, default=1)
                current = segments.setdefault(number, bytearray())
                for new_segment, run in plan_rotation(len(current), lines, self._max_segment_bytes):
                    if new_segment:
                        number += 1
                        current = segments.setdefault(number, bytearray())
                    current += b"".join(run)
            self._trail.counter = self._end
        finally:
            self.abort()

    def abort(self) -> None:
        if self._open:
            self._open = False
            if self.hand_out:  # handed-out IDs stay spent
                self._trail.counter = max(self._trail.counter, self._end)
            self._trail.lock.release()
