"""The log protocol on S3: cost per commit, several processes, fencing of a paused writer, a
dead writer blocking nobody, and the counter never going back whatever happens to
``index.json`` or how the trail got into the bucket."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from _s3_proxy import CountingProxy
from _s3_workers import append_events
from conftest import options_for
from trailstore_s3.backend import S3Backend

from trailstore import AuditPayload, AuditTrailReader, AuditTrailWriter, FencedError
from trailstore.backend import StreamKey
from trailstore.backends.logged import LogBackend
from trailstore.encoding import encode_body
from trailstore.events import AuditEvent
from trailstore.lines import render_line
from trailstore.store.log import LogStore
from trailstore.testing import sample_event


def read_ids(
    url: str, options: dict[str, Any], **filters: Any
) -> tuple[list[int], AuditTrailReader]:
    reader = AuditTrailReader(root_path=url, storage_options=options)
    return [event.event_id for event in reader.iter_events(**filters)], reader


@pytest.mark.parametrize(
    "events", [pytest.param(600, id="600"), pytest.param(10_000, marks=pytest.mark.slow, id="10k")]
)
def test_an_uncontended_fsync_commit_is_one_put(
    proxy: CountingProxy, fresh_trail_url: str, events: int, record_property: Any
) -> None:
    """Counted at the server: one PUT per append, plus checkpoints, ``index.json`` and sealing
    amortised; no other request while appending; uploads at most 3x the trail. (Without
    tamper evidence: what it adds is counted by the next test.)"""
    options = options_for(proxy.endpoint)
    payload = AuditPayload.from_create({"id": 1, "note": "x" * 310})
    limit = events * 500 // 12  # about a dozen segments, sealed as the writer rotates
    writer = AuditTrailWriter(
        root_path=fresh_trail_url,
        storage_options=options,
        max_file_size_bytes=limit,
        checkpoints=False,
    )
    proxy.reset()
    for i in range(events):
        writer.append_event(**sample_event(i, payload=payload))
    appending = {method: proxy.count(method) for method in ("PUT", "GET", "HEAD", "POST")}
    uploaded = proxy.uploaded_bytes()
    writer.close()
    checkpoints = events // LogBackend.checkpoint_every
    segments = sum(
        len(S3Backend(fresh_trail_url, **options).list_segments(stream))
        for stream in S3Backend(fresh_trail_url, **options).list_streams()
    )
    assert appending["PUT"] <= events + 2 * checkpoints + segments
    assert appending["GET"] <= 2 * segments + 2 * checkpoints  # reading commits to seal
    trail_bytes = events * len(
        render_line(
            1,
            encode_body(AuditEvent(event_id=0, timestamp=1.0, **sample_event(0, payload=payload))),
        )
    )
    assert uploaded <= 3 * trail_bytes
    measured = {
        "events": events,
        "puts_per_commit": round(appending["PUT"] / events, 3),
        "other_requests_per_commit": round((appending["GET"] + appending["HEAD"]) / events, 3),
        "upload_ratio": round(uploaded / trail_bytes, 2),
        "segments": segments,
    }
    record_property("s3_cost", measured)
    print(measured)
    proxy.reset()
    ids, reader = read_ids(fresh_trail_url, options)
    assert ids == list(range(1, events + 1)) and reader.report.clean


def test_tamper_evidence_costs_one_put_per_evidence_file_and_no_request_per_append(
    proxy: CountingProxy, fresh_trail_url: str, record_property: Any
) -> None:
    """With checkpoints (at each of a dozen seals here): each checkpoint and seal is one PUT,
    and what a checkpoint reads (listings, the bytes it hashes) is paid per checkpoint, not
    per append."""
    options = options_for(proxy.endpoint)
    payload = AuditPayload.from_create({"id": 1, "note": "x" * 310})
    events = 600
    writer = AuditTrailWriter(
        root_path=fresh_trail_url, storage_options=options, max_file_size_bytes=events * 500 // 12
    )
    proxy.reset()
    for i in range(events):
        writer.append_event(**sample_event(i, payload=payload))
    writer.close()
    backend = S3Backend(fresh_trail_url, **options)
    evidence = len(backend.list_evidence(".trailstore/evidence"))
    seals = sum(
        name.endswith(".seal.json")
        for stream in backend.list_streams()
        for name in backend.list_evidence(f"{stream.domain}/{stream.category}")
    )
    assert evidence > 1 and seals > 1
    segments = sum(len(backend.list_segments(stream)) for stream in backend.list_streams())
    checkpoints = events // LogBackend.checkpoint_every + 1  # and the one at close
    assert proxy.count("PUT") <= events + 2 * checkpoints + segments + evidence + seals + 1
    measured = {
        "evidence_puts": evidence + seals,
        "gets_per_commit": round(proxy.count("GET") / events, 3),
        "download_ratio": round(proxy.downloaded_bytes() / proxy.uploaded_bytes(), 2),
    }
    record_property("s3_evidence_cost", measured)
    print(measured)
    assert proxy.count("GET") + proxy.count("HEAD") <= 25 * evidence  # per checkpoint written


def test_four_writer_processes_share_one_trail(
    fresh_trail_url: str, s3_options: dict[str, Any]
) -> None:
    limit = 8 * 1024
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        results = pool.starmap(
            append_events, [(fresh_trail_url, s3_options, 60, limit) for _ in range(4)]
        )
    acknowledged = sorted(event_id for result in results for event_id in result)
    assert acknowledged == list(range(1, 241))
    ids, reader = read_ids(fresh_trail_url, s3_options)
    assert ids == acknowledged and reader.report.clean
    for category in ("orders", "refunds"):
        stream_ids, _ = read_ids(fresh_trail_url, s3_options, categories=category)
        assert stream_ids == sorted(stream_ids) and len(stream_ids) == 120
    backend = S3Backend(fresh_trail_url, **s3_options)
    for stream in backend.list_streams():
        numbers = backend.list_segments(stream)
        assert numbers == list(range(1, len(numbers) + 1))
        assert all(backend.segment_size(stream, number) <= limit for number in numbers)


def test_a_batch_writer_paused_past_its_lease_is_fenced_and_its_ids_stay_spent(
    fresh_trail_url: str, s3_options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic: the batch writer hands out IDs under its lease and stops (a GC pause,
    a partition) until its lease has expired and another writer has taken it over."""
    monkeypatch.setattr(LogBackend, "lease_seconds", 0.5)
    zombie = AuditTrailWriter(
        root_path=fresh_trail_url,
        storage_options=s3_options,
        durability="batch",
        flush_interval=60,
        flush_max_events=10_000,
    )
    handed_out = [zombie.append_event(**sample_event(i)).event_id for i in range(3)]
    started = time.monotonic()
    with AuditTrailWriter(root_path=fresh_trail_url, storage_options=s3_options) as successor:
        taken = [successor.append_event(**sample_event(i, category="x")).event_id for i in range(2)]
    assert time.monotonic() - started >= 0.4  # it waited for the lease to expire
    with pytest.raises(FencedError, match="taken over"):
        zombie.flush()
    zombie.close()
    assert handed_out == [1, 2, 3]
    assert taken[0] > 3 and taken == [taken[0], taken[0] + 1]
    ids, reader = read_ids(fresh_trail_url, s3_options)
    assert ids == taken
    assert reader.report.gaps == [(1, taken[0] - 1)] and reader.report.duplicate_ids == 0


