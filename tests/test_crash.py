"""Crash safety: writer processes SIGKILLed at random points, restarted, and the trail checked.

Each round runs two writer processes (``_crash_writer.py``, two threads each, several streams,
rotation every few events) on one root and kills one at a random moment — while it opens the
trail, mid-commit, between commits — then starts a replacement, until the round's kill count
is reached. The children report every reserved ID range and every acknowledged line through a
pipe. After each round the trail must hold every acknowledged event exactly once, byte for
byte; every missing ID must have been reserved by a killed writer and not acknowledged, and be
reported by the reader as a gap; a writer's open must repair torn tails into ``.torn`` files;
every segment must parse and stay within the size bound. Between rounds ``index.json`` and the
counter file are damaged the ways a crash or an operator can leave them.
"""

from __future__ import annotations

import json
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from trailstore import AuditTrailReader, AuditTrailWriter
from trailstore.backend import parse_segment_name
from trailstore.backends import local
from trailstore.backends.local import LocalBackend
from trailstore.encoding import decode_line
from trailstore.lines import line_event_id
from trailstore.testing import sample_event

CHILD = Path(__file__).with_name("_crash_writer.py")
LIMIT = 1500
STARTUP_TIMEOUT = 30.0


@dataclass
class Child:
    """One writer process and what it has told the parent so far."""

    process: subprocess.Popen[bytes]
    kill_at: float | None
    buffer: bytes = b""
    ready: bool = False
    reserved: set[int] = field(default_factory=set)
    acknowledged: dict[int, bytes] = field(default_factory=dict)

    def receive(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            kind, _, rest = line.partition(b" ")
            if kind == b"E":
                event_id = line_event_id(rest)
                assert event_id is not None, rest
                assert event_id not in self.acknowledged, f"ID {event_id} acknowledged twice"
                self.acknowledged[event_id] = rest + b"\n"
            elif kind == b"A":
                first, last = map(int, rest.split())
                self.reserved.update(range(first, last + 1))
            elif kind == b"R":
                self.ready = True
            else:
                raise AssertionError(f"writer {self.process.pid} failed: {line!r}")


@dataclass
class CrashRun:
    """Rounds of killed writers on one trail, and everything they acknowledged."""

    root: Path
    rng: random.Random
    acknowledged: dict[int, bytes] = field(default_factory=dict)
    #: IDs reserved by killed writers and never acknowledged: the only place gaps may be
    lost: set[int] = field(default_factory=set)
    #: every ID a killed writer reserved and did not acknowledge, even if reused since
    ever_lost: set[int] = field(default_factory=set)
    kills: int = 0
    quarantined: int = 0

    def round(self, *, kills: int, durability: str, short_writes: bool) -> None:
        selector = selectors.DefaultSelector()
        children: dict[int, Child] = {}

        def spawn() -> None:
            process = subprocess.Popen(
                [
                    sys.executable,
                    str(CHILD),
                    str(self.root),
                    str(self.rng.randrange(10**9)),
                    durability,
                    str(LIMIT),
                    "1" if short_writes else "0",
                ],
                stdout=subprocess.PIPE,
            )
            assert process.stdout is not None
            # a quarter of the kills land while the writer starts and opens the trail
            early = self.rng.random() < 0.25
            kill_at = time.monotonic() + self.rng.uniform(0.05, 0.4) if early else None
            children[process.pid] = Child(process, kill_at)
            selector.register(process.stdout, selectors.EVENT_READ, process.pid)

        def kill(child: Child) -> None:
            child.process.send_signal(signal.SIGKILL)
            child.process.wait()
            assert child.process.stdout is not None
            selector.unregister(child.process.stdout)
            while data := os.read(child.process.stdout.fileno(), 1 << 16):
                child.receive(data)  # what it sent before it died counts
            child.process.stdout.close()
            del children[child.process.pid]
            self._collect(child)

        killed = 0
        deadline = time.monotonic() + STARTUP_TIMEOUT * kills
        try:
            for _ in range(2):
                spawn()
            while killed < kills:
                self._step(selector, children)
                now = time.monotonic()
                for child in [c for c in children.values() if c.kill_at and c.kill_at <= now]:
                    kill(child)
                    killed += 1
                    if killed + len(children) < kills:
                        spawn()
                assert time.monotonic() < deadline, "writers stopped making progress"
        finally:
            for child in list(children.values()):  # never leave a writer behind
                child.process.kill()
                child.process.wait()
                assert child.process.stdout is not None
                child.process.stdout.close()
        self.kills += killed
        selector.close()

    def _step(self, selector: selectors.BaseSelector, children: dict[int, Child]) -> None:
        """Take in whatever the writers sent; arm a writer's kill once it is open."""
        for key, _ in selector.select(timeout=0.01):
            child = children[key.data]
            data = os.read(key.fd, 1 << 16)
            if not data:
                child.process.wait()
                raise AssertionError(f"writer exited by itself: {child.process.returncode}")
            child.receive(data)
            if child.kill_at is None and child.ready:
                child.kill_at = time.monotonic() + self.rng.uniform(0.0, 0.25)

    def _collect(self, child: Child) -> None:
        """Take over what a killed writer acknowledged and reserved."""
        for event_id, line in child.acknowledged.items():
            assert event_id not in self.acknowledged, f"ID {event_id} acknowledged twice"
            self.acknowledged[event_id] = line
            self.lost.discard(event_id)  # reused after the counter was lost and rebuilt
        self.lost.update(child.reserved - child.acknowledged.keys())
        self.ever_lost.update(child.reserved - child.acknowledged.keys())

    def damage_counters(self) -> None:
        """Leave ``index.json`` and the counter file as a crash or an operator might."""
        index, counter = self.root / "index.json", self.root / local.LOCK_NAME
        highest = max(self.acknowledged, default=0)
        match self.rng.choice(["keep", "lagging", "missing", "empty", "garbage"]):
            case "lagging":
                index.write_text(json.dumps({"last_event_id": highest // 2}))
            case "missing":
                index.unlink(missing_ok=True)
            case "empty":
                index.write_text("")
            case "garbage":
                index.write_bytes(b"\x00{garbage")
        match self.rng.choice(["keep", "keep", "missing", "garbage"]):
            case "missing":
                counter.unlink(missing_ok=True)
            case "garbage":
                counter.write_bytes(b"not a number\n")

    def check(self) -> None:
        """Every guarantee, first on the trail as the kills left it, then after a writer open."""
        damaged = AuditTrailReader(root_path=self.root)
        list(damaged.iter_events())  # tolerates torn tails, never raises
        torn_before = _torn_bytes(self.root)
        AuditTrailWriter(root_path=self.root).close()
        torn = _torn_bytes(self.root)
        self.quarantined = len(torn)
        assert set(torn_before) <= set(torn)
        for chunk in torn:
            assert b'{"event_id":'.startswith(chunk[:12]) and b"\n" not in chunk, chunk
            event_id = line_event_id(chunk)
            assert event_id is None or event_id in self.ever_lost, chunk

        found: dict[int, bytes] = {}
        for stream_dir in sorted(p for p in self.root.glob("*/*") if p.is_dir()):
            previous = 0
            segments = sorted(stream_dir.glob("audit-*.jsonl"), key=_segment_number)
            for segment in segments:
                data = segment.read_bytes()
                lines = data.splitlines(keepends=True)
                assert len(data) <= LIMIT or len(lines) == 1, f"{segment} is {len(data)} bytes"
                for line in lines:
                    event = decode_line(line)  # every line parses after the open
                    assert (event.domain, event.category) == stream_dir.parts[-2:]
                    assert event.event_id not in found, f"duplicate ID {event.event_id}"
                    assert event.event_id > previous, f"{segment} out of order"
                    found[event.event_id] = line
                    previous = event.event_id

        for event_id, line in self.acknowledged.items():
            assert found.get(event_id) == line, f"acknowledged event {event_id} lost or changed"
        last = LocalBackend(str(self.root)).last_event_id()
        assert max(found, default=0) <= last
        missing = set(range(1, last + 1)) - found.keys()
        assert missing <= self.lost, f"gaps nobody can explain: {sorted(missing - self.lost)}"
        reader = AuditTrailReader(root_path=self.root)
        assert [event.event_id for event in reader.iter_events()] == sorted(found)
        reported = {i for first, end in reader.report.gaps for i in range(first, end + 1)}
        assert reported == missing
        assert reader.report.malformed_lines == reader.report.torn_lines == 0


def _segment_number(path: Path) -> int:
    number = parse_segment_name(path.name)
    assert number is not None
    return number


def _torn_bytes(root: Path) -> list[bytes]:
    chunks: list[bytes] = []
    for path in sorted(root.glob("*/*/*" + local.TORN_SUFFIX)):
        chunks.extend(path.read_bytes().splitlines())
    return chunks


ROUNDS = [
    ("fsync", False),
    ("fsync", True),
    ("flush", False),
    ("flush", True),
    ("fsync", True),
    ("batch", False),
]


def _run(root: Path, seed: int, rounds: list[tuple[str, bool]], kills_per_round: int) -> CrashRun:
    run = CrashRun(root, random.Random(seed))
    for durability, short_writes in rounds:
        run.round(kills=kills_per_round, durability=durability, short_writes=short_writes)
        run.check()
        run.damage_counters()
    run.check()
    print(
        f"crash run: {run.kills} kills, {len(run.acknowledged)} acknowledged events,"
        f" {len(run.lost)} IDs reserved and lost, {run.quarantined} torn tails quarantined"
    )
    return run


def test_sigkilled_writers_lose_nothing_acknowledged(tmp_path: Path) -> None:
    run = _run(tmp_path, seed=4, rounds=ROUNDS, kills_per_round=9)
    assert run.kills >= 50
    assert len(run.acknowledged) > 500


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_sigkilled_writers_lose_nothing_acknowledged_long(tmp_path: Path, seed: int) -> None:
    run = _run(tmp_path, seed=seed, rounds=ROUNDS * 4, kills_per_round=20)
    assert run.kills >= 400


# -- the counter's persisted forms, damaged between writers ------------------------------------


def _write(root: Path, count: int) -> None:
    with AuditTrailWriter(root_path=root, max_file_size_bytes=600) as writer:
        for i in range(count):
            writer.append_event(**sample_event(i, category=("a", "b")[i % 2]))


def _ids(root: Path) -> list[int]:
    return [event.event_id for event in AuditTrailReader(root_path=root).iter_events()]


@pytest.mark.parametrize("counter", [b"", b"garbage\n", b"-5\n", b"\x00" * 30, None])
def test_garbage_or_missing_counter_file_is_rebuilt_from_the_data(
    tmp_path: Path, counter: bytes | None
) -> None:
    _write(tmp_path, 12)
    lock = tmp_path / local.LOCK_NAME
    if counter is None:
        lock.unlink()
    else:
        lock.write_bytes(counter)
    (tmp_path / "index.json").write_text(json.dumps({"last_event_id": 3}))
    _write(tmp_path, 3)
    assert _ids(tmp_path) == list(range(1, 16))


def test_index_ahead_of_the_data_is_kept_and_reported_as_a_gap(tmp_path: Path) -> None:
    _write(tmp_path, 4)
    (tmp_path / local.LOCK_NAME).unlink()
    (tmp_path / "index.json").write_text(json.dumps({"last_event_id": 9}))
    _write(tmp_path, 1)
    reader = AuditTrailReader(root_path=tmp_path)
    assert [event.event_id for event in reader.iter_events()] == [1, 2, 3, 4, 10]
    assert reader.report.gaps == [(5, 9)]


def test_counter_file_garbled_while_a_writer_is_open_is_rebuilt(tmp_path: Path) -> None:
    with AuditTrailWriter(root_path=tmp_path) as writer:
        writer.append_event(**sample_event(0))
        (tmp_path / local.LOCK_NAME).write_bytes(b"garbage")
        assert writer.append_event(**sample_event(1)).event_id == 2
    assert _ids(tmp_path) == [1, 2]


def test_counter_file_deleted_while_writers_are_open_keeps_ids_unique(tmp_path: Path) -> None:
    first = AuditTrailWriter(root_path=tmp_path)
    first.append_event(**sample_event(0))
    (tmp_path / local.LOCK_NAME).unlink()
    second = AuditTrailWriter(root_path=tmp_path)
    returned = [second.append_event(**sample_event(1)).event_id]
    returned.append(first.append_event(**sample_event(2)).event_id)
    returned.append(second.append_event(**sample_event(3)).event_id)
    first.close()
    second.close()
    assert returned == [2, 3, 4]
    assert _ids(tmp_path) == [1, 2, 3, 4]
