"""``AsyncAuditTrailWriter``: the synchronous writer's events, errors and durability, from
coroutines, with the event loop never waiting on storage. Each test runs its own loop with
``asyncio.run``; a slow disk is ``os.fsync``/``os.fdatasync`` that sleep after syncing."""

from __future__ import annotations

import asyncio
import errno
import functools
import inspect
import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn

import pytest

import trailstore
from trailstore import (
    AuditEvent,
    AuditTrailReader,
    AuditTrailWriter,
    ConfigurationError,
    DurabilityName,
    InvalidEventError,
    InvalidNameError,
    StorageError,
    TrailNotFoundError,
    WriterClosedError,
)
from trailstore.aio import AsyncAuditTrailReader, AsyncAuditTrailWriter
from trailstore.testing import sample_event

SLOW_SYNC = 0.05


class SlowDisk:
    """``os.fsync`` and ``os.fdatasync`` that take ``delay`` longer, recording who synced."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, delay: float = SLOW_SYNC) -> None:
        self.delay = delay
        self.threads: set[int] = set()
        self.syncing = threading.Event()
        self.completed = 0
        self._lock = threading.Lock()
        for name in ("fsync", "fdatasync"):
            monkeypatch.setattr(os, name, self._slow(getattr(os, name)))

    def _slow(self, real: Callable[[int], None]) -> Callable[[int], None]:
        def sync(fd: int) -> None:
            self.threads.add(threading.get_ident())
            self.syncing.set()
            real(fd)
            time.sleep(self.delay)
            with self._lock:
                self.completed += 1

        return sync


class Heartbeat:
    """A task that wakes every ``interval`` seconds and records how late each wake-up was."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.lateness: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _beat(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.lateness.append(time.perf_counter() - before - self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._beat())

    async def stop(self) -> None:
        assert self._task is not None
        await asyncio.sleep(self.interval * 2)  # a stall just before stop is counted
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    @property
    def worst(self) -> float:
        return max(self.lateness)