def test_a_writer_killed_mid_commit_blocks_nobody(
    fresh_trail_url: str, s3_options: dict[str, Any]
) -> None:
    """An fsync writer holds nothing between requests: killed while its commit is in flight,
    the next writer's append waits for nobody."""
    script = (
        "import sys, json, os, signal\n"
        "from trailstore import AuditTrailWriter\n"
        "from trailstore.store.log import LogStore\n"
        "from trailstore.testing import sample_event\n"
        "def die(*a, **k): os.kill(os.getpid(), signal.SIGKILL)\n"
        "w = AuditTrailWriter(root_path=sys.argv[1], storage_options=json.loads(sys.argv[2]))\n"
        "w.append_event(**sample_event(0))\n"
        "LogStore.create_commit = die\n"
        "w.append_event(**sample_event(1))\n"
    )
    import subprocess
    import sys

    child = subprocess.run(
        [sys.executable, "-c", script, fresh_trail_url, json.dumps(s3_options)], timeout=60
    )
    assert child.returncode == -9
    started = time.monotonic()
    with AuditTrailWriter(root_path=fresh_trail_url, storage_options=s3_options) as writer:
        assert writer.append_event(**sample_event(2)).event_id == 2
    assert time.monotonic() - started < 1.0
    ids, reader = read_ids(fresh_trail_url, s3_options)
    assert ids == [1, 2] and reader.report.clean


# -- the counter never goes back: index.json damaged, restored, deleted; foreign trails ---------


def _write(url: str, options: dict[str, Any], count: int, start: int = 0) -> list[int]:
    with AuditTrailWriter(root_path=url, storage_options=options, max_file_size_bytes=700) as w:
        return [w.append_event(**sample_event(start + i)).event_id for i in range(count)]


