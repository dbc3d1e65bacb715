"""Reading a local trail like a user: from the end, live while writer processes append (and
one is killed), by time past a seal that no longer holds, and one record's history."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import queue
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from _workers import append_and_report

from trailstore import AuditPayload, AuditTrailReader, AuditTrailWriter
from trailstore.encoding import encode_body
from trailstore.errors import ConfigurationError, ReplayError
from trailstore.events import AuditEvent
from trailstore.evidence import verify_trail
from trailstore.history import ChangeKind, record_history
from trailstore.lines import (
    MAX_LINE_BYTES,
    line_event_id,
    line_timestamp,
    quick_event_id,
    render_line,
)
from trailstore.testing import sample_event


def _drain(reported: Any) -> list[int]:
    ids = []
    while True:
        try:
            ids.append(reported.get(timeout=0.5))
        except queue.Empty:
            return ids


def test_follow_sees_every_event_of_writer_processes_once_and_in_order(tmp_path: Path) -> None:
    root = str(tmp_path)
    with AuditTrailWriter(root_path=root) as writer:
        writer.append_event(**sample_event(0))
    reader = AuditTrailReader(root_path=root)
    stop = threading.Event()
    followed: list[int] = []

    def follow() -> None:
        # a settle longer than the run: the killed writer's lost IDs are passed at the end
        for event in reader.follow(poll_interval=0.01, settle=30, stop=stop):
            followed.append(event.event_id)

    follower = threading.Thread(target=follow)
    follower.start()
    context = multiprocessing.get_context("spawn")
    reported = context.Queue()
    writers = [
        context.Process(target=append_and_report, args=(root, category, 120, reported))
        for category in ("orders", "invoices")
    ]
    doomed = context.Process(target=append_and_report, args=(root, "refunds", None, reported))
    for process in [*writers, doomed]:
        process.start()
    acknowledged = [reported.get(timeout=60) for _ in range(60)]
    assert doomed.pid is not None
    os.kill(doomed.pid, signal.SIGKILL)
    for process in [*writers, doomed]:
        process.join(timeout=120)
    acknowledged += _drain(reported)
    stop.set()
    follower.join(timeout=60)
    stored = [event.event_id for event in AuditTrailReader(root_path=root).iter_events()]
    assert followed == sorted(set(followed)), "an event came twice or out of order"
    assert followed == [event_id for event_id in stored if event_id > 1]
    assert set(acknowledged) <= set(followed)
    assert reader.report.duplicate_ids == 0


def test_follow_passes_a_gap_after_settling_and_takes_a_late_event(tmp_path: Path) -> None:
    root = tmp_path / "trail"
    with AuditTrailWriter(root_path=root, max_file_size_bytes=1024) as writer:
        writer.append_event(**sample_event(0))
    reader = AuditTrailReader(root_path=root)
    events = reader.follow(poll_interval=0.01, settle=0.2)
    segment = root / "shop" / "orders" / "audit-000001.jsonl"
    body = encode_body(AuditEvent(event_id=0, timestamp=1.0, **_fields(1)))
    with segment.open("ab") as out:
        out.write(render_line(3, body))
    started = time.monotonic()
    assert next(events).event_id == 3  # 2 never came: passed after settling
    assert time.monotonic() - started >= 0.2
    with segment.open("ab") as out:
        out.write(render_line(2, body))  # late, from a lagging writer: yielded, not dropped
    assert next(events).event_id == 2
    other = encode_body(AuditEvent(event_id=0, timestamp=2.0, **_fields(1)))
    with segment.open("ab") as out:  # the same line again, another under 3, then 4
        out.write(render_line(3, body) + render_line(3, other) + render_line(4, body))
    again = next(events)  # yielded as iter_events yields it, and counted
    assert (again.event_id, again.timestamp) == (3, 2.0)
    assert next(events).event_id == 4
    assert reader.report.duplicate_ids == 1


def _fields(number: int) -> dict[str, Any]:
    fields = sample_event(number)
    fields["payload"] = None
    return {key: value for key, value in fields.items() if key != "timestamp"}


def test_follow_finds_new_streams_and_stops_after_max_event_id(tmp_path: Path) -> None:
    with AuditTrailWriter(root_path=tmp_path) as writer:
        writer.append_event(**sample_event(0))
        reader = AuditTrailReader(root_path=tmp_path)
        events = reader.follow(after_event_id=0, max_event_id=3, poll_interval=0.01)
        writer.append_event(**sample_event(1, domain="billing", category="refunds"))
        writer.append_event(**sample_event(2, category="invoices"))
        writer.append_event(**sample_event(3))
        assert [(e.event_id, e.category) for e in events] == [
            (1, "orders"),
            (2, "refunds"),
            (3, "invoices"),
        ]


@pytest.mark.parametrize(
    "settings",
    [
        {"poll_interval": -1},
        {"settle": float("nan")},
        {"poll_interval": True},
        {"after_event_id": "1"},
    ],
)
def test_follow_refuses_bad_settings_at_once(tmp_path: Path, settings: dict[str, Any]) -> None:
    with AuditTrailWriter(root_path=tmp_path) as writer:
        writer.append_event(**sample_event(0))
    with pytest.raises(ConfigurationError):
        next(AuditTrailReader(root_path=tmp_path).follow(**settings))


def test_tail_reads_only_the_newest_segments(tmp_path: Path) -> None:
    with AuditTrailWriter(root_path=tmp_path, max_file_size_bytes=4096, durability="flush") as w:
        for i in range(1200):
            w.append_event(**sample_event(i, category=("orders", "invoices", "refunds")[i % 3]))
    reader = AuditTrailReader(root_path=tmp_path)
    opened: set[tuple[str, int]] = set()
    read_range = reader.backend.read_range

    def counted(stream: Any, number: int, start: int, end: int | None) -> bytes:
        opened.add((str(stream), number))
        return read_range(stream, number, start, end)

    reader.backend.read_range = counted  # type: ignore[method-assign]
    assert [event.event_id for event in reader.tail(10)] == list(range(1191, 1201))
    assert len(opened) <= 6  # the last one or two segments of each of the three streams
    segments = sum(len(reader.backend.list_segments(s)) for s in reader.streams())
    assert segments >= 60


def test_tail_keeps_long_lines_whole_and_counts_damage(tmp_path: Path) -> None:
    big = {"text": "é" * 400_000}  # one line longer than the blocks read from the end
    with AuditTrailWriter(root_path=tmp_path) as writer:
        writer.append_event(**sample_event(0))
        writer.append_event(**sample_event(1, payload=AuditPayload.from_create(big)))
        writer.append_event(**sample_event(2))
    segment = tmp_path / "shop" / "orders" / "audit-000001.jsonl"
    with segment.open("ab") as out:
        out.write(b"not json\n" + b'{"event_id":9,"torn')
    reader = AuditTrailReader(root_path=tmp_path)
    tail = reader.tail(2)
    assert [event.event_id for event in tail] == [2, 3]
    assert tail[0].payload is not None and tail[0].payload.after == big
    assert (reader.report.malformed_lines, reader.report.torn_lines) == (1, 1)
    with pytest.raises(ConfigurationError):
        reader.tail(-1)


def test_a_seal_that_no_longer_matches_its_segment_is_not_trusted(tmp_path: Path) -> None:
    with AuditTrailWriter(root_path=tmp_path, max_file_size_bytes=1024) as writer:
        for i in range(30):
            writer.append_event(**sample_event(i, timestamp=1_000 + i))
    first = tmp_path / "shop" / "orders" / "audit-000001.jsonl"
    assert first.with_name("audit-000001.seal.json").exists()
    late = AuditEvent(event_id=0, timestamp=5_000.0, **_fields(99))
    with first.open("ab") as out:  # a writer of the original format, appending late
        out.write(render_line(31, encode_body(late)))
    reader = AuditTrailReader(root_path=tmp_path)
    assert [event.event_id for event in reader.iter_events(min_timestamp=4_000)] == [31]
    assert [event.event_id for event in reader.tail(1, min_timestamp=4_000)] == [31]


def test_history_shows_each_change_of_one_record(tmp_path: Path) -> None:
    with AuditTrailWriter(root_path=tmp_path) as writer:
        for key, status in (("A-1", "open"), ("A-2", "open")):
            writer.append_event(
                **sample_event(0, payload=AuditPayload.from_create({"id": key, "status": status}))
            )
        writer.append_event(
            **sample_event(
                0,
                operation="update",
                request_id="r-7",
                payload=AuditPayload.from_update(
                    {"id": "A-1", "status": "open"},
                    {"id": "A-1", "status": "paid", "total": 3},
                    key_field="id",
                ),
            )
        )
        writer.append_event(
            **sample_event(0, operation="update", payload=AuditPayload(after={"id": "A-1"}))
        )
        writer.append_event(
            **sample_event(0, operation="delete", payload=AuditPayload.from_delete({"id": "A-1"}))
        )
    reader = AuditTrailReader(root_path=tmp_path)
    entries = list(
        record_history(
            reader, domain="shop", category="orders", model_name="Order", key_field="id", key="A-1"
        )
    )
    assert [entry.event.event_id for entry in entries] == [1, 3, 4, 5]
    assert [(c.field, c.kind, c.old, c.new) for c in entries[1].changes] == [
        ("status", ChangeKind.CHANGED, "open", "paid"),
        ("total", ChangeKind.ADDED, None, 3),
    ]
    # an update carrying only "after" still shows what it changed
    assert [(c.field, c.kind) for c in entries[2].changes] == [
        ("status", ChangeKind.REMOVED),
        ("total", ChangeKind.REMOVED),
    ]
    assert entries[3].record is None and entries[3].changes[0].kind is ChangeKind.REMOVED
    text = entries[1].describe()
    assert text.splitlines()[0].startswith("#3  ") and "(request r-7)" in text
    assert '  ~ status: "open" -> "paid"' in text and "  + total: 3" in text
    document = entries[1].to_json()
    assert document["changes"][0] == {
        "field": "status",
        "change": "changed",
        "old": "open",
        "new": "paid",
    }
    assert document["record"] == {"id": "A-1", "status": "paid", "total": 3}


def test_history_by_model_name_and_its_refusals(tmp_path: Path) -> None:
    with AuditTrailWriter(root_path=tmp_path) as writer:
        writer.append_event(**sample_event(0, payload=AuditPayload.from_create({"n": 1})))
        writer.append_event(**sample_event(1, model_name="Invoice"))
        writer.append_event(
            **sample_event(
                2, operation="update", payload=AuditPayload.from_update({"n": 1}, {"n": True})
            )
        )
    reader = AuditTrailReader(root_path=tmp_path)
    entries = list(record_history(reader, domain="shop", category="orders", model_name="Order"))
    assert [entry.event.event_id for entry in entries] == [1, 3]
    assert [(c.old, c.new) for c in entries[1].changes] == [(1, True)]  # 1 and true differ
    with pytest.raises(ConfigurationError):
        list(record_history(reader, domain="shop", category="orders", model_name="Order", key="1"))
    with pytest.raises(ReplayError):
        list(
            record_history(
                reader,
                domain="shop",
                category="orders",
                model_name="Order",
                key_field="id",
                key="1",
            )
        )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'{"event_id":1,"timestamp":1006.5,"domain":"d"}\n', 1006.5),
        (b'{"event_id":1,"timestamp":-5e-1,"domain":"d"}\n', -0.5),
        (b'{"event_id":1,"timestamp":"1006.5","domain":"d"}\n', None),  # pydantic decides
        (b'{"event_id":1,"timestamp":01,"domain":"d"}\n', None),  # not JSON
        (b'{"event_id":1,"timestamp":1,"x":{"timestamp":2}}\n', None),  # the key twice
        (b'{"event_id":1,"timestamp":1,"\\u0074imestamp":2}\n', None),  # spelled by escapes
        (b'{"timestamp":1,"event_id":1}\n', None),  # another writer's key order
    ],
)
def test_timestamps_are_read_without_a_parse_only_where_that_is_exact(
    line: bytes, expected: float | None
) -> None:
    assert line_timestamp(line) == expected


_OTHER_FIELDS = (
    b'"domain":"shop","category":"orders","model_name":"Order","operation":"create",'
    b'"logical_user_id":"u"'
)


@pytest.mark.parametrize(
    "foreign",
    [
        b'{"event_id":ID,"timestamp":1000.0,' + _OTHER_FIELDS + b',"timestamp":5000.0}\n',
        b'{"event_id":ID,"timestamp":1000.0,' + _OTHER_FIELDS + b',"timestamp" :5000.0}\n',
        b'{"event_id":ID,"timestamp":1000.0,' + _OTHER_FIELDS + b',"\\u0074imestamp":5000.0}\n',
        b'{"event_id":ID,"timestamp":"5000.0",' + _OTHER_FIELDS + b"}\n",
        b'{"event_id":ID,\r"timestamp":5000.0,' + _OTHER_FIELDS + b"}\n",
    ],
    ids=["duplicate-key", "duplicate-key-spaced", "escaped-key", "string", "carriage-return"],
)
def test_a_foreign_line_in_a_sealed_segment_reads_as_the_reader_parses_it(
    tmp_path: Path, foreign: bytes
) -> None:
    """Time filters, tail and follow skip segments by their seals and lines by a quick look:
    a line another writer laid out otherwise must still be found where a full parse puts it."""
    with AuditTrailWriter(root_path=tmp_path, max_file_size_bytes=1500) as writer:
        for i in range(3):
            writer.append_event(**sample_event(i, timestamp=1_000 + i))
    segment = tmp_path / "shop" / "orders" / "audit-000001.jsonl"
    with segment.open("ab") as out:
        out.write(foreign.replace(b"ID", b"4"))
    with AuditTrailWriter(root_path=tmp_path, max_file_size_bytes=1500) as writer:
        for i in range(12):  # rotate, so that the first segment is sealed with the line in it
            writer.append_event(**sample_event(i, timestamp=1_010 + i))
    assert segment.with_name("audit-000001.seal.json").exists()
    reader = AuditTrailReader(root_path=tmp_path)
    assert [event.event_id for event in reader.iter_events(min_timestamp=4_000)] == [4]
    assert [event.event_id for event in reader.tail(1, min_timestamp=4_000)] == [4]
    followed = reader.follow(after_event_id=0, max_event_id=16, min_timestamp=4_000)
    assert [event.event_id for event in followed] == [4]
    assert verify_trail(str(tmp_path), full=True).problems == []


def test_follow_reads_a_segment_to_its_end_before_moving_to_a_newer_one(tmp_path: Path) -> None:
    """A writer may append to a segment and rotate between the follower's read and listing."""
    writer = AuditTrailWriter(root_path=tmp_path, max_file_size_bytes=850, checkpoints=False)
    for i in range(3):
        writer.append_event(**sample_event(i))
    reader = AuditTrailReader(root_path=tmp_path)
    listing = reader.backend.list_segments
    race = {"armed": False}

    def list_segments(stream: Any) -> list[int]:
        if race.pop("armed", False):  # the commit lands between the read and the listing
            writer.append_events([sample_event(3), sample_event(4)])
        return listing(stream)

    reader.backend.list_segments = list_segments  # type: ignore[method-assign]
    events = reader.follow(after_event_id=0, max_event_id=5, poll_interval=0.01)
    caught_up = [next(events).event_id for _ in range(3)]
    race["armed"] = True
    assert [*caught_up, *(event.event_id for event in events)] == [1, 2, 3, 4, 5]
    writer.close()
    first, second = sorted((tmp_path / "shop" / "orders").glob("audit-*.jsonl"))
    assert [len(path.read_bytes().splitlines()) for path in (first, second)] == [4, 1]


