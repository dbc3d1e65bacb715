"""Behaviour specific to the local-disk backend: the original format, processes, failures."""

from __future__ import annotations

import errno
import itertools
import json
import multiprocessing
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from _workers import append_from_threads

from trailstore import (
    AuditPayload,
    AuditTrailReader,
    AuditTrailWriter,
    ConfigurationError,
    StorageError,
    WriterClosedError,
)
from trailstore.backend import StreamKey
from trailstore.backends.local import LocalBackend
from trailstore.coordinators.local_lock import COUNTER_NAME
from trailstore.testing import sample_event


def _ids(root: Path, **filters: Any) -> list[int]:
    return [event.event_id for event in AuditTrailReader(root_path=root).iter_events(**filters)]


def _original_line(event_id: int, record_id: int) -> str:
    """A line as the original writer wrote it (same format, pretty key order of its own)."""
    return json.dumps(
        {
            "event_id": event_id,
            "timestamp": 1700000000.0 + event_id,
            "domain": "shop",
            "category": "orders",
            "model_name": "Order",
            "operation": "create",
            "logical_user_id": "legacy",
            "payload": {"after": {"id": record_id}},
        },
        separators=(",", ":"),
    )


def test_trail_of_the_original_writer_is_continued_without_reusing_ids(tmp_path: Path) -> None:
    stream = tmp_path / "shop" / "orders"
    stream.mkdir(parents=True)
    (stream / "audit-000001.jsonl").write_text(
        "".join(_original_line(i, i) + "\n" for i in range(1, 43))
    )
    (tmp_path / "index.json").write_text(json.dumps({"last_event_id": 42}))
    with AuditTrailWriter(root_path=tmp_path) as writer:
        assert writer.append_event(**sample_event(0)).event_id == 43
    assert _ids(tmp_path) == list(range(1, 44))
    assert json.loads((tmp_path / "index.json").read_text()) == {"last_event_id": 43}


@pytest.mark.parametrize("index_text", ["", "garbage{", '{"last_event_id": 3}', None])
def test_lagging_missing_or_garbage_index_is_reconciled_with_the_data(
    tmp_path: Path, index_text: str | None
) -> None:
    with AuditTrailWriter(root_path=tmp_path) as writer:
        for i in range(10):
            writer.append_event(**sample_event(i))
    (tmp_path / COUNTER_NAME).unlink()
    index = tmp_path / "index.json"
    if index_text is None:
        index.unlink()
    else:
        index.write_text(index_text)
    with AuditTrailWriter(root_path=tmp_path) as writer:
        assert writer.append_event(**sample_event(0)).event_id == 11
    assert _ids(tmp_path) == list(range(1, 12))


def test_four_processes_of_four_threads_share_one_gap_free_sequence(tmp_path: Path) -> None:
    limit, processes, threads, per_thread = 3000, 4, 4, 40
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        results = pool.starmap(
            append_from_threads, [(str(tmp_path), threads, per_thread, limit)] * processes
        )
    total = processes * threads * per_thread
    acknowledged = sorted(event_id for result in results for event_id in result)
    assert acknowledged == list(range(1, total + 1))
    assert _ids(tmp_path) == acknowledged
    backend = LocalBackend(str(tmp_path))
    for stream in backend.list_streams():
        stream_ids = _ids(tmp_path, domains=[stream.domain], categories=[stream.category])
        assert stream_ids == sorted(stream_ids)
        numbers = backend.list_segments(stream)
        assert len(numbers) > 1
        assert all(backend.segment_size(stream, n) <= limit for n in numbers)
    assert json.loads((tmp_path / "index.json").read_text()) == {"last_event_id": total}


def test_torn_tail_goes_to_a_quarantine_file(tmp_path: Path) -> None:
    with AuditTrailWriter(root_path=tmp_path) as writer:
        writer.append_event(**sample_event(0))
    segment = tmp_path / "shop" / "orders" / "audit-000001.jsonl"
    intact = segment.read_bytes()
    with open(segment, "ab") as out:
        out.write(b'{"event_id":2,"tim')
    AuditTrailWriter(root_path=tmp_path).close()
    assert segment.read_bytes() == intact
    assert (segment.parent / "audit-000001.jsonl.torn").read_bytes() == b'{"event_id":2,"tim\n'


def test_segments_past_999999_order_by_number(tmp_path: Path) -> None:
    stream = tmp_path / "shop" / "orders"
    stream.mkdir(parents=True)
    (stream / "audit-999999.jsonl").write_text(_original_line(1, 1) + "\n")
    with AuditTrailWriter(root_path=tmp_path, max_file_size_bytes=100) as writer:
        writer.append_event(**sample_event(0))
    assert (stream / "audit-1000000.jsonl").exists()
    assert LocalBackend(str(tmp_path)).list_segments(StreamKey("shop", "orders")) == [
        999999,
        1000000,
    ]
    assert _ids(tmp_path) == [1, 2]


def test_reader_skips_foreign_files_and_reports_malformed_lines(tmp_path: Path) -> None:
    with AuditTrailWriter(root_path=tmp_path) as writer:
        writer.append_event(**sample_event(0))
        writer.append_event(**sample_event(1))
    stream = tmp_path / "shop" / "orders"
    (stream / "notes.txt").write_text("not a segment\n")
    (stream / "audit-000007.jsonl").mkdir()
    (tmp_path / "README").write_text("foreign file\n")
    with open(stream / "audit-000001.jsonl", "ab") as out:
        out.write(b"{broken json}\n")
    reader = AuditTrailReader(root_path=tmp_path)
    assert [event.event_id for event in reader.iter_events()] == [1, 2]
    assert reader.report.malformed_lines == 1


