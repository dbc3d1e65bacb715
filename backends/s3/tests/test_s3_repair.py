"""Repairs on open: torn chunks of the open segment, segments left unsealed, the index model."""

from __future__ import annotations

from typing import Any

import pytest
from trailstore_s3.backend import S3Backend
from trailstore_s3.index import IndexState, Lease, OpenSegment
from trailstore_s3.layout import TrailLocation, chunk_name
from trailstore_s3.segments import Segments, merge_lines

from trailstore import AuditTrailReader, AuditTrailWriter, StorageError
from trailstore.backend import StreamKey
from trailstore.testing import sample_event

ORDERS = StreamKey("shop", "orders")


def read_ids(url: str, options: dict[str, Any]) -> tuple[list[int], AuditTrailReader]:
    reader = AuditTrailReader(root_path=url, storage_options=options)
    return [event.event_id for event in reader.iter_events()], reader


def test_a_torn_chunk_in_the_open_segment_is_quarantined_on_open(
    fresh_trail_url: str, s3_options: dict[str, Any]
) -> None:
    crashed = AuditTrailWriter(root_path=fresh_trail_url, storage_options=s3_options)
    for i in range(3):
        crashed.append_event(**sample_event(i))  # never closed: the segment stays in chunks
    backend = S3Backend(fresh_trail_url, **s3_options)
    torn = b'{"event_id":4,"timestamp":1.0,"dom'
    backend.store.put(backend.location.chunk_key(ORDERS, 1, chunk_name(4)), torn)
    assert read_ids(fresh_trail_url, s3_options)[1].report.torn_lines == 1

    with AuditTrailWriter(root_path=fresh_trail_url, storage_options=s3_options) as writer:
        assert writer.append_event(**sample_event(3)).event_id == 4
    ids, reader = read_ids(fresh_trail_url, s3_options)
    assert ids == [1, 2, 3, 4] and reader.report.clean
    quarantine = backend.location.quarantine_key(ORDERS, 1, chunk_name(4))
    assert backend.store.get(quarantine)[0] == torn + b"\n"


def test_a_chunk_with_complete_lines_and_a_torn_tail_keeps_the_complete_lines(
    fresh_trail_url: str, s3_options: dict[str, Any]
) -> None:
    with AuditTrailWriter(root_path=fresh_trail_url, storage_options=s3_options) as writer:
        writer.append_event(**sample_event(0))
    backend = S3Backend(fresh_trail_url, **s3_options)
    (line,) = backend.read_segment(ORDERS, 1)
    damaged = line.replace(b'"event_id":1', b'"event_id":2') + b'{"event_id":3,"ti'
    backend.store.put(backend.location.chunk_key(ORDERS, 1, chunk_name(2)), damaged)
    backend.store.put(
        backend.location.index_key,
        IndexState(last_event_id=2, streams={ORDERS: OpenSegment(2, 0)}).encode(),
        if_match=backend.index.read()[1],
    )

    with AuditTrailWriter(root_path=fresh_trail_url, storage_options=s3_options) as writer:
        assert writer.append_event(**sample_event(1)).event_id == 3
    ids, reader = read_ids(fresh_trail_url, s3_options)
    assert ids == [1, 2, 3] and reader.report.clean


