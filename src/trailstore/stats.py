"""What a trail holds, per stream and in total: segments, bytes, events, the event_id range and
the damage met, from one full scan (``trailstore stats`` prints it)."""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from trailstore.reader import AuditTrailReader, ReadReport


@dataclass
class StreamStats:
    """One stream's figures, or (``stream == "total"``) the whole trail's."""

    stream: str
    segments: int = 0
    events: int = 0
    #: size of the stream's segments on storage
    bytes: int = 0
    min_event_id: int | None = None
    max_event_id: int | None = None

    def count(self, event_id: int) -> None:
        """Add one event."""
        self.events += 1
        if self.min_event_id is None or event_id < self.min_event_id:
            self.min_event_id = event_id
        if self.max_event_id is None or event_id > self.max_event_id:
            self.max_event_id = event_id


@dataclass
class TrailStats:
    """The result of ``trail_stats``."""

    root: str
    streams: list[StreamStats]
    total: StreamStats
    #: the newest event_id handed out (events of crashed writers may be missing below it)
    last_event_id: int
    #: what the reader met (its ``report``) when the scan ended
    damage: ReadReport
    #: how writers of the trail are kept from colliding, in words
    coordination: str

    def to_json(self) -> dict[str, Any]:
        """The figures as a JSON document (``trailstore stats --json``)."""
        totals = dataclasses.asdict(self.total)
        del totals["stream"]
        return {
            "root": self.root,
            "streams": [dataclasses.asdict(stats) for stats in self.streams],
            "total": {"streams": len(self.streams), **totals},
            "last_event_id": self.last_event_id,
            "damage": dataclasses.asdict(self.damage),
            "coordination": self.coordination,
        }


def trail_stats(reader: AuditTrailReader) -> TrailStats:
    """Count every stream's segments and bytes, then every event in one scan (which also fills
    ``reader.report``). A stream that appears while the scan runs is counted too."""
    backend = reader.backend
    streams: dict[tuple[str, str], StreamStats] = {}
    for stream in reader.streams():
        stats = streams[stream.domain, stream.category] = StreamStats(str(stream))
        for number in backend.list_segments(stream):
            stats.segments += 1
            try:
                stats.bytes += backend.segment_size(stream, number)
            except FileNotFoundError:  # pruned or removed since it was listed
                continue
    total = StreamStats("total")
    for event in reader.iter_events():
        total.count(event.event_id)
        key = (event.domain, event.category)
        if key not in streams:
            streams[key] = StreamStats(f"{event.domain}/{event.category}")
        streams[key].count(event.event_id)
    total.segments = sum(stats.segments for stats in streams.values())
    total.bytes = sum(stats.bytes for stats in streams.values())
    return TrailStats(
        root=os.fspath(reader.root_path),
        streams=list(streams.values()),
        total=total,
        last_event_id=backend.last_event_id(),
        damage=copy.deepcopy(reader.report),
        coordination=backend.coordination,
    )
