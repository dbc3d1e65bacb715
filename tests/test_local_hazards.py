"""What an operator, another program or a hostile user can do to a local trail under a running
writer: delete the lock file, replace the open segment, plant symlinks, make a stream
unreadable, turn ``index.json`` into a directory, leave a huge damaged line, add files that
alias segment numbers, fork a writer that threads then share."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from trailstore import AuditTrailReader, AuditTrailWriter, StorageError
from trailstore.backends import local
from trailstore.coordinators.local_lock import COUNTER_NAME
from trailstore.store.appending import TORN_SUFFIX
from trailstore.testing import sample_event


def _ids(root: Path) -> tuple[list[int], AuditTrailReader]:
    reader = AuditTrailReader(root_path=root)
    return [event.event_id for event in reader.iter_events()], reader


def _append_in_a_new_process(root: Path) -> subprocess.Popen[str]:
    """A writer process that opens the trail, appends one event and prints its ID."""
    script = textwrap.dedent(
        f"""
        from trailstore import AuditTrailWriter
        from trailstore.testing import sample_event
        with AuditTrailWriter(root_path={str(root)!r}) as writer:
            print(writer.append_event(**sample_event(0)).event_id)
        """
    )
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)


# -- 1. the lock file deleted while writers run ------------------------------------------------


def test_lock_file_deleted_under_a_batch_writer_does_not_hand_its_ids_out_again(
    tmp_path: Path,
) -> None:
    batch = AuditTrailWriter(
        root_path=tmp_path, durability="batch", flush_interval=30, flush_max_events=10_000
    )
    handed_out = [batch.append_event(**sample_event(i)).event_id for i in range(3)]
    (tmp_path / COUNTER_NAME).unlink()
    newcomer = _append_in_a_new_process(tmp_path)
    time.sleep(0.5)  # the newcomer is waiting for the trail, or has already (wrongly) written
    batch.close()
    out, _ = newcomer.communicate(timeout=60)
    assert handed_out == [1, 2, 3]
    assert int(out) == 4
    ids, reader = _ids(tmp_path)
    assert ids == [1, 2, 3, 4] and reader.report.clean


def _delete_lock_repeatedly(root: Path, times: int, stop: threading.Event) -> int:
    deleted = 0
    while deleted < times and not stop.is_set():
        try:
            (root / COUNTER_NAME).unlink()
            deleted += 1
        except FileNotFoundError:
            pass
        time.sleep(0.005)
    return deleted


@pytest.mark.parametrize(
    "rounds", [pytest.param(2, id="short"), pytest.param(12, id="long", marks=pytest.mark.slow)]
)
def test_lock_file_deleted_again_and_again_under_live_writers_never_duplicates_an_id(
    tmp_path: Path, rounds: int
) -> None:
    """Long-lived writer processes and short-lived ones (open, append, close) append while
    the lock file is deleted 120 times per round."""
    script = textwrap.dedent(
        """
        import sys
        from trailstore import AuditTrailWriter
        from trailstore.testing import sample_event
        root, count, reopen = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
        writer = AuditTrailWriter(root_path=root, max_file_size_bytes=3000)
        for i in range(count):
            if reopen:
                writer.close()
                writer = AuditTrailWriter(root_path=root, max_file_size_bytes=3000)
            print(writer.append_event(**sample_event(i, category=f"c{i % 3}")).event_id)
        writer.close()
        """
    )
    acknowledged: list[int] = []
    for _ in range(rounds):
        writers = [
            subprocess.Popen(
                [sys.executable, "-c", script, str(tmp_path), str(count), reopen],
                stdout=subprocess.PIPE,
                text=True,
            )
            for count, reopen in (("150", "0"), ("150", "0"), ("40", "1"), ("40", "1"))
        ]
        stop = threading.Event()
        deleter = threading.Thread(target=_delete_lock_repeatedly, args=(tmp_path, 120, stop))
        deleter.start()
        try:
            for writer in writers:
                out, _ = writer.communicate(timeout=120)
                assert writer.returncode == 0
                acknowledged += [int(line) for line in out.split()]
        finally:
            stop.set()
            deleter.join()
    assert len(acknowledged) == len(set(acknowledged)) == rounds * 380
    ids, reader = _ids(tmp_path)
    assert ids == sorted(acknowledged) == list(range(1, rounds * 380 + 1))
    assert reader.report.clean


# -- 7. the open segment replaced under a running writer ---------------------------------------


@pytest.mark.parametrize("how", ["deleted", "renamed", "replaced-by-a-copy"])
def test_open_segment_replaced_under_a_writer_gets_the_next_events_in_the_trail(
    tmp_path: Path, how: str
) -> None:
    writer = AuditTrailWriter(root_path=tmp_path)
    writer.append_event(**sample_event(0))
    segment = tmp_path / "shop" / "orders" / "audit-000001.jsonl"
    if how == "deleted":
        segment.unlink()
    elif how == "renamed":
        segment.rename(tmp_path / "saved.jsonl")
    else:
        copy = tmp_path / "copy.jsonl"
        shutil.copyfile(segment, copy)
        copy.replace(segment)
    later = [writer.append_event(**sample_event(i)).event_id for i in (1, 2)]
    writer.close()
    ids, reader = _ids(tmp_path)
    assert later == [2, 3]
    assert ids == ([1, 2, 3] if how == "replaced-by-a-copy" else [2, 3])
    assert reader.report.gaps == ([] if how == "replaced-by-a-copy" else [(1, 1)])


def test_open_segment_replaced_by_a_directory_is_refused_before_acknowledging(
    tmp_path: Path,
) -> None:
    writer = AuditTrailWriter(root_path=tmp_path)
    writer.append_event(**sample_event(0))
    segment = tmp_path / "shop" / "orders" / "audit-000001.jsonl"
    segment.unlink()
    segment.mkdir()
    with pytest.raises(StorageError, match=r"audit-000001\.jsonl"):
        writer.append_event(**sample_event(1))
    segment.rmdir()
    assert writer.append_event(**sample_event(2)).event_id == 2
    writer.close()
    assert _ids(tmp_path)[0] == [2]


# -- 8. a writer created before fork() and used from several threads in the child -------------


@pytest.mark.parametrize("durability", ["fsync", "flush", "batch"])
def test_forked_writer_used_at_once_from_several_threads_of_the_child(
    tmp_path: Path, durability: str
) -> None:
    writer = AuditTrailWriter(root_path=tmp_path, durability=durability, max_file_size_bytes=4000)
    writer.append_event(**sample_event(0))
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            acknowledged: list[int] = []
            errors: list[BaseException] = []
            start = threading.Barrier(6)

            def work(thread: int) -> None:
                start.wait()  # the first appends of the child race each other
                try:
                    for i in range(40):
                        event = writer.append_event(**sample_event(i, category=f"t{thread}"))
                        acknowledged.append(event.event_id)
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            writer.close()
            os.write(write_end, json.dumps([acknowledged, [repr(e) for e in errors]]).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        deadline = time.monotonic() + 60
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            assert time.monotonic() < deadline, "the child hangs"
            time.sleep(0.05)
        acknowledged, errors = json.loads(pipe.read() or '[[], ["the child died"]]')
    writer.close()
    assert errors == []
    ids, reader = _ids(tmp_path)
    assert sorted(acknowledged) == ids[1:] and len(acknowledged) == 240
    assert ids == list(range(1, 242)) and reader.report.clean


# -- 9. symlinks below the root ----------------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    place = tmp_path / "outside"
    place.mkdir()
    (place / "precious.txt").write_text("keep me\npartial line without newline")
    yield place


def _untouched(outside: Path) -> bool:
    return sorted(p.name for p in outside.iterdir()) == ["precious.txt"] and (
        (outside / "precious.txt").read_text() == "keep me\npartial line without newline"
    )


@pytest.mark.parametrize("link", ["shop", "shop/orders"])
def test_a_symlinked_stream_directory_is_refused(tmp_path: Path, outside: Path, link: str) -> None:
    root = tmp_path / "trail"
    (root / link).parent.mkdir(parents=True, exist_ok=True)
    (root / link).symlink_to(outside, target_is_directory=True)
    with AuditTrailWriter(root_path=root) as writer:
        with pytest.raises(StorageError, match=f"{root / link}.*symbolic link"):
            writer.append_event(**sample_event(0))
        assert writer.append_event(**sample_event(1, domain="billing")).event_id == 1
    assert _untouched(outside)


def test_a_symlinked_segment_is_neither_repaired_nor_appended_to(
    tmp_path: Path, outside: Path
) -> None:
    root = tmp_path / "trail"
    with AuditTrailWriter(root_path=root) as writer:
        writer.append_event(**sample_event(0))
    stream = root / "shop" / "orders"
    (stream / "audit-000001.jsonl").rename(stream / "kept.jsonl")
    (stream / "audit-000001.jsonl").symlink_to(outside / "precious.txt")
    with pytest.raises(StorageError, match=r"audit-000001\.jsonl.*symbolic link"):
        AuditTrailWriter(root_path=root)
    assert _untouched(outside)
    reader = AuditTrailReader(root_path=root)
    assert list(reader.iter_events()) == []
    assert reader.report.missing_segments == 1


@pytest.mark.parametrize("name", [COUNTER_NAME, "index.json"])
def test_a_symlinked_lock_file_or_index_is_never_written_through(
    tmp_path: Path, outside: Path, name: str
) -> None:
    root = tmp_path / "trail"
    root.mkdir()
    (root / name).symlink_to(outside / "precious.txt")
    try:
        with AuditTrailWriter(root_path=root) as writer:
            writer.append_event(**sample_event(0))
    except StorageError as exc:
        assert name in str(exc) and "symbolic link" in str(exc)
    assert _untouched(outside)


def test_a_root_that_is_a_symlink_is_followed(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    with AuditTrailWriter(root_path=tmp_path / "link") as writer:
        writer.append_event(**sample_event(0))
    assert _ids(tmp_path / "real")[0] == [1]


# -- 11. a stream directory that cannot be listed ----------------------------------------------


def _read_unprivileged(root: Path) -> tuple[list[int], int, list[tuple[int, int]]]:
    """Read the trail in a forked child that gave up root (root may list anything)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            reader = AuditTrailReader(root_path=root)
            ids = [event.event_id for event in reader.iter_events()]
            report = [ids, reader.report.unreadable_streams, reader.report.gaps]
            os.write(write_end, json.dumps(report).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        found = pipe.read()
    assert os.waitpid(pid, 0)[1] == 0
    ids, unreadable, gaps = json.loads(found)
    return ids, unreadable, [tuple(gap) for gap in gaps]


def test_an_unlistable_stream_is_reported_and_the_others_are_read() -> None:
    """Mode 000 on one stream directory, read by an unprivileged user."""
    place = Path(tempfile.mkdtemp(prefix="trailstore-perm-"))
    try:
        place.chmod(0o755)
        with AuditTrailWriter(root_path=place) as writer:
            for i in range(6):
                writer.append_event(**sample_event(i, category=("orders", "refunds")[i % 2]))
        for path in place.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        (place / "shop" / "refunds").chmod(0)
        ids, unreadable, gaps = _read_unprivileged(place)
        assert ids == [1, 3, 5] and unreadable == 1
        assert gaps == [(2, 2), (4, 4), (6, 6)]
    finally:
        (place / "shop" / "refunds").chmod(0o755)
        shutil.rmtree(place)


# -- 12. a directory named index.json ----------------------------------------------------------


def test_a_directory_named_index_json_does_not_stop_appends_or_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(local, "INDEX_REFRESH_SECONDS", 0.0)
    with AuditTrailWriter(root_path=tmp_path) as writer:
        writer.append_event(**sample_event(0))
        (tmp_path / "index.json").unlink()
        (tmp_path / "index.json").mkdir()
        returned = [writer.append_event(**sample_event(i)).event_id for i in range(1, 4)]
    assert returned == [2, 3, 4]
    assert _ids(tmp_path)[0] == [1, 2, 3, 4]
    assert "index.json" in caplog.text


# -- 13. bounded memory whatever the damage ----------------------------------------------------

HUGE = 100 * 1024 * 1024


def _peak_mb(work: object) -> float:
    tracemalloc.start()
    try:
        work()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("ended", [False, True], ids=["torn-tail", "malformed-line"])
def test_a_100_mb_damaged_line_costs_bounded_memory_to_read_and_repair(
    tmp_path: Path, ended: bool
) -> None:
    with AuditTrailWriter(root_path=tmp_path) as writer:
        writer.append_event(**sample_event(0))
    segment = tmp_path / "shop" / "orders" / "audit-000001.jsonl"
    with segment.open("ab") as out:
        block = b'{"event_id":2,"x":"' + b"y" * (1024 * 1024)
        for _ in range(HUGE // len(block)):
            out.write(block)
        if ended:
            out.write(b"\n")
    reader = AuditTrailReader(root_path=tmp_path)
    assert _peak_mb(lambda: list(reader.iter_events())) < 40
    assert reader.report.torn_lines + reader.report.malformed_lines == 1
    assert _peak_mb(lambda: AuditTrailWriter(root_path=tmp_path).close()) < 40
    if not ended:  # the torn bytes were moved aside whole, not lost
        torn = segment.with_name(segment.name + TORN_SUFFIX)
        assert torn.stat().st_size == HUGE // len(block) * len(block) + 1


# -- 14. files that alias a segment number; duplicates anywhere --------------------------------


def test_a_foreign_file_aliasing_a_segment_number_is_not_read_as_that_segment(
    tmp_path: Path,
) -> None:
    with AuditTrailWriter(root_path=tmp_path, max_file_size_bytes=700) as writer:
        for i in range(9):
            writer.append_event(**sample_event(i))
    stream = tmp_path / "shop" / "orders"
    (stream / "audit-0000001.jsonl").write_bytes(b"")
    shutil.copyfile(stream / "audit-000002.jsonl", stream / "audit-0000002.jsonl")
    ids, reader = _ids(tmp_path)
    assert ids == list(range(1, 10)) and reader.report.clean


def test_duplicates_are_counted_even_when_they_are_not_adjacent(tmp_path: Path) -> None:
    with AuditTrailWriter(root_path=tmp_path, max_file_size_bytes=700) as writer:
        for i in range(9):
            writer.append_event(**sample_event(i, category=("orders", "refunds")[i % 3 == 2]))
    stream = tmp_path / "shop" / "orders"
    segments = sorted(stream.glob("audit-*.jsonl"))
    copied = stream / f"audit-{len(segments) + 1:06d}.jsonl"
    shutil.copyfile(segments[0], copied)  # its IDs again, after later ones
    copied_ids = [json.loads(line)["event_id"] for line in copied.read_text().splitlines()]
    ids, reader = _ids(tmp_path)
    assert sorted(set(ids)) == list(range(1, 10))
    assert reader.report.duplicate_ids == len(copied_ids) >= 2
    assert reader.report.gaps == []


# -- closing and the lock --------------------------------------------------------------------


def _lock_is_free(root: Path) -> bool:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def test_close_releases_the_lock_though_a_forked_child_still_holds_its_descriptor(
    tmp_path: Path,
) -> None:
    """A worker forked while the writer was open (and never using it) must not keep the trail
    locked once the parent closed its writer."""
    writer = AuditTrailWriter(root_path=tmp_path)
    writer.append_event(**sample_event(0))
    child = os.fork()
    if child == 0:  # pragma: no cover - the child only sleeps
        time.sleep(3)
        os._exit(0)
    try:
        writer.close()
        assert _lock_is_free(tmp_path), "the trail stayed locked after close()"
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def test_a_writer_writes_into_the_directory_it_locks_after_the_root_is_replaced(
    tmp_path: Path,
) -> None:
    """A root renamed away and made again after a writer opened it: that writer keeps to the
    directory it locks, so the new trail never gets a second writer's copy of its IDs."""
    root = tmp_path / "trail"
    with AuditTrailWriter(root_path=root):
        pass  # a trail with index.json and no stream yet
    first = AuditTrailWriter(root_path=root)
    first._backend.open_for_writing()
    root.rename(tmp_path / "trail.old")
    with AuditTrailWriter(root_path=root) as second:
        second.append_event(**sample_event(0))
        first.append_event(**sample_event(1))
        second.append_event(**sample_event(2))
    first.close()
    ids, _ = _ids(root)
    assert ids == [1, 2]
    assert _ids(tmp_path / "trail.old")[0] == [1]


def test_a_failed_close_releases_every_descriptor_and_a_second_close_touches_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def open_descriptors() -> set[int]:
        return {int(name) for name in os.listdir("/proc/self/fd")}

    before = open_descriptors()
    writer = AuditTrailWriter(root_path=tmp_path, durability="flush")
    for number, domain in enumerate(["a", "b", "c"]):
        writer.append_event(**sample_event(number, domain=domain))
    real_fsync = os.fsync

    def directories_fail(fd: int) -> None:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EIO, "directory sync failed")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", directories_fail)
    with pytest.raises(StorageError):
        writer.close()
    monkeypatch.setattr(os, "fsync", real_fsync)
    leaked = open_descriptors() - before
    assert not leaked, f"descriptors left open: {sorted(leaked)}"
    assert not [t for t in threading.enumerate() if t.name.startswith("trailstore-sync")]
    mine = [os.open(tmp_path / f"app-{number}", os.O_RDWR | os.O_CREAT) for number in range(8)]
    try:
        writer._backend.close()
        for fd in mine:
            os.fstat(fd)  # EBADF if the second close closed a descriptor it no longer owns
    finally:
        for fd in mine:
            os.close(fd)
