"""Local faults (ENOSPC, EACCES, EIO injected into the file layer) and zombie writers.

A failed append must raise ``StorageError``, leave every segment parseable and byte-identical
to before, and spend no ID: the next successful append gets the ID the failed one would have.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest

from trailstore import AuditTrailReader, AuditTrailWriter, StorageError
from trailstore.backends import local
from trailstore.coordinators.local_lock import COUNTER_NAME
from trailstore.testing import sample_event

REAL_OPEN = os.open
REAL_WRITE = os.write


def _disk_full(*_: Any, **__: Any) -> NoReturn:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _denied(*_: Any, **__: Any) -> NoReturn:
    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))


def _snapshot(root: Path) -> dict[str, bytes]:
    """Every non-empty segment's bytes, by path (a rolled-back append may leave an empty one)."""
    segments = sorted(root.glob("*/*/audit-*.jsonl"))
    return {str(p.relative_to(root)): p.read_bytes() for p in segments if p.stat().st_size}


def _read(root: Path) -> tuple[list[int], AuditTrailReader]:
    reader = AuditTrailReader(root_path=root)
    return [event.event_id for event in reader.iter_events()], reader


def _assert_clean(root: Path, ids: list[int]) -> None:
    found, reader = _read(root)
    assert found == ids
    assert reader.report.clean, reader.report


def _fail_open_of(name: str, error: Callable[..., Any]) -> Callable[..., int]:
    def fake_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if Path(path).name == name:
            error()
        return REAL_OPEN(path, flags, *args, **kwargs)

    return fake_open


def test_failed_fdatasync_rolls_back_and_spends_no_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with AuditTrailWriter(root_path=tmp_path) as writer:
        writer.append_event(**sample_event(0))
        before = _snapshot(tmp_path)
        monkeypatch.setattr(os, "fdatasync", _disk_full)
        with pytest.raises(StorageError, match="No space left"):
            writer.append_events([sample_event(1), sample_event(2, category="refunds")])
        assert _snapshot(tmp_path) == before
        monkeypatch.undo()
        assert writer.append_event(**sample_event(3)).event_id == 2
    _assert_clean(tmp_path, [1, 2])


def test_failure_opening_the_next_segment_rolls_back_the_first_part_of_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with AuditTrailWriter(root_path=tmp_path) as probe:
        probe.append_event(**sample_event(0))
    line = len((tmp_path / "shop" / "orders" / "audit-000001.jsonl").read_bytes())
    with AuditTrailWriter(root_path=tmp_path, max_file_size_bytes=3 * line + 10) as writer:
        writer.append_event(**sample_event(1))
        before = _snapshot(tmp_path)
        monkeypatch.setattr(os, "open", _fail_open_of("audit-000002.jsonl", _denied))
        with pytest.raises(StorageError, match="Permission denied"):
            writer.append_events([sample_event(i) for i in range(2, 6)])  # 1 fits, 3 spill
        assert _snapshot(tmp_path) == before
        monkeypatch.undo()
        batch = writer.append_events([sample_event(i) for i in range(2, 6)])
    assert [event.event_id for event in batch] == [3, 4, 5, 6]
    assert sorted(_snapshot(tmp_path)) == [
        "shop/orders/audit-000001.jsonl",
        "shop/orders/audit-000002.jsonl",
    ]
    _assert_clean(tmp_path, [1, 2, 3, 4, 5, 6])


