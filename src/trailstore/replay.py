"""``AuditReplayer``: fold a stream's events back into the records they describe.

By default the model name identifies the record, as in the project this library grows from:
``state[model_name]`` is the record. With ``key_field`` records are told apart by a payload
field instead, and ``state[model_name][key]`` is the record.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from trailstore.errors import ReplayError
from trailstore.events import AuditEvent, AuditOperation
from trailstore.reader import AuditTrailReader

#: ``state[model_name]`` is a record, or with ``key_field`` ``state[model_name][key]`` is one
State = dict[str, dict[str, Any]]


@dataclass
class ReplayResult:
    """The state as of ``last_event_id`` (``None`` when no event was applied)."""

    state: State = field(default_factory=dict)
    last_event_id: int | None = None
    applied_events: int = 0


class AuditReplayer:
    """Rebuild record state from the events of one stream, in ``event_id`` order.

    - ``create`` sets the record to the payload's ``after`` (else ``before``);
    - ``update`` replaces it with ``after`` when the payload has one, else applies each delta
      entry's ``new`` value (a ``removed`` entry deletes the field) onto the record;
    - ``delete`` removes it.
    """

    def __init__(self, *, reader: AuditTrailReader, key_field: str | None = None) -> None:
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
        as_of: float | datetime | None = None,
    ) -> ReplayResult:
        """Apply the matching events in ``event_id`` order and return the resulting state.

        ``as_of`` (Unix seconds or a datetime; naive is UTC) gives the state at that moment:
        only events stamped at or before it are applied, still in ``event_id`` order. Clocks
        of several hosts may disagree, so an event is judged by its own timestamp, not by
        where it stands in the sequence.
        """
        result = ReplayResult()
        events = self.reader.iter_events(
            domains=domain,
            categories=category,
            model_names=model_names,
            min_event_id=min_event_id,
            max_event_id=max_event_id,
            max_timestamp=as_of,
        )
        for event in events:
            self.apply(result.state, event)
            result.last_event_id = event.event_id
            result.applied_events += 1
        return result

    def apply(self, state: State, event: AuditEvent) -> None:
        """Apply one event to ``state`` in place."""
        if self.key_field is None:
            records, key = state, event.model_name
        else:
            records, key = state.setdefault(event.model_name, {}), self.record_key(event)
        payload = event.payload
        if event.operation is AuditOperation.DELETE:
            records.pop(key, None)
        elif event.operation is AuditOperation.CREATE:
            image = None if payload is None else payload.after
            if image is None and payload is not None:
                image = payload.before
            records[key] = dict(image or {})
        elif payload is not None and (payload.after is not None or payload.delta is not None):
            records[key] = payload.apply_to(records.get(key))

    def record_key(self, event: AuditEvent) -> str:
        """The value of ``key_field`` in an event's ``after``, ``before`` or delta, as text.

        Raises ``ReplayError`` naming the event when the payload does not hold it: merging such
        records under one empty key would silently give a wrong state.
        """
        assert self.key_field is not None
        payload = event.payload
        if payload is not None:
            for image in (payload.after, payload.before):
                if image is not None and self.key_field in image:
                    return str(image[self.key_field])
            change = (payload.delta or {}).get(self.key_field)
            if change is not None:
                return str(change.old if change.removed else change.new)
        raise ReplayError(
            f"event {event.event_id} ({event.operation} of {event.model_name} in "
            f"{event.domain}/{event.category}) has no {self.key_field!r} field in its payload, "
            "so a replay keyed by it cannot tell which record it is about"
        )
