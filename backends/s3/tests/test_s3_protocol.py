"""The object-store protocol: cost, several writer processes, fencing, late chunks."""

from __future__ import annotations

import multiprocessing
import threading
import time
from typing import Any

import pytest
from _s3_proxy import CountingProxy
from _s3_workers import append_events
from conftest import options_for
from trailstore_s3.backend import S3Backend
from trailstore_s3.session import S3CommitSession
from trailstore_s3.store import ObjectStore

from trailstore import (
    AuditPayload,
    AuditTrailReader,
    AuditTrailWriter,
    FencedError,
    StorageError,
)
from trailstore.backend import StreamKey
from trailstore.testing import sample_event


def read_ids(
    url: str, options: dict[str, Any], **filters: Any
) -> tuple[list[int], AuditTrailReader]:
    reader = AuditTrailReader(root_path=url, storage_options=options)
    return [event.event_id for event in reader.iter_events(**filters)], reader


@pytest.mark.parametrize(
    "events", [pytest.param(1000, id="1k"), pytest.param(10_000, marks=pytest.mark.slow, id="10k")]
)
def test_append_costs_o_batch_and_reading_one_get_per_segment(
    proxy: CountingProxy, fresh_trail_url: str, events: int, record_property: Any
) -> None:
    options = options_for(proxy.endpoint)
    payload = AuditPayload.from_create({"id": 1, "note": "x" * 310})
    limit = events * 500 // 12  # about a dozen segments, sealed as the writer rotates
    proxy.reset()
    with AuditTrailWriter(
        root_path=fresh_trail_url, storage_options=options, max_file_size_bytes=limit
    ) as writer:
        for i in range(events):
            writer.append_event(**sample_event(i, payload=payload))
    uploaded, puts = proxy.uploaded_bytes(), proxy.count("PUT")
    backend = S3Backend(fresh_trail_url, **options)
    objects = backend.store.list_keys(backend.location.root)
    trail_bytes = sum(objects.values())
    segments = sum(len(backend.list_segments(stream)) for stream in backend.list_streams())
    assert all(".chunks/" not in key for key in objects) and segments >= 12
    assert 450 <= trail_bytes / events <= 550
    assert uploaded <= 3 * trail_bytes

    proxy.reset()
    ids, reader = read_ids(fresh_trail_url, options)
    gets = proxy.count("GET")
    assert ids == list(range(1, events + 1)) and reader.report.clean
    assert gets <= segments + 10
    measured = {
        "events": events,
        "trail_bytes": trail_bytes,
        "uploaded_bytes": uploaded,
        "upload_ratio": round(uploaded / trail_bytes, 2),
        "puts": puts,
        "segments": segments,
        "read_gets": gets,
    }
    record_property("s3_cost", measured)
    print(measured)


def test_four_writer_processes_share_one_trail(
    fresh_trail_url: str, s3_options: dict[str, Any]
) -> None:
    limit = 8 * 1024
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        results = pool.starmap(
            append_events, [(fresh_trail_url, s3_options, 250, limit) for _ in range(4)]
        )
    acknowledged = sorted(event_id for result in results for event_id in result)
    assert acknowledged == list(range(1, 1001))
    ids, reader = read_ids(fresh_trail_url, s3_options)
    assert ids == acknowledged and reader.report.clean
    for category in ("orders", "refunds"):
        stream_ids, _ = read_ids(fresh_trail_url, s3_options, categories=category)
        assert stream_ids == sorted(stream_ids) and len(stream_ids) == 500
    backend = S3Backend(fresh_trail_url, **s3_options)
    for stream in backend.list_streams():
        numbers = backend.list_segments(stream)
        assert numbers == list(range(1, len(numbers) + 1))
        assert all(backend.segment_size(stream, number) <= limit for number in numbers)


