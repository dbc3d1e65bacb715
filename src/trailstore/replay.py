"""``AuditReplayer``: fold a stream's events back into the records they describe."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from trailstore.events import AuditEvent, AuditOperation
from trailstore.reader import AuditTrailReader

State = dict[str, dict[str, dict[str, Any]]]


@dataclass
class ReplayResult:
    """``state[model_name][record_key]`` is the record as of ``last_event_id``."""

    state: State = field(default_factory=dict)
    last_event_id: int = 0
    applied_events: int = 0


class AuditReplayer:
    """Rebuild record state from the events of one stream.

    A record is identified by its model name and the value of ``key_field`` (default ``"id"``)
    in its ``after`` (create/update) or ``before`` (delete) image.
    """

    def __init__(self, *, reader: AuditTrailReader, key_field: str = "id") -> None:
        self.reader = reader
        self.key_field = key_field

    def reconstruct_state(
        self,
        *,
        domain: str,
        category: str,
        model_names: Collection[str] | str | None = None,
        min_event_id: int | None = None,
        max_event_id: int | None = None,
    ) -> ReplayResult:
        """Apply the matching events in ``event_id`` order and return the resulting state."""
        result = ReplayResult()
        events = self.reader.iter_events(
            domains=domain,
            categories=category,
            model_names=model_names,
            min_event_id=min_event_id,
            max_event_id=max_event_id,
        )
        for event in events:
            self.apply(result.state, event)
            result.last_event_id = event.event_id
            result.applied_events += 1
        return result

    def record_key(self, event: AuditEvent) -> str:
        """The key of the record an event is about."""
        payload = event.payload
        image = None if payload is None else payload.after or payload.before
        return str((image or {}).get(self.key_field, ""))

    def apply(self, state: State, event: AuditEvent) -> None:
        """Apply one event to ``state`` in place."""
        records = state.setdefault(event.model_name, {})
        key = self.record_key(event)
        payload = event.payload
        if event.operation is AuditOperation.DELETE:
            records.pop(key, None)
        elif event.operation is AuditOperation.CREATE:
            records[key] = dict((payload.after if payload else None) or {})
        elif payload is not None:
            records[key] = payload.apply_to(records.get(key))
