"""The ID and timestamp bounds of a read, shared by the readers that scan forwards, read the
newest events backwards, or follow a trail."""

from __future__ import annotations

from dataclasses import dataclass

from trailstore.events import AuditEvent
from trailstore.lines import line_timestamp


@dataclass(frozen=True)
class ReadBounds:
    """Inclusive ID and timestamp bounds (``None`` leaves that side open)."""

    min_event_id: int | None = None
    max_event_id: int | None = None
    min_timestamp: float | None = None
    max_timestamp: float | None = None

    @property
    def by_time(self) -> bool:
        """Whether a timestamp bound is set."""
        return self.min_timestamp is not None or self.max_timestamp is not None

    @property
    def by_id(self) -> bool:
        """Whether an ID bound is set."""
        return self.min_event_id is not None or self.max_event_id is not None

    def holds_id(self, event_id: int) -> bool:
        """Whether an ID lies within the ID bounds."""
        return (self.min_event_id is None or event_id >= self.min_event_id) and (
            self.max_event_id is None or event_id <= self.max_event_id
        )

    def admits(self, event: AuditEvent, models: frozenset[str] | None) -> bool:
        """Whether an event of a selected stream passes the bounds and the model filter."""
        return (
            (models is None or event.model_name in models)
            and (self.min_timestamp is None or event.timestamp >= self.min_timestamp)
            and (self.max_timestamp is None or event.timestamp <= self.max_timestamp)
            and self.holds_id(event.event_id)
        )

    def may_hold(self, line: bytes) -> bool:
        """False when a line's timestamp, read without a full parse, is outside the time
        bounds: the line need not be parsed. (True when it cannot be read that way.)"""
        if not self.by_time:
            return True
        timestamp = line_timestamp(line)
        return timestamp is None or (
            (self.min_timestamp is None or timestamp >= self.min_timestamp)
            and (self.max_timestamp is None or timestamp <= self.max_timestamp)
        )
