"""The history of one record: every event about it, each with the fields it changed.

A record is told apart as replay tells it: by its model name, or with ``key_field`` by that
payload field's value within its model. Changes are computed by replaying the record event
by event and comparing it before and after each one, so an update that carries only
``after`` (no delta) shows its changes too, and a delete shows every field going.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from trailstore.errors import ConfigurationError
from trailstore.events import AuditEvent
from trailstore.export.schema import utc_moment
from trailstore.names import validate_name
from trailstore.reader import AuditTrailReader
from trailstore.replay import AuditReplayer, State


class ChangeKind(StrEnum):
    """What happened to one field."""

    ADDED = "added"
    CHANGED = "changed"
    REMOVED = "removed"


@dataclass(frozen=True)
class FieldChange:
    """One field's value before and after an event (``None`` where it did not exist)."""

    field: str
    kind: ChangeKind
    old: Any = None
    new: Any = None


@dataclass(frozen=True)
class HistoryEntry:
    """One event about the record, what it changed, and the record after it (``None``
    once deleted)."""

    event: AuditEvent
    changes: tuple[FieldChange, ...]
    record: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        """The entry as a JSON object: the event's metadata, its changes and the record."""
        event = self.event
        return {
            "event_id": event.event_id,
            "timestamp": event.timestamp,
            "time": _iso(event.timestamp),
            "operation": event.operation.value,
            "model_name": event.model_name,
            "logical_user_id": event.logical_user_id,
            "request_id": event.request_id,
            "changes": [
                {"field": c.field, "change": c.kind.value, "old": c.old, "new": c.new}
                for c in self.changes
            ],
            "record": self.record,
        }

    def describe(self) -> str:
        """The entry for a person: a heading line, then one line per changed field."""
        event = self.event
        heading = (
            f"#{event.event_id}  {_iso(event.timestamp)}  {event.operation.value}  "
            f"by {event.logical_user_id}"
        )
        if event.request_id is not None:
            heading += f"  (request {event.request_id})"
        lines = [heading]
        for change in self.changes:
            if change.kind is ChangeKind.ADDED:
                lines.append(f"  + {change.field}: {_shown(change.new)}")
            elif change.kind is ChangeKind.REMOVED:
                lines.append(f"  - {change.field} (was {_shown(change.old)})")
            else:
                lines.append(f"  ~ {change.field}: {_shown(change.old)} -> {_shown(change.new)}")
        if len(lines) == 1:
            lines.append("  (no field changed)")
        return "\n".join(lines)


def record_history(
    reader: AuditTrailReader,
    *,
    domain: str,
    category: str,
    model_name: str,
    key_field: str | None = None,
    key: str | None = None,
) -> Iterator[HistoryEntry]:
    """Every event about one record, in ``event_id`` order, with the fields each changed.

    Records keyed by a payload field need both ``key_field`` and ``key`` (compared as text,
    as replay keys records). Raises ``ReplayError`` at an event of the model that does not
    hold ``key_field``: whether it is about the record cannot be told.
    """
    if (key_field is None) != (key is None):
        raise ConfigurationError("key_field and key go together: give both or neither")
    replayer = AuditReplayer(reader=reader, key_field=key_field)
    state: State = {}
    events = reader.iter_events(
        domains=validate_name("domain", domain),
        categories=validate_name("category", category),
        model_names=model_name,
    )
    for event in events:
        if key is not None and replayer.record_key(event) != key:
            continue
        before = _record(state, model_name, key)
        replayer.apply(state, event)
        after = _record(state, model_name, key)
        yield HistoryEntry(event, _changes(before or {}, after or {}), after)


def _record(state: State, model_name: str, key: str | None) -> dict[str, Any] | None:
    records = state.get(model_name)
    if key is not None and records is not None:
        records = records.get(key)
    return None if records is None else dict(records)


def _changes(before: dict[str, Any], after: dict[str, Any]) -> tuple[FieldChange, ...]:
    changes = []
    for field in sorted(before.keys() | after.keys()):
        if field not in after:
            changes.append(FieldChange(field, ChangeKind.REMOVED, old=before[field]))
        elif field not in before:
            changes.append(FieldChange(field, ChangeKind.ADDED, new=after[field]))
        elif _shown(before[field]) != _shown(after[field]):  # 1 and true differ
            changes.append(FieldChange(field, ChangeKind.CHANGED, before[field], after[field]))
    return tuple(changes)


def _iso(timestamp: float) -> str:
    """The time in ISO 8601 UTC; the Unix seconds where a datetime cannot hold them."""
    moment = utc_moment(timestamp)
    return repr(timestamp) if moment is None else moment.isoformat().replace("+00:00", "Z")


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
