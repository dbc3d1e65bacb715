"""Hostile input: whatever a caller passes, the writer stores it faithfully or refuses it.

Properties (hypothesis): an event is either read back equal to what ``append_event`` returned,
under the next ID, or refused with an ``AuditTrailError`` that spends no ID and writes nothing;
nothing is ever created outside the trail root and every line stays parseable.
"""

from __future__ import annotations

import datetime
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trailstore import AuditPayload, AuditTrailReader, AuditTrailWriter
from trailstore.backends.local import LocalBackend
from trailstore.errors import AuditTrailError, InvalidEventError, InvalidNameError
from trailstore.testing import UNSAFE_NAMES, sample_event

FAST = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DEEP = settings(FAST, max_examples=1500)

#: every code point, surrogates included
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)
#: any text that is valid unicode
TEXT = st.text(max_size=40)
HUGE_TEXT = st.builds(str.__mul__, st.sampled_from(["x", "\u00e9", "\U0001f600"]), st.just(200_000))
NAMES = (
    st.text(st.characters(exclude_characters="/\\\x00"), min_size=1, max_size=30)
    | ANY_TEXT
    | st.sampled_from(
        [
            *UNSAFE_NAMES,
            "index.json",
            ".trailstore.lock",
            "..\\..",
            "~",
            "$HOME",
            "audit-000001.jsonl",
            "x" * 255,
            " ",
            "\n",
        ]
    )
)
JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT
    | HUGE_TEXT
)
HOSTILE_LEAVES = (
    st.floats()  # NaN and ±Infinity included
    | ANY_TEXT
    | st.binary(max_size=8)
    | st.datetimes()
)
HOSTILE_KEYS = ANY_TEXT | st.integers() | st.floats() | st.booleans() | st.none()


def _tree(
    leaves: st.SearchStrategy[Any], keys: st.SearchStrategy[Any], *, tuples: bool
) -> st.SearchStrategy[Any]:
    def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        lists = st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4)
        return lists | st.tuples(children, children) if tuples else lists

    return st.recursive(leaves, containers, max_leaves=12)


#: plain JSON values (which must read back equal), and values with something hostile in them
JSONISH = _tree(JSON_LEAVES, TEXT, tuples=False) | _tree(
    JSON_LEAVES | HOSTILE_LEAVES, TEXT | HOSTILE_KEYS, tuples=True
)


@st.composite
def nested(draw: st.DrawFn) -> Any:
    """A deeply nested value, possibly holding a reference to itself."""
    depth = draw(st.integers(min_value=1, max_value=5000))
    value: Any = draw(JSONISH)
    innermost: dict[str, Any] = {}
    outer: Any = innermost
    for level in range(depth):
        outer = [outer] if level % 2 else {"k": outer}
    innermost["leaf"] = value
    if draw(st.booleans()):
        innermost["cycle"] = outer
    return outer


PAYLOADS = st.fixed_dictionaries(
    {},
    optional={
        "before": st.dictionaries(TEXT | HOSTILE_KEYS, JSONISH, max_size=4),
        "after": st.dictionaries(TEXT | HOSTILE_KEYS, JSONISH | nested(), max_size=4),
        "delta": st.dictionaries(
            TEXT | ANY_TEXT, st.fixed_dictionaries({"old": JSONISH, "new": JSONISH}), max_size=3
        ),
    },
)
EVENTS = st.fixed_dictionaries(
    {
        "domain": NAMES,
        "category": NAMES,
        "model_name": TEXT | ANY_TEXT,
        "operation": st.sampled_from(["create", "update", "delete"]) | ANY_TEXT,
        "logical_user_id": TEXT | ANY_TEXT,
        "payload": PAYLOADS | st.none(),
    },
    optional={
        "request_id": TEXT | ANY_TEXT,
        "timestamp": st.floats() | st.datetimes(),
    },
)

#: batch entries: hostile events, valid ones, and things that are not events at all
BATCH_ITEMS = (
    EVENTS
    | st.builds(sample_event, st.integers(0, 100))
    | st.builds(sample_event, st.integers(0, 100), unknown_field=st.integers())
    | st.integers()
    | st.none()
)


