"""The event model and the line format."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from trailstore import AuditTrailWriter, InvalidEventError
from trailstore.encoding import decode_line, encode_body
from trailstore.events import AuditEvent, AuditOperation, AuditPayload
from trailstore.lines import line_event_id, render_line
from trailstore.testing import sample_event

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3)
    ),
    max_leaves=8,
)
records = st.dictionaries(st.text(max_size=8), json_values, max_size=8)


def _through_json(payload: AuditPayload) -> AuditPayload:
    """The payload as a reader gets it back from a written line."""
    event = AuditEvent(
        event_id=0,
        timestamp=1.0,
        domain="d",
        category="c",
        model_name="M",
        operation=AuditOperation.UPDATE,
        logical_user_id="u",
        payload=payload,
    )
    restored = decode_line(render_line(1, encode_body(event))).payload
    assert restored is not None
    return restored


@given(before=records, after=records)
def test_replaying_an_update_onto_before_gives_exactly_after(
    before: dict[str, Any], after: dict[str, Any]
) -> None:
    payload = AuditPayload.from_update(before, after)
    assert payload.apply_to(before) == after
    assert _through_json(payload).apply_to(before) == after


def test_update_payload_holds_the_sparse_delta_only() -> None:
    before = {"id": 7, "status": "new", "total": 30, "coupon": "X"}
    after = {"id": 7, "status": "paid", "total": 30, "paid_at": 5}
    payload = AuditPayload.from_update(before, after)
    assert payload.model_dump(exclude_none=True) == {
        "delta": {
            "status": {"old": "new", "new": "paid"},
            "paid_at": {"new": 5},
            "coupon": {"old": "X", "removed": True},
        }
    }
    keyed = AuditPayload.from_update(before, after, key_field="id")
    assert keyed.delta is not None and keyed.delta["id"].model_dump() == {
        "old": 7,
        "new": 7,
        "removed": None,
    }
    assert keyed.apply_to(before) == payload.apply_to(before) == after


def test_an_update_with_after_replaces_the_record() -> None:
    payload = AuditPayload(after={"a": 1}, delta={"b": {"old": 1, "new": 2}})  # type: ignore[dict-item]
    assert payload.apply_to({"b": 1, "c": 3}) == {"a": 1}


@pytest.mark.parametrize(
    "value", [float("nan"), float("inf"), datetime(2024, 1, 1), {1, 2}, b"raw", object()]
)
@pytest.mark.parametrize("build", ["create", "update", "delete"])
def test_payload_constructors_refuse_values_that_are_not_json(value: Any, build: str) -> None:
    record = {"id": 1, "x": value}
    with pytest.raises(InvalidEventError):
        if build == "create":
            AuditPayload.from_create(record)
        elif build == "update":
            AuditPayload.from_update({"id": 1}, record)
        else:
            AuditPayload.from_delete(record)


def test_payload_constructors_refuse_records_that_are_not_mappings() -> None:
    with pytest.raises(InvalidEventError, match="must be a mapping or a pydantic model"):
        AuditPayload.from_create([("id", 1)])  # type: ignore[arg-type]


def test_update_delta_marks_removed_fields_and_values_that_become_none() -> None:
    payload = AuditPayload.from_update({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": None, "d": 4})
    assert payload.delta is not None
    assert set(payload.delta) == {"b", "c", "d"}
    assert payload.delta["c"].removed and payload.delta["b"].new is None
    assert _through_json(payload).apply_to({"a": 1, "b": 2, "c": 3}) == {"a": 1, "b": None, "d": 4}


class Customer(BaseModel):
    id: int
    joined: datetime


def test_payloads_accept_pydantic_models() -> None:
    before = Customer(id=1, joined=datetime(2024, 1, 2, tzinfo=UTC))
    after = before.model_copy(update={"joined": datetime(2025, 1, 2, tzinfo=UTC)})
    assert AuditPayload.from_create(before).after == {"id": 1, "joined": "2024-01-02T00:00:00Z"}
    assert AuditPayload.from_delete(before).before == {"id": 1, "joined": "2024-01-02T00:00:00Z"}
    delta = AuditPayload.from_update(before, after).delta
    assert delta is not None and set(delta) == {"joined"}


def test_line_is_compact_ascii_json_without_none_fields() -> None:
    event = AuditEvent(
        event_id=0,
        timestamp=1700000000.5,
        domain="shop",
        category="orders",
        model_name="Order",
        operation=AuditOperation.CREATE,
        logical_user_id="zoë",
        payload=AuditPayload.from_create({"id": 7, "note": None}),
    )
    line = render_line(42, encode_body(event))
    assert line == (
        b'{"event_id":42,"timestamp":1700000000.5,"domain":"shop","category":"orders",'
        b'"model_name":"Order","operation":"create","logical_user_id":"zo\\u00eb",'
        b'"payload":{"after":{"id":7,"note":null}}}\n'
    )
    assert decode_line(line) == event.model_copy(update={"event_id": 42})
    assert line_event_id(line) == 42


def test_event_ids_are_read_from_lines_of_any_field_order() -> None:
    line = json.dumps({"timestamp": 1.0, "event_id": 9, "domain": "d"}).encode()
    assert line_event_id(line) == 9
    assert line_event_id(b"garbage") is None


def test_timestamps_may_be_given_as_datetimes() -> None:
    moment = datetime(2024, 5, 1, 12, tzinfo=UTC)
    naive_utc = datetime(2024, 5, 1, 12)
    with AuditTrailWriter(root_path=f"memory://{uuid.uuid4().hex}") as writer:
        aware = writer.append_event(**sample_event(0, timestamp=moment))
        naive = writer.append_event(**sample_event(1, timestamp=naive_utc))
    assert aware.timestamp == naive.timestamp == moment.timestamp()