@pytest.mark.parametrize("where", ["write", "open"])
def test_failure_in_the_second_stream_of_a_batch_rolls_back_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    with AuditTrailWriter(root_path=tmp_path) as writer:
        writer.append_event(**sample_event(0, category="orders"))
        if where == "write":
            writer.append_event(**sample_event(0, category="refunds"))
        before = _snapshot(tmp_path)
        calls = 0

        def second_write_fails(fd: int, data: Any) -> int:
            nonlocal calls
            calls += 1
            if calls == 2:
                _disk_full()
            return REAL_WRITE(fd, data)

        if where == "write":
            monkeypatch.setattr(os, "write", second_write_fails)
        else:  # the second stream is new and its first segment cannot be created
            monkeypatch.setattr(os, "open", _fail_open_of("audit-000001.jsonl", _denied))
        batch = [sample_event(i, category=("orders", "refunds")[i % 2]) for i in range(4)]
        with pytest.raises(StorageError):
            writer.append_events(batch)
        assert _snapshot(tmp_path) == before
        monkeypatch.undo()
        first_id = len(before) + 1
        assert writer.append_events(batch)[0].event_id == first_id
    _assert_clean(tmp_path, list(range(1, first_id + 4)))


def test_failed_index_refresh_keeps_the_commit_and_the_next_open_reconciles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``index.json`` is a checkpoint of a counter the data already holds: failing to refresh
    it is logged, and the append it followed stands."""
    monkeypatch.setattr(local, "INDEX_REFRESH_SECONDS", 0.0)
    with AuditTrailWriter(root_path=tmp_path) as writer:
        writer.append_event(**sample_event(0))
        monkeypatch.setattr(os, "replace", _disk_full)
        assert writer.append_event(**sample_event(1)).event_id == 2
        monkeypatch.undo()
        assert writer.append_event(**sample_event(2)).event_id == 3
    assert "cannot update" in caplog.text and "No space left" in caplog.text
    _assert_clean(tmp_path, [1, 2, 3])


def test_unwritable_index_while_rebuilding_a_garbled_counter_still_rebuilds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with AuditTrailWriter(root_path=tmp_path) as writer:
        writer.append_event(**sample_event(0))
        (tmp_path / COUNTER_NAME).write_bytes(b"garbage")
        monkeypatch.setattr(os, "replace", _denied)
        assert writer.append_event(**sample_event(1)).event_id == 2
        monkeypatch.undo()
        assert writer.append_event(**sample_event(2)).event_id == 3
    _assert_clean(tmp_path, [1, 2, 3])


def test_unwritable_index_at_open_and_close_leaves_it_lagging_not_the_trail_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    AuditTrailWriter(root_path=tmp_path).close()
    (tmp_path / "index.json").unlink()
    monkeypatch.setattr(os, "replace", _disk_full)
    writer = AuditTrailWriter(root_path=tmp_path)
    writer.append_event(**sample_event(0))
    writer.close()
    assert not (tmp_path / "index.json").exists()
    monkeypatch.undo()
    AuditTrailWriter(root_path=tmp_path).close()
    assert (tmp_path / "index.json").read_text() == '{"last_event_id": 1}'
    _assert_clean(tmp_path, [1])


def test_failure_to_open_the_trail_is_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "open", _fail_open_of(tmp_path.name, _denied))
    with pytest.raises(StorageError, match="Permission denied"):
        AuditTrailWriter(root_path=tmp_path)


def test_rollback_that_cannot_truncate_gives_up_the_ids_instead_of_reusing_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk full after the first of two lines, then the truncation fails too: the line that
    stays must keep its ID to itself."""
    writer = AuditTrailWriter(root_path=tmp_path)
    writer.append_event(**sample_event(0))

    def first_line_then_disk_full(fd: int, data: Any) -> int:
        REAL_WRITE(fd, bytes(data)[: bytes(data).index(b"\n") + 1])
        _disk_full()

    monkeypatch.setattr(os, "write", first_line_then_disk_full)
    monkeypatch.setattr(os, "ftruncate", lambda *_: _disk_full())
    with pytest.raises(StorageError):
        writer.append_events([sample_event(1), sample_event(2)])
    monkeypatch.undo()
    assert writer.append_event(**sample_event(3)).event_id == 4
    writer.close()
    found, reader = _read(tmp_path)
    assert found == [1, 2, 4]  # 2 was written but not acknowledged; 3 is a reported gap
    assert reader.report.gaps == [(3, 3)]
    assert reader.report.malformed_lines == reader.report.torn_lines == 0


# -- batch durability: the failure surfaces on the next call -------------------------------------