def test_failed_write_leaves_no_partial_line_and_spends_no_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = AuditTrailWriter(root_path=tmp_path)
    writer.append_event(**sample_event(0))
    real_write = os.write

    def half_then_disk_full(fd: int, data: Any) -> int:
        monkeypatch.setattr(os, "write", real_write)
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_disk_full)
    with pytest.raises(StorageError, match="No space left"):
        writer.append_event(**sample_event(1))
    assert writer.append_event(**sample_event(2)).event_id == 2
    writer.close()
    reader = AuditTrailReader(root_path=tmp_path)
    assert [event.event_id for event in reader.iter_events()] == [1, 2]
    assert reader.report.clean


def test_root_that_is_a_file_is_refused_with_its_path(tmp_path: Path) -> None:
    root = tmp_path / "trail"
    root.write_text("")
    with pytest.raises(StorageError, match=str(root)):
        AuditTrailWriter(root_path=root)


def test_root_that_cannot_be_created_is_refused_with_its_path() -> None:
    root = "/proc/self/trailstore-cannot-write-here"
    with pytest.raises(StorageError, match=root):
        AuditTrailWriter(root_path=root)


@pytest.mark.parametrize(
    "settings",
    [
        {"max_file_size_bytes": 0},
        {"max_file_size_bytes": -5},
        {"max_file_size_bytes": True},
        {"durability": "sometimes"},
        {"flush_interval": 0},
        {"flush_interval": float("nan")},
        {"flush_interval": float("inf")},
        {"flush_max_events": 0},
    ],
)
def test_impossible_settings_fail_at_construction(tmp_path: Path, settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        AuditTrailWriter(root_path=tmp_path / "trail", **settings)
    assert not (tmp_path / "trail").exists()


def test_closed_writer_refuses_appends(tmp_path: Path) -> None:
    writer = AuditTrailWriter(root_path=tmp_path)
    writer.close()
    writer.close()
    with pytest.raises(WriterClosedError):
        writer.append_event(**sample_event(0))


def test_payload_mapping_is_accepted_like_the_model(tmp_path: Path) -> None:
    with AuditTrailWriter(root_path=tmp_path) as writer:
        event = writer.append_event(**sample_event(0, payload={"after": {"id": 1}}))
    assert event.payload == AuditPayload(after={"id": 1})


def test_ids_reserved_by_a_writer_that_died_are_reported_as_gaps(tmp_path: Path) -> None:
    def reserve_up_to(last: int) -> None:
        """What a writer that reserved IDs and was killed before writing leaves behind."""
        (tmp_path / COUNTER_NAME).write_bytes(b"%20d\n" % last)

    with AuditTrailWriter(root_path=tmp_path) as writer:
        writer.append_event(**sample_event(0))
        writer.append_event(**sample_event(1))
    reserve_up_to(5)
    with AuditTrailWriter(root_path=tmp_path) as writer:
        assert writer.append_event(**sample_event(2)).event_id == 6
    reserve_up_to(8)
    reader = AuditTrailReader(root_path=tmp_path)
    assert [event.event_id for event in reader.iter_events()] == [1, 2, 6]
    assert reader.report.gaps == [(3, 5), (7, 8)]
    assert not reader.report.clean


def test_min_event_id_skips_segments_yet_survives_a_damaged_first_line(tmp_path: Path) -> None:
    with AuditTrailWriter(root_path=tmp_path, max_file_size_bytes=600) as writer:
        for i in range(60):
            writer.append_event(**sample_event(i))
    stream = tmp_path / "shop" / "orders"
    segments = sorted(stream.glob("audit-*.jsonl"))
    assert len(segments) > 8
    middle = segments[len(segments) // 2]
    middle.write_bytes(b"{damaged first line}\n" + middle.read_bytes())
    for low in (1, 17, 30, 45, 59, 60):
        assert _ids(tmp_path, min_event_id=low) == list(range(low, 61))


@pytest.mark.parametrize("durability", ["fsync", "batch"])
def test_a_writer_inherited_through_fork_reopens_instead_of_sharing_the_lock(
    tmp_path: Path, durability: str
) -> None:
    writer = AuditTrailWriter(root_path=tmp_path, durability=durability, max_file_size_bytes=4000)
    writer.append_event(**sample_event(0))  # the parent holds open files (and, in batch, a lock)
    children = []
    for child in range(3):
        pid = os.fork()
        if pid == 0:  # the child: the writer it inherited must still be safe to use
            status = 1
            try:
                for i in range(150):
                    writer.append_event(**sample_event(i, category=f"c{child}"))
                writer.close()
                status = 0
            finally:
                os._exit(status)
        children.append(pid)
    for i in range(150):
        writer.append_event(**sample_event(i))
    writer.close()
    for pid in children:
        assert os.waitpid(pid, 0)[1] == 0
    reader = AuditTrailReader(root_path=tmp_path)
    assert [event.event_id for event in reader.iter_events()] == list(range(1, 602))
    assert reader.report.clean


def test_scans_during_live_writes_report_no_false_gaps(tmp_path: Path) -> None:
    writer = AuditTrailWriter(root_path=tmp_path)
    stop = threading.Event()

    def write() -> None:
        for i in itertools.count():
            if stop.is_set():
                return
            writer.append_event(**sample_event(i, category=("a", "b", "c")[i % 3]))

    appender = threading.Thread(target=write)
    appender.start()
    try:
        for _ in range(200):
            reader = AuditTrailReader(root_path=tmp_path)
            ids = [event.event_id for event in reader.iter_events()]
            assert reader.report.gaps == [], "IDs of a commit in flight were reported missing"
            assert ids == sorted(set(ids))  # streams read one after another: not a prefix
    finally:
        stop.set()
        appender.join()
        writer.close()
