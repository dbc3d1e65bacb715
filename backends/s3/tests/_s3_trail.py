"""Checks shared by the S3 fault and crash tests: scan a trail object by object, compare it
with what the writers acknowledged."""

from __future__ import annotations

from typing import Any

from trailstore_s3.backend import S3Backend

from trailstore import AuditTrailReader
from trailstore.encoding import decode_line, encode_body
from trailstore.events import AuditEvent
from trailstore.lines import render_line


def expected_line(event: AuditEvent) -> bytes:
    """The exact line an acknowledged event must have in the trail."""
    return render_line(event.event_id, encode_body(event))


def scan(url: str, options: dict[str, Any], limit: int) -> dict[int, bytes]:
    """Every line of the trail by event ID, asserting that each line parses and belongs to its
    stream, that IDs are unique and ascend within a stream, and that no segment is larger
    than ``limit`` unless it holds a single event."""
    backend = S3Backend(url, **options)
    found: dict[int, bytes] = {}
    for stream in backend.list_streams():
        previous = 0
        numbers = backend.list_segments(stream)
        assert numbers == sorted(numbers)
        for number in numbers:
            lines = list(backend.read_segment(stream, number))
            size = backend.segment_size(stream, number)
            assert size <= limit or len(lines) == 1, f"{stream} segment {number}: {size} bytes"
            assert size == sum(map(len, lines)), f"{stream} segment {number} holds repeats"
            for line in lines:
                event = decode_line(line)
                assert (event.domain, event.category) == stream
                assert event.event_id not in found, f"duplicate ID {event.event_id}"
                assert event.event_id > previous, f"{stream} segment {number} out of order"
                found[event.event_id] = line
                previous = event.event_id
    return found


def check(
    url: str,
    options: dict[str, Any],
    limit: int,
    acknowledged: dict[int, bytes],
    may_be_missing: set[int] | None = None,
) -> tuple[dict[int, bytes], set[int]]:
    """Compare the trail with ``acknowledged`` (ID → line): each present once, byte for byte;
    every other ID up to the counter either present or in ``may_be_missing`` (if given), and
    reported by the reader as a gap. Returns the lines found and the missing IDs."""
    found = scan(url, options, limit)
    for event_id, line in acknowledged.items():
        assert found.get(event_id) == line, f"acknowledged event {event_id} lost or changed"
    last = S3Backend(url, **options).last_event_id()
    assert max(found, default=0) <= last
    missing = set(range(1, last + 1)) - found.keys()
    if may_be_missing is not None:
        unexplained = sorted(missing - may_be_missing)
        assert not unexplained, f"gaps nobody can explain: {unexplained[:20]}"
    reader = AuditTrailReader(root_path=url, storage_options=options)
    assert [event.event_id for event in reader.iter_events()] == sorted(found)
    reported = {i for first, end in reader.report.gaps for i in range(first, end + 1)}
    assert reported == missing
    assert reader.report.duplicate_ids == 0
    assert reader.report.malformed_lines == reader.report.torn_lines == 0
    return found, missing