def test_a_segment_left_unsealed_is_sealed_on_the_next_open(
    fresh_trail_url: str, s3_options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_seal(*args: Any, **kwargs: Any) -> None:
        raise StorageError("endpoint went away while sealing")

    with monkeypatch.context() as patch:
        patch.setattr(Segments, "seal", failing_seal)
        with AuditTrailWriter(
            root_path=fresh_trail_url, storage_options=s3_options, max_file_size_bytes=600
        ) as writer:
            for i in range(8):
                writer.append_event(**sample_event(i))
    backend = S3Backend(fresh_trail_url, **s3_options)
    keys = backend.store.list_keys(backend.location.root)
    assert not any(key.endswith("audit-000001.jsonl") for key in keys)
    assert read_ids(fresh_trail_url, s3_options)[0] == list(range(1, 9))

    AuditTrailWriter(root_path=fresh_trail_url, storage_options=s3_options).close()
    keys = backend.store.list_keys(backend.location.root)
    assert not any(".chunks/" in key for key in keys)
    ids, reader = read_ids(fresh_trail_url, s3_options)
    assert ids == list(range(1, 9)) and reader.report.clean


def test_a_vanished_index_stops_the_writer_until_it_is_reopened(
    fresh_trail_url: str, s3_options: dict[str, Any]
) -> None:
    writer = AuditTrailWriter(root_path=fresh_trail_url, storage_options=s3_options)
    writer.append_event(**sample_event(0))
    backend = S3Backend(fresh_trail_url, **s3_options)
    backend.store.delete([backend.location.index_key])
    with pytest.raises(StorageError, match="vanished"):
        writer.append_event(**sample_event(1))
    with AuditTrailWriter(root_path=fresh_trail_url, storage_options=s3_options) as reopened:
        assert reopened.append_event(**sample_event(1)).event_id == 2


def test_index_state_round_trips_and_reads_the_original_format() -> None:
    state = IndexState(
        last_event_id=41,
        writer_epoch=7,
        lease=Lease(1.5, 45, "beef"),
        streams={ORDERS: OpenSegment(3, 1200)},
    )
    assert IndexState.decode(state.encode(), "s3://b") == state
    assert state.highest_reserved == 45
    original = IndexState.decode(b'{"last_event_id": 42}', "s3://b")
    assert (original.last_event_id, original.complete, original.streams) == (42, False, {})
    with pytest.raises(StorageError, match=r"unreadable index\.json"):
        IndexState.decode(b"[]", "s3://b")


def test_listing_maps_keys_to_segments_and_ignores_the_rest() -> None:
    location = TrailLocation.parse("s3://b/p")
    listing = location.parse_listing(
        {
            "p/index.json": 20,
            "p/shop/orders/audit-000001.jsonl": 100,
            "p/shop/orders/audit-000002.jsonl.chunks/00000000000000000009.jsonl": 30,
            "p/shop/orders/audit-000002.jsonl.chunks/00000000000000000007.jsonl": 40,
            "p/shop/orders/audit-000001.jsonl.torn/00000000000000000003.jsonl": 5,
            "p/shop/orders/notes.txt": 1,
            "p/.hidden/x/audit-000001.jsonl": 1,
            "other/shop/orders/audit-000001.jsonl": 1,
        }
    )
    segments = listing[ORDERS]
    assert list(listing) == [ORDERS] and sorted(segments) == [1, 2]
    assert segments[1].sealed_size == 100 and not segments[1].chunks
    assert list(segments[2].chunks) == [chunk_name(7), chunk_name(9)]
    assert segments[2].chunk_bytes == 70


def test_merging_orders_by_id_and_drops_identical_repeats() -> None:
    sealed = b'{"event_id":2,"a":1}\n{"event_id":5,"a":1}\n'
    late = b'{"event_id":3,"a":1}\n'
    leftover = b'{"event_id":5,"a":1}\n'
    assert [line[:13] for line in merge_lines([sealed, late, leftover])] == [
        b'{"event_id":2',
        b'{"event_id":3',
        b'{"event_id":5',
    ]


def test_open_deletes_only_the_chunks_a_sealed_object_already_holds(
    fresh_trail_url: str, s3_options: dict[str, Any]
) -> None:
    crashed = AuditTrailWriter(root_path=fresh_trail_url, storage_options=s3_options)
    for i in range(3):
        crashed.append_event(**sample_event(i))  # never closed: three chunks in segment 1
    backend = S3Backend(fresh_trail_url, **s3_options)
    lines = list(backend.read_segment(ORDERS, 1))
    # a sealer that saw the first two chunks, killed before deleting them; the third chunk
    # came later and must stay
    backend.store.put(backend.location.segment_key(ORDERS, 1), b"".join(lines[:2]))
    backend.store.put(
        backend.location.index_key,
        IndexState(last_event_id=3, streams={ORDERS: OpenSegment(2, 0)}).encode(),
        if_match=backend.index.read()[1],
    )

    AuditTrailWriter(root_path=fresh_trail_url, storage_options=s3_options).close()
    keys = backend.store.list_keys(backend.location.root)
    chunks = [key.rsplit("/", 1)[1] for key in keys if ".chunks/" in key]
    assert chunks == [chunk_name(3)]
    assert list(backend.read_segment(ORDERS, 1)) == lines
    ids, reader = read_ids(fresh_trail_url, s3_options)
    assert ids == [1, 2, 3] and reader.report.clean