def run(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(main())


async def _until(event: threading.Event) -> None:
    while not event.is_set():
        await asyncio.sleep(0.001)


def _read(root: Path | str) -> list[AuditEvent]:
    return list(AuditTrailReader(root_path=root).iter_events())


def _ids(root: Path | str) -> list[int]:
    return [event.event_id for event in _read(root)]


# -- the same API as the synchronous writer ----------------------------------------------------


@pytest.mark.parametrize("method", ["append_event", "append_events"])
def test_append_signatures_are_the_synchronous_writers(method: str) -> None:
    synchronous = inspect.signature(getattr(AuditTrailWriter, method))
    asynchronous = inspect.signature(getattr(AsyncAuditTrailWriter, method))
    assert asynchronous == synchronous
    assert inspect.iscoroutinefunction(getattr(AsyncAuditTrailWriter, method))


def test_settings_are_the_synchronous_writers_and_max_workers() -> None:
    synchronous = dict(inspect.signature(AuditTrailWriter).parameters)
    asynchronous = dict(inspect.signature(AsyncAuditTrailWriter).parameters)
    assert asynchronous.pop("max_workers").default == 4
    assert asynchronous == synchronous


def test_the_package_exports_the_async_writer() -> None:
    assert trailstore.AsyncAuditTrailWriter is AsyncAuditTrailWriter
    assert "AsyncAuditTrailWriter" in trailstore.__all__


ASYNC_USAGE = """
from trailstore import AsyncAuditTrailWriter, AuditEvent
from trailstore.aio import AsyncAuditTrailReader

async def main() -> list[AuditEvent]:
    async with AsyncAuditTrailWriter(root_path="memory://t", durability="batch") as writer:
        await writer.append_event(domain="d", category="c", model_name="M", operation="create",
                                  logical_user_id="u")
        await writer.append_event(domain="d", category="c", model_name="M", operation="crete",
                                  logical_user_id="u")
    AsyncAuditTrailWriter(root_path="memory://t", durability="fsnyc")
    reader = AsyncAuditTrailReader(root_path="memory://t")
    recent: list[AuditEvent] = await reader.tail(3, categories="c")
    async for line in reader.iter_lines(domains="d"):
        line.decode()
    return [event async for event in reader.iter_events(min_event_id=2, colour="red")] + recent
"""


def test_the_async_api_type_checks_as_the_synchronous_one(tmp_path: Path) -> None:
    """Typos in operation, durability and reader filters are type errors, as in the
    synchronous API: the reader's methods are typed from the synchronous reader's."""
    module = tmp_path / "usage.py"
    module.write_text(ASYNC_USAGE)
    command = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(module)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    errors = [line for line in result.stdout.splitlines() if ": error: " in line]
    assert [line.split(":")[1] for line in errors] == ["9", "11", "16"], result.stdout
    assert 'Argument "operation" to "append_event"' in errors[0]
    assert 'Argument "durability" to "AsyncAuditTrailWriter"' in errors[1]
    assert 'Unexpected keyword argument "colour"' in errors[2]


@pytest.mark.parametrize("max_workers", [0, -1, 1.5, True, None])
def test_max_workers_must_be_a_positive_int(max_workers: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_workers"):
        AsyncAuditTrailWriter(root_path="memory://aio-workers", max_workers=max_workers)


# -- (1) concurrent appends ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("storage", "durability"), [("local", "fsync"), ("local", "batch"), ("memory", "fsync")]
)
def test_concurrent_tasks_get_unique_gap_free_ids_that_read_back(
    tmp_path: Path, storage: str, durability: DurabilityName
) -> None:
    root = str(tmp_path) if storage == "local" else f"memory://aio-{tmp_path.name}"
    categories = itertools.cycle(["orders", "refunds", "invoices"])

    async def task(writer: AsyncAuditTrailWriter, number: int) -> list[list[AuditEvent]]:
        calls = []
        for call in range(3):
            if (number + call) % 2:
                batch = [sample_event(number, category=next(categories)) for _ in range(3)]
                calls.append(await writer.append_events(batch))
            else:
                event = sample_event(number, category=next(categories))
                calls.append([await writer.append_event(**event)])
        return calls

    async def main() -> list[list[AuditEvent]]:
        async with AsyncAuditTrailWriter(
            root_path=root, durability=durability, max_file_size_bytes=4096
        ) as writer:
            results = await asyncio.gather(*(task(writer, n) for n in range(200)))
        return [call for calls in results for call in calls]

    calls = run(main)
    returned = sorted((event for call in calls for event in call), key=lambda e: e.event_id)
    assert [event.event_id for event in returned] == list(range(1, 1201))
    for call in calls:  # each append_events is one contiguous batch
        ids = [event.event_id for event in call]
        assert ids == list(range(ids[0], ids[0] + len(ids)))
    reader = AuditTrailReader(root_path=root)
    assert list(reader.iter_events()) == returned
    assert reader.report.clean


def test_concurrent_fsync_appends_share_syncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """64 tasks appending at once on a 50 ms disk wait for about one sync, not 64, and not
    one per worker thread either."""

    async def main() -> tuple[int, float]:
        async with AsyncAuditTrailWriter(root_path=tmp_path, checkpoints=False) as writer:
            await writer.append_event(**sample_event(0))  # creates the stream and its segment
            disk = SlowDisk(monkeypatch)
            began = time.perf_counter()
            await asyncio.gather(*(writer.append_event(**sample_event(n)) for n in range(64)))
            return disk.completed, time.perf_counter() - began

    syncs, seconds = run(main)
    assert syncs <= 2
    assert seconds < 4 * SLOW_SYNC
    assert _ids(tmp_path) == list(range(1, 66))


# -- (2) the loop never waits ----------------------------------------------------------------


@pytest.mark.timing
def test_the_event_loop_keeps_running_while_storage_is_slow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Open, three waves of 40 concurrent appends, flush and close on a disk whose syncs take
    50 ms, with another writer of the trail holding its lock in a thread: the loop never syncs
    and its heartbeat is never late by more than a fraction of one sync. Calling the
    synchronous writer on the loop instead stalls it for a whole sync (the harness sees it)."""
    disk = SlowDisk(monkeypatch)
    rival_appending, rival_stop = threading.Event(), threading.Event()

    def rival() -> None:
        with AuditTrailWriter(root_path=tmp_path, checkpoints=False) as writer:
            while not rival_stop.is_set():
                writer.append_event(**sample_event(0, category="rival"))
                rival_appending.set()

    async def main() -> tuple[Heartbeat, Heartbeat, set[int], int]:
        rival_thread = threading.Thread(target=rival)
        rival_thread.start()
        await _until(rival_appending)
        heartbeat = Heartbeat()
        heartbeat.start()
        try:
            async with AsyncAuditTrailWriter(root_path=tmp_path) as writer:
                for wave in range(3):
                    events = [sample_event(wave * 40 + n) for n in range(40)]
                    await asyncio.gather(*(writer.append_event(**event) for event in events))
                await writer.flush()
        finally:
            rival_stop.set()
            await asyncio.to_thread(rival_thread.join)
        await heartbeat.stop()
        syncing_threads = set(disk.threads)
        control = Heartbeat()
        control.start()
        await asyncio.sleep(0.01)
        with AuditTrailWriter(root_path=tmp_path, checkpoints=False) as blocking:
            blocking.append_event(**sample_event(0, category="control"))  # never do this
        await control.stop()
        return heartbeat, control, syncing_threads, threading.get_ident()

    heartbeat, control, syncing_threads, loop_thread = run(main)
    print(
        f"\nloop lateness with {SLOW_SYNC * 1000:.0f} ms syncs: max "
        f"{heartbeat.worst * 1000:.1f} ms over {len(heartbeat.lateness)} beats; "
        f"synchronous writer on the loop: {control.worst * 1000:.1f} ms"
    )
    assert loop_thread not in syncing_threads
    assert heartbeat.worst < SLOW_SYNC / 2
    assert control.worst >= SLOW_SYNC
    assert len([e for e in _read(tmp_path) if e.category == "orders"]) == 120


# -- (3) validation -----------------------------------------------------------------------------


def _unserialisable() -> dict[str, Any]:
    return {"after": {"when": object()}}


INVALID_EVENTS: list[tuple[type[Exception], dict[str, Any]]] = [
    (InvalidNameError, sample_event(0, domain="a/b")),
    (InvalidNameError, sample_event(0, category="..")),
    (InvalidEventError, sample_event(0, model_name="  ")),
    (InvalidEventError, sample_event(0, logical_user_id="")),
    (InvalidEventError, sample_event(0, operation="crete")),
    (InvalidEventError, sample_event(0, payload={"before": {"id": 1}})),
    (InvalidEventError, sample_event(0, payload={"after": {"n": 1}, "colour": "red"})),
    (InvalidEventError, sample_event(0, payload=_unserialisable())),
    (InvalidEventError, sample_event(0, timestamp="yesterday")),
]


def _error(call: Callable[[], object]) -> tuple[type[BaseException], str]:
    with pytest.raises(Exception) as caught:
        call()
    return type(caught.value), str(caught.value)


def _first_step(start: Callable[[], Coroutine[Any, Any, object]]) -> Callable[[], object]:
    """Run a coroutine's first step only: what it does before it ever waits."""

    def step() -> object:
        coroutine = start()
        try:
            return coroutine.send(None)
        finally:
            coroutine.close()

    return step


def test_invalid_events_raise_in_the_first_step_and_spend_no_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a commit is in its (slow) sync, an invalid event raises before its coroutine
    ever waits, exactly as the synchronous writer raises it, and the next ID is still free."""
    synchronous = AuditTrailWriter(root_path=f"memory://aio-{tmp_path.name}")
    bad_batch = [sample_event(1), {**sample_event(2), "colour": "red"}]
    SlowDisk(monkeypatch)

    async def main() -> list[int]:
        async with AsyncAuditTrailWriter(root_path=tmp_path, checkpoints=False) as writer:
            in_flight = asyncio.create_task(writer.append_event(**sample_event(0)))
            await asyncio.sleep(0.01)
            for kind, fields in INVALID_EVENTS:
                expected = _error(functools.partial(synchronous.append_event, **fields))
                assert expected[0] is kind
                asynchronous = _first_step(functools.partial(writer.append_event, **fields))
                assert _error(asynchronous) == expected
            expected = _error(functools.partial(synchronous.append_events, bad_batch))
            assert expected[1].startswith("event #1: ")
            asynchronous = _first_step(functools.partial(writer.append_events, bad_batch))
            assert _error(asynchronous) == expected
            first = await in_flight
            second = await writer.append_event(**sample_event(3))
            return [first.event_id, second.event_id]

    assert run(main) == [1, 2]
    assert _ids(tmp_path) == [1, 2]
    synchronous.close()


# -- (4) durability ----------------------------------------------------------------------------


def test_an_fsync_append_returns_after_a_sync_and_a_fresh_reader_finds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = SlowDisk(monkeypatch, delay=0.01)

    async def main() -> None:
        async with AsyncAuditTrailWriter(root_path=tmp_path, checkpoints=False) as writer:
            for number in range(5):
                synced = disk.completed
                event = await writer.append_event(**sample_event(number))
                assert disk.completed > synced
                assert _read(tmp_path)[-1] == event
            events = await writer.append_events([sample_event(8), sample_event(9)])
            assert _read(tmp_path)[-2:] == events

    run(main)


def test_a_batch_append_is_readable_after_flush(tmp_path: Path) -> None:
    async def main() -> None:
        async with AsyncAuditTrailWriter(
            root_path=tmp_path, durability="batch", flush_interval=60.0
        ) as writer:
            event = await writer.append_event(**sample_event(0))
            assert event.event_id == 1
            await writer.flush()
            assert _read(tmp_path) == [event]

    run(main)


def test_a_failed_commit_fails_every_caller_it_held_and_spends_no_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(fd: int) -> NoReturn:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    async def main() -> int:
        async with AsyncAuditTrailWriter(root_path=tmp_path, checkpoints=False) as writer:
            monkeypatch.setattr(os, "fdatasync", disk_full)
            calls = [writer.append_event(**sample_event(n)) for n in range(5)]
            outcomes = await asyncio.gather(*calls, return_exceptions=True)
            assert all(isinstance(outcome, StorageError) for outcome in outcomes), outcomes
            monkeypatch.undo()
            return (await writer.append_event(**sample_event(5))).event_id

    assert run(main) == 1
    assert _ids(tmp_path) == [1]


def _kill_after_lines(root: Path, lines: int) -> dict[int, str]:
    """Run the async child on ``root``, SIGKILL it once it printed ``lines`` events, and
    return every event it printed, by ID."""
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("_aio_child.py")), str(root)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert child.stdout is not None
    output = b""
    deadline = time.monotonic() + 30
    try:
        while output.count(b"\n") < lines:
            data = os.read(child.stdout.fileno(), 1 << 16)
            assert data, f"the child exited by itself: {child.wait()}"
            assert time.monotonic() < deadline, "the child stopped appending"
            output += data
        child.send_signal(signal.SIGKILL)
        child.wait()
        output += child.stdout.read()  # what it printed before it died counts
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    printed = {}
    for line in output.decode().splitlines():
        event_id, token = line.split()
        printed[int(event_id)] = token
    return printed


def _assert_found(root: Path, printed: dict[int, str]) -> None:
    found = {event.event_id: event.logical_user_id for event in _read(root)}
    missing = {i: token for i, token in printed.items() if found.get(i) != token}
    assert not missing, f"acknowledged events lost or changed: {missing}"


def _kill_rounds(root: Path, rounds: int, most_lines: int) -> None:
    """Kill async writers one after another on ``root``, each once it printed a random number
    of events; every printed event must stay in the trail, and no ID be printed twice."""
    rng = random.Random(rounds)
    printed: dict[int, str] = {}
    for _ in range(rounds):
        killed = _kill_after_lines(root, rng.randint(1, most_lines))
        assert not killed.keys() & printed.keys(), "an acknowledged ID was given out again"
        printed.update(killed)
        _assert_found(root, printed)


def test_every_event_sigkilled_async_writers_acknowledged_is_in_the_trail(
    tmp_path: Path,
) -> None:
    _kill_rounds(tmp_path, rounds=2, most_lines=300)


@pytest.mark.slow
def test_async_writers_sigkilled_at_random_moments_lose_nothing_long(tmp_path: Path) -> None:
    _kill_rounds(tmp_path, rounds=30, most_lines=2000)


# -- (5) cancellation ---------------------------------------------------------------------------


def test_a_cancelled_append_still_lands_and_others_are_unaffected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one worker busy in a 50 ms sync: an append cancelled by a timeout mid-commit, and
    one cancelled while queued for the worker, both land; one cancelled before its first step
    does not; appends alongside them get their results."""
    disk = SlowDisk(monkeypatch)

    async def main() -> tuple[int, int, list[int]]:
        async with AsyncAuditTrailWriter(
            root_path=tmp_path, checkpoints=False, max_workers=1
        ) as writer:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(SLOW_SYNC / 5):
                    await writer.append_event(**sample_event(1, logical_user_id="timed-out"))
            assert disk.syncing.is_set()
            queued = asyncio.create_task(
                writer.append_event(**sample_event(2, logical_user_id="cancelled-queued"))
            )
            alongside = asyncio.create_task(writer.append_event(**sample_event(3)))
            await asyncio.sleep(0)  # both queued behind the commit of the timed-out append
            queued.cancel()
            never = asyncio.create_task(
                writer.append_event(**sample_event(4, logical_user_id="never-started"))
            )
            never.cancel()
            for task in (queued, never):
                with pytest.raises(asyncio.CancelledError):
                    await task
            after = await writer.append_event(**sample_event(5))
            return (await alongside).event_id, after.event_id, sorted(_ids(tmp_path))

    alongside, after, ids_before_close = run(main)
    users = {event.event_id: event.logical_user_id for event in _read(tmp_path)}
    assert users == {1: "timed-out", 2: "cancelled-queued", 3: "user-1", 4: "user-1"}
    assert (alongside, after) == (3, 4)
    assert ids_before_close == [1, 2, 3, 4]


def test_a_cancelled_open_leaves_the_writer_closed_and_the_trail_released(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[AuditTrailWriter] = []
    in_open = threading.Event()

    class SlowToOpen(AuditTrailWriter):
        def __init__(self, **settings: Any) -> None:
            in_open.set()
            time.sleep(SLOW_SYNC)
            super().__init__(**settings)
            opened.append(self)

    monkeypatch.setattr("trailstore.aio.AuditTrailWriter", SlowToOpen)

    async def main() -> None:
        writer = AsyncAuditTrailWriter(root_path=tmp_path)
        opening = asyncio.create_task(writer.open())
        await _until(in_open)
        opening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await opening
        await writer.aclose()  # waits for the close the cancellation began
        with pytest.raises(WriterClosedError, match="is closed"):
            await writer.append_event(**sample_event(0))

    run(main)
    assert len(opened) == 1
    assert opened[0]._closed
    with AuditTrailWriter(root_path=tmp_path) as writer:
        assert writer.append_event(**sample_event(0)).event_id == 1


def test_a_failed_open_raises_its_error_and_leaves_the_writer_closed(tmp_path: Path) -> None:
    async def main() -> None:
        writer = AsyncAuditTrailWriter(root_path=tmp_path, durability="bogus")  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="durability"):
            async with writer:
                pass
        with pytest.raises(WriterClosedError, match="is closed"):
            await writer.open()
        await writer.aclose()

    run(main)


# -- (6) opening and closing --------------------------------------------------------------------


def test_close_waits_for_started_appends_is_idempotent_and_later_calls_raise(
    tmp_path: Path,
) -> None:
    async def main() -> list[int]:
        writer = AsyncAuditTrailWriter(root_path=tmp_path)
        with pytest.raises(WriterClosedError, match="not open"):
            await writer.append_event(**sample_event(0))
        assert await writer.open() is writer
        assert await writer.open() is writer
        started = [asyncio.create_task(writer.append_event(**sample_event(n))) for n in range(10)]
        await asyncio.sleep(0)  # each has queued its event; no worker has taken them yet
        await asyncio.gather(writer.aclose(), writer.aclose())
        assert all(task.done() for task in started)
        await writer.aclose()
        with pytest.raises(WriterClosedError, match="is closed"):
            await writer.append_event(**sample_event(0))
        with pytest.raises(WriterClosedError, match="is closed"):
            await writer.append_events([sample_event(0)])
        assert await writer.append_events([]) == []  # as the synchronous writer: nothing to do
        await writer.flush()  # the close flushed everything
        with pytest.raises(WriterClosedError, match="is closed"):
            async with writer:
                pass
        return sorted(task.result().event_id for task in started)

    assert run(main) == list(range(1, 11))
    assert _ids(tmp_path) == list(range(1, 11))


def test_a_writer_belongs_to_the_loop_that_opened_it(tmp_path: Path) -> None:
    writer = AsyncAuditTrailWriter(root_path=tmp_path)
    asyncio.run(writer.open())

    async def elsewhere() -> None:
        with pytest.raises(RuntimeError, match="another event loop"):
            await writer.append_event(**sample_event(0))
        await writer.aclose()

    run(elsewhere)


# -- reading ------------------------------------------------------------------------------------


def _write_two_streams(root: Path, count: int, segment_bytes: int = 4096) -> None:
    with AuditTrailWriter(root_path=root, max_file_size_bytes=segment_bytes) as writer:
        writer.append_events(
            [sample_event(n, category=("a", "b")[n % 3 == 0]) for n in range(count)]
        )


def test_reader_settings_are_the_synchronous_readers_and_chunk_size() -> None:
    synchronous = dict(inspect.signature(AuditTrailReader).parameters)
    asynchronous = dict(inspect.signature(AsyncAuditTrailReader).parameters)
    assert asynchronous.pop("chunk_size").default == 500
    assert asynchronous == synchronous


@pytest.mark.parametrize("chunk_size", [0, 2.5, False])
def test_chunk_size_must_be_a_positive_int(chunk_size: Any) -> None:
    with pytest.raises(ConfigurationError, match="chunk_size"):
        AsyncAuditTrailReader(root_path="memory://aio-chunks", chunk_size=chunk_size)


def test_async_reads_give_what_the_synchronous_reader_gives(tmp_path: Path) -> None:
    _write_two_streams(tmp_path, 1234)
    synchronous = AuditTrailReader(root_path=tmp_path)
    reader = AsyncAuditTrailReader(root_path=tmp_path, chunk_size=100)

    async def main() -> None:
        everything = [event async for event in reader.iter_events()]
        assert everything == list(synchronous.iter_events())
        assert len(everything) == 1234
        some = [event async for event in reader.iter_events(categories="b", min_event_id=100)]
        assert some == list(synchronous.iter_events(categories="b", min_event_id=100))
        lines = [line async for line in reader.iter_lines(max_event_id=250)]
        assert lines == list(synchronous.iter_lines(max_event_id=250))
        assert await reader.tail(5, categories="a") == synchronous.tail(5, categories="a")
        assert await reader.tail_lines(3) == synchronous.tail_lines(3)
        assert sorted(await reader.streams()) == sorted(synchronous.streams())

    run(main)
    assert reader.report.clean
    assert reader.report == synchronous.report


@pytest.mark.timing
def test_reading_leaves_the_event_loop_running_while_storage_is_slow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every segment takes 50 ms to open: reading twelve of them keeps the loop's heartbeat
    on time, where the synchronous reader on the loop stalls it."""
    _write_two_streams(tmp_path, 120, segment_bytes=2500)
    real_open = os.open
    opened_in: set[int] = set()

    def slow_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path).endswith(".jsonl") and not flags & (os.O_WRONLY | os.O_RDWR):
            opened_in.add(threading.get_ident())
            time.sleep(SLOW_SYNC)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", slow_open)

    async def main() -> tuple[Heartbeat, Heartbeat, int, int]:
        heartbeat = Heartbeat()
        heartbeat.start()
        reader = AsyncAuditTrailReader(root_path=tmp_path, chunk_size=50)
        count = len([event async for event in reader.iter_events()])
        await heartbeat.stop()
        assert threading.get_ident() not in opened_in
        control = Heartbeat()
        control.start()
        await asyncio.sleep(0.01)
        list(AuditTrailReader(root_path=tmp_path).iter_events(max_event_id=1))  # never do this
        await control.stop()
        return heartbeat, control, count, len(opened_in)

    heartbeat, control, count, _ = run(main)
    print(
        f"\nloop lateness reading segments that take {SLOW_SYNC * 1000:.0f} ms to open: max "
        f"{heartbeat.worst * 1000:.1f} ms; synchronous reader on the loop: "
        f"{control.worst * 1000:.1f} ms"
    )
    assert count == 120
    assert heartbeat.worst < SLOW_SYNC / 2
    assert control.worst >= SLOW_SYNC


def test_a_missing_trail_raises_at_the_first_read_and_stopping_early_is_clean(
    tmp_path: Path,
) -> None:
    _write_two_streams(tmp_path, 50)
    missing = AsyncAuditTrailReader(root_path=tmp_path / "nothing")  # constructing reads nothing

    async def main() -> list[int]:
        with pytest.raises(TrailNotFoundError):
            async for _ in missing.iter_events():
                pass
        reader = AsyncAuditTrailReader(root_path=tmp_path, chunk_size=10)
        first = []
        async for event in reader.iter_events():
            first.append(event.event_id)
            if len(first) == 3:
                break
        return first

    assert run(main) == [1, 2, 3]