@dataclass
class Trail:
    """One trail inside an otherwise empty sandbox directory, and the ID the next event gets."""

    sandbox: Path
    root: Path
    writer: AuditTrailWriter
    next_id: int = 1
    stored: int = 0
    refused: int = 0

    def last_event_id(self) -> int:
        return LocalBackend(str(self.root)).last_event_id()

    def read(self, event_id: int) -> list[Any]:
        reader = AuditTrailReader(root_path=self.root)
        events = list(reader.iter_events(min_event_id=event_id, max_event_id=event_id))
        assert reader.report.malformed_lines == reader.report.torn_lines == 0
        return events

    def check_sandbox(self) -> None:
        """Nothing outside the root, nothing but trail files and stream directories inside."""
        assert os.listdir(self.sandbox) == [self.root.name]
        for directory, _, files in os.walk(self.root):
            assert Path(directory).resolve().is_relative_to(self.root.resolve())
            for name in files:
                path = Path(directory, name)
                depth = len(path.relative_to(self.root).parts)
                assert depth == 3 or name in {"index.json", ".trailstore.lock"}, path


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trail]:
    sandbox = tmp_path_factory.mktemp("sandbox")
    root = sandbox / "trail"
    with AuditTrailWriter(root_path=root, durability="flush") as writer:
        yield Trail(sandbox, root, writer)


def _append_one(trail: Trail, fields: dict[str, Any]) -> None:
    try:
        event = trail.writer.append_event(**fields)
    except AuditTrailError:
        trail.refused += 1
        assert trail.last_event_id() == trail.next_id - 1
    else:
        trail.stored += 1
        assert event.event_id == trail.next_id
        assert trail.read(event.event_id) == [event]
        trail.next_id += 1
    trail.check_sandbox()


def _append_many(trail: Trail, batch: list[dict[str, Any]]) -> None:
    try:
        events = trail.writer.append_events(batch)
    except AuditTrailError:
        trail.refused += 1
        assert trail.last_event_id() == trail.next_id - 1
    else:
        trail.stored += 1
        assert [event.event_id for event in events] == list(
            range(trail.next_id, trail.next_id + len(batch))
        )
        for event in events:
            assert trail.read(event.event_id) == [event]
        trail.next_id += len(batch)
    trail.check_sandbox()


def _finish(trail: Trail) -> None:
    """The whole trail: every stored event once, no gap (no refused event spent an ID)."""
    reader = AuditTrailReader(root_path=trail.root)
    ids = [event.event_id for event in reader.iter_events()]
    assert ids == list(range(1, trail.next_id))
    assert reader.report.clean
    print(f"hostile input: {trail.stored} stored, {trail.refused} refused")


@FAST
@given(fields=EVENTS)
def test_hostile_event_is_stored_faithfully_or_refused(
    trail: Trail, fields: dict[str, Any]
) -> None:
    _append_one(trail, fields)


@FAST
@given(batch=st.lists(BATCH_ITEMS, max_size=4))
def test_hostile_batch_is_stored_whole_or_refused_whole(
    trail: Trail, batch: list[dict[str, Any]]
) -> None:
    _append_many(trail, batch)


def test_fast_properties_left_a_clean_gap_free_trail(trail: Trail) -> None:
    _finish(trail)


@pytest.mark.slow
@DEEP
@given(fields=EVENTS)
def test_hostile_event_deep(trail: Trail, fields: dict[str, Any]) -> None:
    _append_one(trail, fields)


@pytest.mark.slow
@DEEP
@given(batch=st.lists(BATCH_ITEMS, max_size=4))
def test_hostile_batch_deep(trail: Trail, batch: list[dict[str, Any]]) -> None:
    _append_many(trail, batch)


@pytest.mark.slow
def test_deep_properties_left_a_clean_gap_free_trail(trail: Trail) -> None:
    _finish(trail)


# -- the specific traps, as plain examples ------------------------------------------------------


def _cyclic() -> dict[str, Any]:
    record: dict[str, Any] = {"id": 1}
    record["self"] = record
    return record


