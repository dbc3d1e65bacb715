"""The event model: what one line of a segment holds."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

Record = Mapping[str, Any] | BaseModel


def unix_seconds(moment: float | datetime) -> float:
    """Unix seconds of a timestamp; a naive datetime is taken as UTC."""
    if isinstance(moment, datetime):
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    return moment


class AuditOperation(StrEnum):
    """What happened to a record."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


#: payload values must be plain JSON: no NaN/Infinity, bytes, datetimes, tuples or non-str keys
_STRICT_JSON = ConfigDict(allow_inf_nan=False)


class AuditFieldChange(BaseModel):
    """The change of one field in an update; ``removed`` marks a field that no longer exists."""

    model_config = _STRICT_JSON

    old: JsonValue = None
    new: JsonValue = None
    removed: bool | None = None


def _as_dict(record: Record) -> dict[str, Any]:
    if isinstance(record, BaseModel):
        return record.model_dump(mode="json")
    if isinstance(record, Mapping):
        return dict(record)
    raise TypeError(f"a record must be a mapping or a pydantic model, got {type(record).__name__}")


class AuditPayload(BaseModel):
    """The record before and after the operation, and the per-field delta of an update."""

    model_config = _STRICT_JSON

    before: dict[str, JsonValue] | None = None
    after: dict[str, JsonValue] | None = None
    delta: dict[str, AuditFieldChange] | None = None

    @classmethod
    def from_create(cls, record: Record) -> AuditPayload:
        """Payload of a created record."""
        return cls(after=_as_dict(record))

    @classmethod
    def from_delete(cls, record: Record) -> AuditPayload:
        """Payload of a deleted record."""
        return cls(before=_as_dict(record))

    @classmethod
    def from_update(cls, before: Record, after: Record) -> AuditPayload:
        """Payload of an update, with a delta holding every added, changed and removed field."""
        old, new = _as_dict(before), _as_dict(after)
        delta: dict[str, AuditFieldChange] = {}
        for key, value in new.items():
            if key not in old or old[key] != value or type(old[key]) is not type(value):
                delta[key] = AuditFieldChange(old=old.get(key), new=value)
        for key in old.keys() - new.keys():
            delta[key] = AuditFieldChange(old=old[key], removed=True)
        return cls(before=old, after=new, delta=delta)

    def apply_to(self, record: Mapping[str, Any] | None) -> dict[str, Any]:
        """Return ``record`` with this update applied (the delta if present, else ``after``)."""
        if self.delta is None:
            return dict(self.after or {})
        result = dict(record or {})
        for key, change in self.delta.items():
            if change.removed:
                result.pop(key, None)
            else:
                result[key] = change.new
        return result


class AuditEvent(BaseModel):
    """One audit event. ``event_id`` is unique and gap-free across the whole trail.

    ``domain`` and ``category`` are checked to be safe names by the writer, before an event
    is built; a reader checks that they match the stream the event was found in.
    """

    model_config = _STRICT_JSON

    event_id: int = Field(ge=0)
    timestamp: float
    domain: str
    category: str
    model_name: str
    operation: AuditOperation
    logical_user_id: str
    request_id: str | None = None
    payload: AuditPayload | None = None