class _Pause:
    """Blocks the thread named ``zombie`` at a patched method until released."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()

    def wrap(self, method: Any) -> Any:
        def paused(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread().name == "zombie":
                self.reached.set()
                assert self.release.wait(30)
            return method(*args, **kwargs)

        return paused


def _run_zombie(writer: AuditTrailWriter, outcome: dict[str, Any]) -> threading.Thread:
    def work() -> None:
        try:
            outcome["event"] = writer.append_event(**sample_event(0, category="zombie"))
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=work, name="zombie")
    thread.start()
    return thread


def test_a_writer_paused_between_allocation_and_write_is_fenced(
    fresh_trail_url: str, s3_options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(S3Backend, "lease_seconds", 0.5)
    pause = _Pause()
    monkeypatch.setattr(S3CommitSession, "commit", pause.wrap(S3CommitSession.commit))
    zombie = AuditTrailWriter(root_path=fresh_trail_url, storage_options=s3_options)
    assert zombie.append_event(**sample_event(0)).event_id == 1
    outcome: dict[str, Any] = {}
    thread = _run_zombie(zombie, outcome)
    assert pause.reached.wait(10)  # ID 2 is allocated under the zombie's lease

    with AuditTrailWriter(root_path=fresh_trail_url, storage_options=s3_options) as successor:
        assert [successor.append_event(**sample_event(i)).event_id for i in range(3)] == [3, 4, 5]
    pause.release.set()
    thread.join()
    assert isinstance(outcome.get("error"), FencedError)
    assert zombie.append_event(**sample_event(9)).event_id == 6
    zombie.close()

    ids, reader = read_ids(fresh_trail_url, s3_options)
    assert ids == [1, 3, 4, 5, 6]
    assert reader.report.gaps == [(2, 2)] and reader.report.duplicate_ids == 0
    assert StreamKey("shop", "zombie") not in reader.streams()


def test_a_chunk_uploaded_after_its_segment_was_sealed_is_still_read_in_order(
    fresh_trail_url: str, s3_options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(S3Backend, "seal_grace_seconds", 0.2)
    pause = _Pause()
    monkeypatch.setattr(S3Backend, "upload", pause.wrap(S3Backend.upload))
    late = AuditTrailWriter(root_path=fresh_trail_url, storage_options=s3_options)
    outcome: dict[str, Any] = {}
    thread = _run_zombie(late, outcome)
    assert pause.reached.wait(10)  # ID 1 is published in the index, its chunk not uploaded

    with AuditTrailWriter(root_path=fresh_trail_url, storage_options=s3_options) as other:
        assert [
            other.append_event(**sample_event(i, category="zombie")).event_id for i in range(2)
        ] == [2, 3]
    pause.release.set()
    thread.join()
    assert outcome["event"].event_id == 1
    late.close()

    backend = S3Backend(fresh_trail_url, **s3_options)
    stream = StreamKey("shop", "zombie")
    assert backend.list_segments(stream) == [1]
    ids, reader = read_ids(fresh_trail_url, s3_options)
    assert ids == [1, 2, 3] and reader.report.clean
    with AuditTrailWriter(root_path=fresh_trail_url, storage_options=s3_options) as reopened:
        assert reopened.append_event(**sample_event(4, category="zombie")).event_id == 4
    assert read_ids(fresh_trail_url, s3_options)[0] == [1, 2, 3, 4]


def test_batch_and_fsync_writers_interleave_without_gaps(
    fresh_trail_url: str, s3_options: dict[str, Any]
) -> None:
    batch = AuditTrailWriter(
        root_path=fresh_trail_url,
        storage_options=s3_options,
        durability="batch",
        flush_interval=0.05,
        flush_max_events=40,
        max_file_size_bytes=4096,
    )
    fsync = AuditTrailWriter(
        root_path=fresh_trail_url, storage_options=s3_options, max_file_size_bytes=4096
    )

    def work(writer: AuditTrailWriter, category: str) -> None:
        for i in range(100):
            writer.append_event(**sample_event(i, category=category))

    threads = [
        threading.Thread(target=work, args=(batch, "batched")),
        threading.Thread(target=work, args=(fsync, "synced")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batch.close()
    fsync.close()
    ids, reader = read_ids(fresh_trail_url, s3_options)
    assert ids == list(range(1, 201)) and reader.report.clean
    for category in ("batched", "synced"):
        stream_ids, _ = read_ids(fresh_trail_url, s3_options, categories=category)
        assert len(stream_ids) == 100 and stream_ids == sorted(stream_ids)


def test_a_commit_that_failed_midway_does_not_block_the_next_one(
    fresh_trail_url: str, s3_options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = AuditTrailWriter(root_path=fresh_trail_url, storage_options=s3_options)
    assert writer.append_event(**sample_event(0)).event_id == 1
    original_put = ObjectStore.put
    failures = []

    def put_failing_once(self: ObjectStore, key: str, data: bytes, **kwargs: Any) -> str:
        if key.endswith("index.json") and b'"lease"' not in data and not failures:
            failures.append(key)
            raise StorageError("connection reset while publishing")
        return original_put(self, key, data, **kwargs)

    monkeypatch.setattr(ObjectStore, "put", put_failing_once)
    with pytest.raises(StorageError, match="connection reset"):
        writer.append_event(**sample_event(1))
    started = time.monotonic()
    assert writer.append_event(**sample_event(2)).event_id == 3
    assert time.monotonic() - started < S3Backend.lease_seconds / 2
    writer.close()
    ids, reader = read_ids(fresh_trail_url, s3_options)
    assert ids == [1, 3] and reader.report.gaps == [(2, 2)]
