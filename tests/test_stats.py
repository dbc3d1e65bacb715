"""``trailstore.trail_stats``: each stream's segments, bytes, events and ID range, and the
damage met, from one scan."""

from __future__ import annotations

import json
from pathlib import Path

from trailstore import AuditPayload, AuditTrailReader, AuditTrailWriter, StreamStats, trail_stats
from trailstore.testing import sample_event


def sizes(directory: Path) -> list[int]:
    return [path.stat().st_size for path in sorted(directory.glob("audit-*.jsonl"))]


def test_every_stream_and_the_total_are_counted(tmp_path: Path) -> None:
    with AuditTrailWriter(root_path=tmp_path, max_file_size_bytes=2048) as writer:
        for number in range(23):
            payload = AuditPayload.from_create({"id": number, "pad": "p" * 200})
            writer.append_event(
                **sample_event(number, domain="a" if number < 20 else "b", payload=payload)
            )
    a, b = sizes(tmp_path / "a" / "orders"), sizes(tmp_path / "b" / "orders")

    stats = trail_stats(AuditTrailReader(root_path=tmp_path))

    assert len(a) > 1  # rotated
    assert stats.streams == [
        StreamStats("a/orders", len(a), 20, sum(a), 1, 20),
        StreamStats("b/orders", len(b), 3, sum(b), 21, 23),
    ]
    assert stats.total == StreamStats("total", len(a) + len(b), 23, sum(a) + sum(b), 1, 23)
    assert (stats.root, stats.last_event_id) == (str(tmp_path), 23)
    assert stats.damage.clean
    assert "this host" in stats.coordination
    document = stats.to_json()
    assert json.loads(json.dumps(document)) == document
    assert document["total"] == {
        "streams": 2,
        "segments": len(a) + len(b),
        "events": 23,
        "bytes": sum(a) + sum(b),
        "min_event_id": 1,
        "max_event_id": 23,
    }
    assert document["streams"][1] == {
        "stream": "b/orders",
        "segments": len(b),
        "events": 3,
        "bytes": sum(b),
        "min_event_id": 21,
        "max_event_id": 23,
    }


def test_damage_is_reported_and_kept_as_it_was_at_the_scan(tmp_path: Path) -> None:
    with AuditTrailWriter(root_path=tmp_path) as writer:
        for number in range(6):
            category = "orders" if number % 2 == 0 else "customers"
            writer.append_event(**sample_event(number, category=category))
    (tmp_path / "shop" / "customers" / "audit-000001.jsonl").write_text("garbage\n")
    reader = AuditTrailReader(root_path=tmp_path)

    stats = trail_stats(reader)

    assert stats.damage.malformed_lines == 1
    assert stats.damage.gaps == [(2, 2), (4, 4), (6, 6)]
    assert (stats.total.events, stats.last_event_id) == (3, 6)
    [customers] = [stream for stream in stats.streams if stream.stream == "shop/customers"]
    assert (customers.segments, customers.events, customers.min_event_id) == (1, 0, None)
    list(reader.iter_events())  # the reader counts the damage again ...
    assert reader.report.malformed_lines == 2
    assert stats.damage.malformed_lines == 1  # ... the figures taken keep theirs


def test_an_empty_trail_has_no_streams_and_no_id_range(tmp_path: Path) -> None:
    stats = trail_stats(AuditTrailReader(root_path=tmp_path, allow_empty=True))

    assert stats.streams == []
    assert stats.total == StreamStats("total")
    assert stats.to_json()["total"]["min_event_id"] is None