def _deep(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"k": value}
    return value


@pytest.mark.parametrize(
    "record",
    [
        pytest.param({"id": {1: "one"}}, id="int-key"),
        pytest.param({"id": {1.5: "x"}}, id="float-key"),
        pytest.param({"id": {True: "x"}}, id="bool-key"),
        pytest.param({"id": {None: "x"}}, id="none-key"),
        pytest.param({"id": [{"ok": {2: "two"}}]}, id="int-key-in-list"),
        pytest.param({"id": (1, 2)}, id="tuple"),
        pytest.param({"id": float("nan")}, id="nan"),
        pytest.param({"id": math.inf}, id="infinity"),
        pytest.param({"id": b"bytes"}, id="bytes"),
        pytest.param({"id": datetime.datetime(2024, 1, 1)}, id="datetime"),
        pytest.param({"id": {1, 2}}, id="set"),
        pytest.param({"lone": "\ud800"}, id="lone-surrogate"),
        pytest.param({"\udc00": "x"}, id="lone-surrogate-key"),
        pytest.param({"id": {"\udc00": "x"}}, id="nested-lone-surrogate-key"),
        pytest.param({"pair": "\ud83d\ude00"}, id="surrogate-pair-code-points"),
        pytest.param(_cyclic(), id="cycle"),
        pytest.param(_deep(10_000), id="10000-deep"),
    ],
)
def test_payload_that_would_not_read_back_equal_is_refused(
    tmp_path: Path, record: dict[str, Any]
) -> None:
    with AuditTrailWriter(root_path=tmp_path) as writer:
        with pytest.raises(InvalidEventError):
            writer.append_event(**sample_event(0, payload={"after": record}))
        with pytest.raises(InvalidEventError):
            writer.append_event(
                **sample_event(0, payload={"delta": {"f": {"old": 1, "new": record}}})
            )
        assert writer.append_event(**sample_event(1)).event_id == 1


@pytest.mark.parametrize("field", ["model_name", "logical_user_id", "request_id"])
def test_lone_surrogate_in_a_text_field_is_refused(tmp_path: Path, field: str) -> None:
    with AuditTrailWriter(root_path=tmp_path) as writer:
        with pytest.raises(InvalidEventError):
            writer.append_event(**sample_event(0, **{field: "a\udfffb"}))
        assert writer.append_event(**sample_event(1)).event_id == 1


@pytest.mark.parametrize("name", ["a\ud800", "\udfff"])
def test_lone_surrogate_in_a_name_is_refused(tmp_path: Path, name: str) -> None:
    with AuditTrailWriter(root_path=tmp_path) as writer, pytest.raises(InvalidNameError):
        writer.append_event(**sample_event(0, domain=name))
    assert set(os.listdir(tmp_path)) <= {"index.json", ".trailstore.lock"}


def test_non_ascii_text_and_emoji_read_back_equal(tmp_path: Path) -> None:
    record = {
        "emoji": "\U0001f600",
        "accents": "éàü",
        "cjk": "漢字",
        "nul": "a\x00b",
        "big": 2**90,
        "\ufffd": "\ufffd",  # the replacement character itself is fine
    }
    with AuditTrailWriter(root_path=tmp_path) as writer:
        event = writer.append_event(
            **sample_event(0, model_name="Ördér\U0001f4e6", payload={"after": record})
        )
    assert list(AuditTrailReader(root_path=tmp_path).iter_events()) == [event]


@pytest.mark.xfail(
    strict=True,
    reason="known gap: a payload model changed after validation is not revalidated (revalidating"
    " every AuditPayload instance costs ~2 us per event); JSON turns NaN into null",
)
def test_payload_model_changed_after_validation_is_refused(tmp_path: Path) -> None:
    payload = AuditPayload.from_create({"id": 1})
    assert payload.after is not None
    payload.after["total"] = math.nan
    with AuditTrailWriter(root_path=tmp_path) as writer, pytest.raises(InvalidEventError):
        writer.append_event(**sample_event(0, payload=payload))