def test_a_restored_older_index_does_not_bring_back_used_ids(
    fresh_trail_url: str, s3_options: dict[str, Any]
) -> None:
    backend = S3Backend(fresh_trail_url, **s3_options)
    first = _write(fresh_trail_url, s3_options, 5)
    index = f"{backend.location.root}/index.json"
    backup = backend.fs.cat_file(index)
    later = _write(fresh_trail_url, s3_options, 5)
    backend.fs.pipe_file(index, backup)  # a backup, a version rollback
    again = _write(fresh_trail_url, s3_options, 2)
    assert first + later + again == list(range(1, 13))
    ids, reader = read_ids(fresh_trail_url, s3_options)
    assert ids == list(range(1, 13)) and reader.report.clean


@pytest.mark.parametrize("index", [b"", b"garbage", b"[1, 2]", b'{"last_event_id": "x"}'])
def test_a_garbage_index_stops_neither_readers_nor_writers(
    fresh_trail_url: str, s3_options: dict[str, Any], index: bytes
) -> None:
    backend = S3Backend(fresh_trail_url, **s3_options)
    _write(fresh_trail_url, s3_options, 4)
    backend.fs.pipe_file(f"{backend.location.root}/index.json", index)
    assert read_ids(fresh_trail_url, s3_options)[0] == [1, 2, 3, 4]
    assert _write(fresh_trail_url, s3_options, 2) == [5, 6]
    ids, reader = read_ids(fresh_trail_url, s3_options)
    assert ids == list(range(1, 7)) and reader.report.clean


def test_a_local_trail_copied_to_the_bucket_continues_above_its_ids(
    tmp_path: Path, fresh_trail_url: str, s3_options: dict[str, Any]
) -> None:
    """Its last segment is empty (a kill right after rotation) and its index lags."""
    with AuditTrailWriter(root_path=tmp_path, max_file_size_bytes=700) as local:
        for i in range(9):
            local.append_event(**sample_event(i))
    stream = tmp_path / "shop" / "orders"
    last = max(int(path.stem.split("-")[1]) for path in stream.glob("audit-*.jsonl"))
    (stream / f"audit-{last + 1:06d}.jsonl").write_bytes(b"")
    (tmp_path / "index.json").write_text(json.dumps({"last_event_id": 2}))
    backend = S3Backend(fresh_trail_url, **s3_options)
    for path in tmp_path.rglob("*"):
        if path.is_file() and not path.name.startswith("."):
            key = f"{backend.location.root}/{path.relative_to(tmp_path)}"
            backend.fs.pipe_file(key, path.read_bytes())
    assert _write(fresh_trail_url, s3_options, 2, start=9) == [10, 11]
    ids, reader = read_ids(fresh_trail_url, s3_options)
    assert ids == list(range(1, 12)) and reader.report.clean


def test_an_index_deleted_while_a_commit_is_in_flight_costs_no_id_twice(
    fresh_trail_url: str, s3_options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow network: the first writer's commit is on its way when ``index.json`` is
    deleted and a second writer opens and commits."""
    backend = S3Backend(fresh_trail_url, **s3_options)
    _write(fresh_trail_url, s3_options, 3)
    slow = AuditTrailWriter(root_path=fresh_trail_url, storage_options=s3_options)
    reached, release = threading.Event(), threading.Event()
    create = LogStore.create_commit

    def slow_create(store: LogStore, commit: Any, *, create_only: bool) -> None:
        if threading.current_thread().name == "slow":
            reached.set()
            assert release.wait(30)
        create(store, commit, create_only=create_only)

    monkeypatch.setattr(LogStore, "create_commit", slow_create)
    outcome: dict[str, int] = {}
    thread = threading.Thread(
        target=lambda: outcome.update(id=slow.append_event(**sample_event(3)).event_id),
        name="slow",
    )
    thread.start()
    assert reached.wait(30)
    backend.fs.rm_file(f"{backend.location.root}/index.json")
    assert _write(fresh_trail_url, s3_options, 2, start=4) == [4, 5]
    release.set()
    thread.join(30)
    slow.close()
    assert outcome["id"] == 6
    ids, reader = read_ids(fresh_trail_url, s3_options)
    assert ids == list(range(1, 7)) and reader.report.clean


def test_commits_are_collected_once_sealed_and_old_yet_every_event_reads(
    fresh_trail_url: str, s3_options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LogBackend, "checkpoint_every", 4)
    monkeypatch.setattr(LogBackend, "log_retention_seconds", 0.0)
    written = _write(fresh_trail_url, s3_options, 60)
    backend = S3Backend(fresh_trail_url, **s3_options)
    remaining = backend.store.logged_numbers()
    assert len(remaining) < 20, remaining  # sealed and checkpointed commits are gone
    ids, reader = read_ids(fresh_trail_url, s3_options)
    assert ids == written == list(range(1, 61)) and reader.report.clean
    assert _write(fresh_trail_url, s3_options, 1, start=60) == [61]
    assert StreamKey("shop", "orders") in backend.list_streams()