def test_batch_flush_failure_raises_from_flush_and_keeps_the_handed_out_ids_spent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = AuditTrailWriter(root_path=tmp_path, durability="batch", flush_interval=60)
    writer.append_event(**sample_event(0))
    writer.flush()
    before = _snapshot(tmp_path)
    for i in range(3):
        writer.append_event(**sample_event(i, category=("orders", "refunds")[i % 2]))
    monkeypatch.setattr(os, "fdatasync", _disk_full)
    with pytest.raises(StorageError, match="No space left"):
        writer.flush()
    assert _snapshot(tmp_path) == before
    monkeypatch.undo()
    assert writer.append_event(**sample_event(4)).event_id == 5  # 2..4 were handed out, lost
    writer.close()
    found, reader = _read(tmp_path)
    assert found == [1, 5]
    assert reader.report.gaps == [(2, 4)]


def test_background_flush_failure_raises_from_the_next_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempted = threading.Event()

    def disk_full_once_seen(fd: int) -> None:
        attempted.set()
        _disk_full()

    writer = AuditTrailWriter(root_path=tmp_path, durability="batch", flush_interval=0.05)
    monkeypatch.setattr(os, "fdatasync", disk_full_once_seen)
    writer.append_event(**sample_event(0))
    assert attempted.wait(10)
    time.sleep(0.05)  # let the flusher finish its rollback and record the error
    monkeypatch.undo()
    with pytest.raises(StorageError, match="No space left"):
        writer.append_event(**sample_event(1))
    assert writer.append_event(**sample_event(2)).event_id == 2  # 1 was handed out, lost
    writer.close()
    found, reader = _read(tmp_path)
    assert found == [2]
    assert reader.report.gaps == [(1, 1)]


def test_batch_failure_at_close_raises_from_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = AuditTrailWriter(root_path=tmp_path, durability="batch", flush_interval=60)
    writer.append_event(**sample_event(0))
    monkeypatch.setattr(os, "fdatasync", _disk_full)
    with pytest.raises(StorageError, match="No space left"):
        writer.close()
    monkeypatch.undo()
    found, reader = _read(tmp_path)
    assert found == []
    assert reader.report.gaps == [(1, 1)]


# -- zombie writers ---------------------------------------------------------------------------

ZOMBIE = """
import os, signal, sys
from trailstore import AuditTrailWriter
from trailstore.store import appending
from trailstore.testing import sample_event

real_write_all = appending.write_all

def pause_once(fd, data):
    appending.write_all = real_write_all
    print("paused", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)  # counter advanced, lock held, nothing written yet
    real_write_all(fd, data)

writer = AuditTrailWriter(root_path=sys.argv[1], max_file_size_bytes=700)
writer.append_event(**sample_event(0))
appending.write_all = pause_once
print(writer.append_event(**sample_event(1, logical_user_id="zombie")).event_id, flush=True)
writer.close()
"""


