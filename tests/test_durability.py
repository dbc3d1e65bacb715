"""Durability modes: group commit, batch flushing, flush at interpreter exit."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from trailstore import AuditTrailReader, AuditTrailWriter, WriterClosedError
from trailstore.testing import sample_event


def _ids(root: Path) -> list[int]:
    return [event.event_id for event in AuditTrailReader(root_path=root).iter_events()]


def test_concurrent_fsync_appenders_share_syncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs = 0
    real_fdatasync = os.fdatasync

    def counting_fdatasync(fd: int) -> None:
        nonlocal syncs
        syncs += 1
        time.sleep(0.002)  # a disk that takes a moment, as real ones do
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", counting_fdatasync)
    writer = AuditTrailWriter(root_path=tmp_path)
    threads = [
        threading.Thread(target=lambda: [writer.append_event(**sample_event(i)) for i in range(25)])
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    assert _ids(tmp_path) == list(range(1, 201))
    assert syncs < 100


def test_flush_mode_does_not_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(os, "fdatasync", calls.append)
    with AuditTrailWriter(root_path=tmp_path, durability="flush") as writer:
        writer.append_event(**sample_event(0))
    assert calls == []
    assert _ids(tmp_path) == [1]


def test_batch_mode_writes_in_the_background_within_the_interval(tmp_path: Path) -> None:
    writer = AuditTrailWriter(root_path=tmp_path, durability="batch", flush_interval=0.05)
    writer.append_event(**sample_event(0))
    assert _ids(tmp_path) == []
    deadline = time.monotonic() + 5
    while not _ids(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _ids(tmp_path) == [1]
    writer.close()


def test_batch_mode_flushes_every_max_events_and_on_flush(tmp_path: Path) -> None:
    writer = AuditTrailWriter(
        root_path=tmp_path, durability="batch", flush_interval=60, flush_max_events=10
    )
    for i in range(12):
        writer.append_event(**sample_event(i))
    assert _ids(tmp_path) == list(range(1, 11))
    writer.flush()
    assert _ids(tmp_path) == list(range(1, 13))
    writer.close()


def test_batch_mode_flushes_at_interpreter_exit(tmp_path: Path) -> None:
    script = (
        "from trailstore import AuditTrailWriter\n"
        "from trailstore.testing import sample_event\n"
        f"writer = AuditTrailWriter(root_path={str(tmp_path)!r}, durability='batch',"
        " flush_interval=60)\n"
        "for i in range(5):\n"
        "    writer.append_event(**sample_event(i))\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert _ids(tmp_path) == [1, 2, 3, 4, 5]


def test_batch_ids_of_a_process_that_died_before_flushing_are_never_reused(
    tmp_path: Path,
) -> None:
    script = (
        "import os\n"
        "from trailstore import AuditTrailWriter\n"
        "from trailstore.testing import sample_event\n"
        f"writer = AuditTrailWriter(root_path={str(tmp_path)!r}, durability='batch',"
        " flush_interval=60)\n"
        "print([writer.append_event(**sample_event(i)).event_id for i in range(3)], flush=True)\n"
        "os._exit(0)  # dies before any flush: the three events are lost\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=True, timeout=60, text=True, capture_output=True
    )
    assert done.stdout.strip() == "[1, 2, 3]"
    with AuditTrailWriter(root_path=tmp_path) as writer:
        next_id = writer.append_event(**sample_event(3)).event_id
    assert next_id > 3  # IDs are reserved in blocks: the whole block stays spent
    reader = AuditTrailReader(root_path=tmp_path)
    assert [event.event_id for event in reader.iter_events()] == [next_id]
    assert reader.report.gaps == [(1, next_id - 1)]


def test_batch_appends_racing_close_are_kept_or_refused_and_release_the_trail(
    tmp_path: Path,
) -> None:
    writer = AuditTrailWriter(root_path=tmp_path, durability="batch", flush_interval=60)
    kept: list[int] = []
    refused: list[Exception] = []
    started = threading.Barrier(5)

    def append_until_closed() -> None:
        started.wait()
        for i in range(10_000):
            try:
                kept.append(writer.append_event(**sample_event(i)).event_id)
            except WriterClosedError as exc:
                refused.append(exc)
                return

    appenders = [threading.Thread(target=append_until_closed) for _ in range(4)]
    for thread in appenders:
        thread.start()
    started.wait()
    time.sleep(0.02)
    writer.close()
    for thread in appenders:
        thread.join()
    assert len(refused) == 4  # every appender was told, none slipped past close()

    def next_writer() -> None:
        with AuditTrailWriter(root_path=tmp_path) as successor:
            successor.append_event(**sample_event(0))

    successor = threading.Thread(target=next_writer)
    successor.start()
    successor.join(timeout=10)
    assert not successor.is_alive(), "the closed batch writer still holds the trail's lock"
    assert _ids(tmp_path) == [*sorted(kept), len(kept) + 1]