def test_follow_reads_again_where_a_failed_commit_was_cut_back(tmp_path: Path) -> None:
    """A commit whose sync failed is cut back and its IDs go to the next events: the events
    written there are followed too, not dropped as duplicates of what was rolled back."""
    with AuditTrailWriter(root_path=tmp_path) as writer:
        writer.append_event(**sample_event(0))
    segment = tmp_path / "shop" / "orders" / "audit-000001.jsonl"
    committed = segment.stat().st_size
    reader = AuditTrailReader(root_path=tmp_path)
    events = reader.follow(poll_interval=0.01, settle=0.1)

    def line(event_id: int, user: str) -> bytes:
        fields = {**_fields(0), "logical_user_id": user}
        return render_line(event_id, encode_body(AuditEvent(event_id=0, timestamp=1.0, **fields)))

    with segment.open("ab") as out:
        out.write(line(2, "rolled-back"))
    assert next(events).logical_user_id == "rolled-back"
    with segment.open("r+b") as out:
        out.truncate(committed)
        out.seek(committed)
        out.write(line(2, "real") + line(3, "real"))
    assert [(e.event_id, e.logical_user_id) for e in itertools.islice(events, 2)] == [
        (2, "real"),
        (3, "real"),
    ]
    assert reader.report.duplicate_ids == 1