@pytest.mark.parametrize("fate", ["resumed", "killed"])
def test_writer_paused_inside_a_commit_cannot_be_overtaken(tmp_path: Path, fate: str) -> None:
    zombie = subprocess.Popen(
        [sys.executable, "-c", ZOMBIE, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert zombie.stdout is not None
    assert zombie.stdout.readline() == "paused\n"
    returned: list[int] = []

    def other_writer() -> None:
        with AuditTrailWriter(root_path=tmp_path, max_file_size_bytes=700) as writer:
            returned.extend(writer.append_event(**sample_event(i)).event_id for i in range(5))

    thread = threading.Thread(target=other_writer)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive() and not returned  # waits for the paused writer's lock
    if fate == "resumed":
        zombie.send_signal(signal.SIGCONT)
        assert zombie.stdout.readline() == "2\n"
    else:
        zombie.kill()
    zombie.wait()
    zombie.stdout.close()
    thread.join(30)
    assert returned == [3, 4, 5, 6, 7]
    found, reader = _read(tmp_path)
    assert found == ([1, 2, 3, 4, 5, 6, 7] if fate == "resumed" else [1, 3, 4, 5, 6, 7])
    assert reader.report.gaps == ([] if fate == "resumed" else [(2, 2)])
    assert reader.report.malformed_lines == reader.report.torn_lines == 0


STALE_WRITER = """
import sys
from trailstore import AuditTrailWriter
from trailstore.testing import sample_event

with AuditTrailWriter(root_path=sys.argv[1], max_file_size_bytes=700) as writer:
    for i in range(30):
        writer.append_event(**sample_event(i, category=("orders", "refunds")[i % 2]))
"""


def test_writer_idle_while_another_process_rotates_overwrites_nothing(tmp_path: Path) -> None:
    limit = 700
    stale = AuditTrailWriter(root_path=tmp_path, max_file_size_bytes=limit)
    stale.append_event(**sample_event(0))
    stale.append_event(**sample_event(1, category="refunds"))
    subprocess.run([sys.executable, "-c", STALE_WRITER, str(tmp_path)], check=True, timeout=60)
    before = _snapshot(tmp_path)
    ids = [stale.append_event(**sample_event(i)).event_id for i in range(4)]
    stale.close()
    assert ids == [33, 34, 35, 36]
    after = _snapshot(tmp_path)
    for name, data in before.items():
        assert after[name].startswith(data)  # appended to, never rewritten
    assert all(len(data) <= limit for data in after.values())
    _assert_clean(tmp_path, list(range(1, 37)))


# -- a group commit leader interrupted (KeyboardInterrupt / SystemExit from a signal handler) ---


def test_interrupted_group_leader_fails_its_followers_instead_of_acknowledging_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = AuditTrailWriter(root_path=tmp_path)
    real_commit = local._LocalSession.commit
    first_inside, release_first = threading.Event(), threading.Event()
    commits = 0

    def commit(session: local._LocalSession, *, sync: bool) -> int:
        nonlocal commits
        commits += 1
        if commits == 1:  # hold the first group while two more callers queue up
            first_inside.set()
            release_first.wait(10)
        elif commits == 2:  # the next leader is interrupted, e.g. by a SIGTERM handler
            session.abort()
            raise SystemExit(1)
        return real_commit(session, sync=sync)

    monkeypatch.setattr(local._LocalSession, "commit", commit)
    outcomes: dict[str, object] = {}

    def append(name: str) -> None:
        try:
            outcomes[name] = writer.append_event(**sample_event(0)).event_id
        except BaseException as exc:
            outcomes[name] = exc

    first = threading.Thread(target=append, args=("first",))
    first.start()
    assert first_inside.wait(10)
    queued = [threading.Thread(target=append, args=(name,)) for name in ("a", "b")]
    for thread in queued:
        thread.start()
    time.sleep(0.2)  # both are queued behind the first group
    release_first.set()
    for thread in [first, *queued]:
        thread.join(10)
    assert outcomes["first"] == 1
    kinds = sorted(type(outcomes[name]).__name__ for name in ("a", "b"))
    assert kinds == ["AuditTrailError", "SystemExit"]  # the follower fails, the leader exits
    assert writer.append_event(**sample_event(1)).event_id == 2
    writer.close()
    _assert_clean(tmp_path, [1, 2])


def test_lock_file_that_cannot_be_opened_is_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "open", _fail_open_of(COUNTER_NAME, _denied))
    with pytest.raises(StorageError, match="Permission denied"):
        AuditTrailWriter(root_path=tmp_path)


def test_stream_directory_that_cannot_be_created_is_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with AuditTrailWriter(root_path=tmp_path) as writer:
        writer.append_event(**sample_event(0))
        monkeypatch.setattr(os, "mkdir", _denied)
        with pytest.raises(StorageError, match="Permission denied"):
            writer.append_events([sample_event(1), sample_event(2, domain="billing")])
        monkeypatch.undo()
        assert writer.append_event(**sample_event(3, domain="billing")).event_id == 2
    _assert_clean(tmp_path, [1, 2])
