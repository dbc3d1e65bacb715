"""The flat schema shared by the CSV and Parquet exports: one row per event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import pydantic_core

from trailstore.events import AuditEvent

#: how a column's values are typed: the CSV writer spells them, Parquet maps them to its types
ColumnKind = Literal["integer", "timestamp", "float", "text", "json"]


@dataclass(frozen=True)
class Column:
    """One column of an export, as documented in ``trailstore.export``."""

    name: str
    kind: ColumnKind
    nullable: bool
    description: str


#: the columns of a CSV or Parquet export, in order
COLUMNS: tuple[Column, ...] = (
    Column("event_id", "integer", False, "the event's global, gap-free ID"),
    Column(
        "timestamp",
        "timestamp",
        True,
        "when it happened, UTC, to the microsecond; null outside the years 1-9999",
    ),
    Column("timestamp_unix", "float", False, "the stored Unix seconds, exactly"),
    Column("domain", "text", False, "the stream's domain"),
    Column("category", "text", False, "the stream's category"),
    Column("model_name", "text", False, "the kind of record"),
    Column("operation", "text", False, "create, update or delete"),
    Column("logical_user_id", "text", False, "who did it"),
    Column("request_id", "text", True, "the request it belongs to"),
    Column("before", "json", True, "the record before (a delete's record)"),
    Column("after", "json", True, "the record after (a create's record)"),
    Column("delta", "json", True, 'an update\'s fields: {"old", "new", "removed"}'),
)
#: the values of one row, in the order of ``COLUMNS``
Row = tuple[
    int, datetime | None, float, str, str, str, str, str, str | None, str | None, str | None,
    str | None,
]  # fmt: skip


def utc_moment(seconds: float) -> datetime | None:
    """Unix seconds as an aware UTC datetime (rounded to the microsecond); ``None`` past what
    a datetime holds, which the float column still keeps."""
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, ValueError, OSError):
        return None


def _json(value: object) -> str | None:
    """Compact JSON text (non-ASCII kept as is), fields of the payload models that are
    ``None`` left out as the trail stores them; ``None`` for an absent part."""
    if value is None:
        return None
    return pydantic_core.to_json(value, exclude_none=True).decode()


def event_row(event: AuditEvent) -> Row:
    """The row of one event: nothing of it is dropped (the JSON columns hold its payload)."""
    payload = event.payload
    return (
        event.event_id,
        utc_moment(event.timestamp),
        event.timestamp,
        event.domain,
        event.category,
        event.model_name,
        event.operation.value,
        event.logical_user_id,
        event.request_id,
        None if payload is None else _json(payload.before),
        None if payload is None else _json(payload.after),
        None if payload is None else _json(payload.delta),
    )