def test_tail_and_follow_take_an_oversized_line_for_damage_as_the_reader_does(
    tmp_path: Path,
) -> None:
    with AuditTrailWriter(root_path=tmp_path) as writer:
        writer.append_event(**sample_event(0))
    segment = tmp_path / "shop" / "orders" / "audit-000001.jsonl"
    text = b"x" * (MAX_LINE_BYTES + 10)  # a valid event, longer than any reader takes
    oversized = line_of(2)[:-2] + b',"payload":{"after":{"text":"' + text + b'"}}}\n'
    with segment.open("ab") as out:
        out.write(oversized + line_of(3) + b"\x00" * (3 * MAX_LINE_BYTES))  # and torn junk
    read = AuditTrailReader(root_path=tmp_path)
    assert [event.event_id for event in read.iter_events()] == [1, 3]
    tail = AuditTrailReader(root_path=tmp_path)
    assert [event.event_id for event in tail.tail(5)] == [1, 3]
    followed = AuditTrailReader(root_path=tmp_path)
    events = followed.follow(after_event_id=0, max_event_id=3)
    assert [event.event_id for event in events] == [1, 3]
    for reader in (tail, followed):
        assert reader.report.malformed_lines == read.report.malformed_lines == 1


def line_of(event_id: int) -> bytes:
    return render_line(event_id, encode_body(AuditEvent(event_id=0, timestamp=1.0, **_fields(0))))


def test_history_shows_a_time_no_datetime_holds(tmp_path: Path) -> None:
    with AuditTrailWriter(root_path=tmp_path) as writer:
        writer.append_event(**sample_event(0, timestamp=1e18))
    reader = AuditTrailReader(root_path=tmp_path)
    entry = next(record_history(reader, domain="shop", category="orders", model_name="Order"))
    assert entry.describe().startswith("#1  1e+18  create")


def test_a_line_is_located_by_the_id_it_starts_with_but_skipped_only_by_the_one_it_parses_to() -> (
    None
):
    twice = b'{"event_id":1,"timestamp":1,"domain":"d","event_id":5}\n'
    assert line_event_id(twice) == 1  # where it stands: what verify and recovery go by
    assert quick_event_id(twice) is None  # a reader must parse it (it is event 5)
    assert quick_event_id(b'{"event_id":7,"timestamp":1,"domain":"d"}\n') == 7
