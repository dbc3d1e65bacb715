"""Replay of a trail written in the original project's format, against hand-written states."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trailstore import AuditReplayer, AuditTrailReader, ReplayError


def _line(event_id: int, model_name: str, operation: str, payload: dict[str, Any]) -> str:
    """A line as the original writer stores it (its update payloads hold the delta only)."""
    return json.dumps(
        {
            "event_id": event_id,
            "timestamp": 1_700_000_000.0 + event_id,
            "domain": "crm",
            "category": "accounts",
            "model_name": model_name,
            "operation": operation,
            "logical_user_id": "legacy",
            "payload": payload,
        },
        separators=(",", ":"),
    )


ORIGINAL_TRAIL = [
    _line(1, "Account:1", "create", {"after": {"id": 1, "plan": "free", "seats": 1}}),
    _line(2, "Account:2", "create", {"after": {"id": 2, "plan": "pro", "seats": 5}}),
    # a delta applied to the record created at ID 1
    _line(3, "Account:1", "update", {"delta": {"plan": {"old": "free", "new": "team"}}}),
    _line(4, "Account:1", "update", {"delta": {"seats": {"old": 1, "new": 3}, "vat": {"new": 1}}}),
    _line(5, "Account:2", "delete", {"before": {"id": 2, "plan": "pro", "seats": 5}}),
    # a delete followed by a re-create of the same record
    _line(6, "Account:2", "create", {"after": {"id": 2, "plan": "free", "seats": 1}}),
    _line(7, "Account:1", "update", {"delta": {"vat": {"old": 1, "removed": True}}}),
    # a create that names only 'before' (the writer here refuses to write one): the record
    _line(8, "Account:3", "create", {"before": {"id": 3, "plan": "free"}}),
]


@pytest.fixture
def original_trail(tmp_path: Path) -> Path:
    stream = tmp_path / "crm" / "accounts"
    stream.mkdir(parents=True)
    (stream / "audit-000001.jsonl").write_text("".join(line + "\n" for line in ORIGINAL_TRAIL[:4]))
    (stream / "audit-000002.jsonl").write_text("".join(line + "\n" for line in ORIGINAL_TRAIL[4:]))
    (tmp_path / "index.json").write_text(json.dumps({"last_event_id": 8}))
    return tmp_path


def _replay(root: Path, **options: Any) -> Any:
    replayer = AuditReplayer(reader=AuditTrailReader(root_path=root), **options)
    return replayer.reconstruct_state(domain="crm", category="accounts")


def test_the_model_name_identifies_the_record(original_trail: Path) -> None:
    result = _replay(original_trail)

    assert result.state == {
        "Account:1": {"id": 1, "plan": "team", "seats": 3},
        "Account:2": {"id": 2, "plan": "free", "seats": 1},
        "Account:3": {"id": 3, "plan": "free"},
    }
    assert (result.last_event_id, result.applied_events) == (8, 8)


def test_replay_up_to_an_id_stops_there(original_trail: Path) -> None:
    replayer = AuditReplayer(reader=AuditTrailReader(root_path=original_trail))
    result = replayer.reconstruct_state(domain="crm", category="accounts", max_event_id=5)

    assert result.state == {"Account:1": {"id": 1, "plan": "team", "seats": 3, "vat": 1}}
    assert (result.last_event_id, result.applied_events) == (5, 5)


def test_keyed_replay_needs_the_key_in_every_event(original_trail: Path) -> None:
    with pytest.raises(ReplayError, match=r"^event 3 \(update of Account:1 in crm/accounts\)"):
        _replay(original_trail, key_field="id")
