"""What a read selects — streams, models, ID and timestamp bounds — shared by the readers that
scan forwards, read the newest events backwards, or follow a trail."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import TypedDict, Unpack

from trailstore.errors import ConfigurationError
from trailstore.events import AuditEvent, unix_seconds
from trailstore.lines import line_timestamp

#: an event and its line as stored, as the readers pass them on
Read = tuple[AuditEvent, bytes]


class EventFilters(TypedDict, total=False):
    """The filters of ``AuditTrailReader.iter_events``, as keywords other calls pass on."""

    domains: Collection[str] | str | None
    categories: Collection[str] | str | None
    model_names: Collection[str] | str | None
    min_event_id: int | None
    max_event_id: int | None
    min_timestamp: float | datetime | None
    max_timestamp: float | datetime | None


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


@dataclass(frozen=True)
class Selection:
    """The streams and models a read keeps (``None``: all), and its bounds."""

    domains: frozenset[str] | None
    categories: frozenset[str] | None
    models: frozenset[str] | None
    bounds: ReadBounds

    @classmethod
    def of(cls, **filters: Unpack[EventFilters]) -> Selection:
        """The selection ``filters`` describe; a timestamp that is neither Unix seconds nor a
        datetime raises ``ConfigurationError``."""
        return cls(
            _names(filters.get("domains")),
            _names(filters.get("categories")),
            _names(filters.get("model_names")),
            ReadBounds(
                filters.get("min_event_id"),
                filters.get("max_event_id"),
                _seconds("min_timestamp", filters.get("min_timestamp")),
                _seconds("max_timestamp", filters.get("max_timestamp")),
            ),
        )

    @property
    def whole_trail(self) -> bool:
        """Whether every stream is read."""
        return self.domains is None and self.categories is None

    def holds_stream(self, domain: str, category: str) -> bool:
        """Whether the stream ``domain/category`` is read."""
        return (self.domains is None or domain in self.domains) and (
            self.categories is None or category in self.categories
        )

    def picks(self, event: AuditEvent) -> bool:
        """Whether an event of any stream is selected."""
        return self.holds_stream(event.domain, event.category) and self.bounds.admits(
            event, self.models
        )


def _names(values: Collection[str] | str | None) -> frozenset[str] | None:
    if values is None:
        return None
    if isinstance(values, str | Enum):
        values = [values]
    return frozenset(value.value if isinstance(value, Enum) else value for value in values)


def _seconds(name: str, moment: float | datetime | None) -> float | None:
    """A timestamp filter as Unix seconds; a naive datetime is UTC, as the writer takes it."""
    if moment is None or isinstance(moment, datetime):
        return None if moment is None else unix_seconds(moment)
    if isinstance(moment, bool) or not isinstance(moment, int | float):
        raise ConfigurationError(
            f"{name} must be Unix seconds or a datetime, got {type(moment).__name__}"
        )
    return float(moment)
