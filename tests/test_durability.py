"""Durability modes: group commit, batch flushing, flush at interpreter exit."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from audittrail import AuditTrailReader, AuditTrailWriter
from audittrail.backends import local
from audittrail.testing import sample_event


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

    monkeypatch.setattr(local.os, "fdatasync", counting_fdatasync)
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
    monkeypatch.setattr(local.os, "fdatasync", calls.append)
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
        "from audittrail import AuditTrailWriter\n"
        "from audittrail.testing import sample_event\n"
        f"writer = AuditTrailWriter(root_path={str(tmp_path)!r}, durability='batch',"
        " flush_interval=60)\n"
        "for i in range(5):\n"
        "    writer.append_event(**sample_event(i))\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert _ids(tmp_path) == [1, 2, 3, 4, 5]
