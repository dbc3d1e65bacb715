"""The event model: what one line of a segment holds."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from trailstore.errors import InvalidEventError

Record = Mapping[str, Any] | BaseModel
#: the operation names ``append_event`` accepts besides ``AuditOperation`` members
OperationName = Literal["create", "update", "delete"]


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
#: and a payload holds only its own keys: a misspelt or foreign key is an error, never dropped
_STRICT_PAYLOAD = ConfigDict(allow_inf_nan=False, extra="forbid")


class AuditFieldChange(BaseModel):
    """The change of one field in an update; ``removed`` marks a field that no longer exists."""

    model_config = _STRICT_PAYLOAD

    old: JsonValue = None
    new: JsonValue = None
    removed: bool | None = None


def _as_dict(record: Record) -> dict[str, Any]:
    if isinstance(record, BaseModel):
        return record.model_dump(mode="json")
    if isinstance(record, Mapping):
        return dict(record)
    raise InvalidEventError(
        f"a record must be a mapping or a pydantic model, got {type(record).__name__}"
    )


class AuditPayload(BaseModel):
    """The record before and after the operation, and the per-field delta of an update."""

    model_config = _STRICT_PAYLOAD

    before: dict[str, JsonValue] | None = None
    after: dict[str, JsonValue] | None = None
    delta: dict[str, AuditFieldChange] | None = None

    @classmethod
    def from_create(cls, record: Record) -> AuditPayload:
        """Payload of a created record: ``after`` is the record."""
        return _built(cls, after=_as_dict(record))

    @classmethod
    def from_delete(cls, record: Record) -> AuditPayload:
        """Payload of a deleted record: ``before`` is the record."""
        return _built(cls, before=_as_dict(record))

    @classmethod
    def from_update(
        cls, before: Record, after: Record, *, key_field: str | None = None
    ) -> AuditPayload:
        """Payload of an update: only the sparse ``delta`` of every added, changed and removed
        field (removed ones marked ``removed``), as the original writer stores it.

        ``key_field`` also keeps that field in the delta when it did not change, so that a
        replay keyed by it (``AuditReplayer(key_field=...)``) can tell which record changed.
        """
        old, new = _as_dict(before), _as_dict(after)
        delta: dict[str, dict[str, Any]] = {}
        for key, value in new.items():
            if key not in old or old[key] != value or type(old[key]) is not type(value):
                delta[key] = {"old": old.get(key), "new": value}
        for key in old.keys() - new.keys():
            delta[key] = {"old": old[key], "removed": True}
        if key_field is not None and key_field in new and key_field not in delta:
            delta[key_field] = {"old": new[key_field], "new": new[key_field]}
        return _built(cls, delta=delta)

    def apply_to(self, record: Mapping[str, Any] | None) -> dict[str, Any]:
        """Return ``record`` as this update leaves it: ``after`` replaces it when present,
        else each delta entry sets its ``new`` value (or removes the field)."""
        if self.after is not None:
            return dict(self.after)
        result = dict(record or {})
        for key, change in (self.delta or {}).items():
            if change.removed:
                result.pop(key, None)
            else:
                result[key] = change.new
        return result


def _built(cls: type[AuditPayload], **fields: Any) -> AuditPayload:
    """Validate a payload built by a ``from_*`` constructor, as ``InvalidEventError``."""
    try:
        return cls(**fields)
    except ValidationError as exc:
        raise InvalidEventError(f"invalid payload: {exc}") from exc


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
