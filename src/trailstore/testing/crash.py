"""The crash kit: writer processes SIGKILLed at random moments, restarted, and the trail checked.

``CrashKit`` runs rounds of writer processes (``trailstore.testing.crash_writer``, two threads
each, three streams, segments that rotate every few events) on one trail and kills one at a
random moment — while it opens the trail, mid-commit, between commits — then starts another,
until the round's kill count is reached. The children report every ID range a session is about
to spend, every ID handed out before a flush (``batch``) and every acknowledged line. After a
round, ``check`` holds the trail, read only through the backend and reader interfaces, to:

- every acknowledged event present exactly once, byte for byte;
- every handed-out ID either absent or holding exactly the event it was handed to — never
  given to another event;
- no ID twice, IDs ascending within a stream, every line parseable (after a writer's open has
  repaired torn tails), no segment past the size bound unless it holds one event;
- every missing ID up to the counter announced by a killed writer and never acknowledged, and
  reported by the reader as a gap;
- the trail verifying against its checkpoints (made by the killed writers and the closing one)
  with no problem: a crash at any point leaves no false alarm.

``CrashConformance`` turns this into tests a backend's test class inherits.
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
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from trailstore.backend import Backend
from trailstore.encoding import decode_line
from trailstore.evidence import verify_trail
from trailstore.lines import line_event_id
from trailstore.reader import AuditTrailReader
from trailstore.registry import open_backend
from trailstore.writer import AuditTrailWriter

STARTUP_TIMEOUT = 30.0


@dataclass
class Child:
    """One writer process and what it has told the parent so far."""

    process: subprocess.Popen[bytes]
    kill_at: float | None
    #: the arguments its ``setup`` was called with
    arguments: dict[str, Any] = field(default_factory=dict)
    buffer: bytes = b""
    ready: bool = False
    stopped_at: str | None = None
    reserved: set[int] = field(default_factory=set)
    handed_out: dict[int, bytes] = field(default_factory=dict)
    acknowledged: dict[int, bytes] = field(default_factory=dict)

    def receive(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            kind, _, rest = line.partition(b" ")
            if kind in (b"E", b"H"):
                event_id = line_event_id(rest)
                assert event_id is not None, rest
                if kind == b"E":
                    assert event_id not in self.acknowledged, f"ID {event_id} acknowledged twice"
                    self.acknowledged[event_id] = rest + b"\n"
                else:
                    assert event_id not in self.handed_out, f"ID {event_id} handed out twice"
                    self.handed_out[event_id] = rest + b"\n"
            elif kind == b"A":
                first, last = map(int, rest.split())
                self.reserved.update(range(first, last + 1))
            elif kind == b"R":
                self.ready = True
            elif kind == b"K":
                self.stopped_at = rest.decode()
            else:
                raise AssertionError(f"writer {self.process.pid} failed: {line!r}")


@dataclass
class CrashKit:
    """Rounds of killed writers on one trail, and everything they acknowledged.

    ``setup`` (``"module:function"``) runs in every writer process before it opens the trail,
    with the arguments ``setup_arguments(spawned)`` returns (e.g. a protocol point to stop at);
    a writer that reports ``K <point>`` is killed at once.
    """

    url: str
    storage_options: dict[str, Any]
    rng: random.Random
    segment_bytes: int = 1500
    writers: int = 2
    setup: str | None = None
    #: how long after it opened a writer is killed at the latest
    kill_within: float = 0.5
    acknowledged: dict[int, bytes] = field(default_factory=dict)
    #: IDs handed out (``batch``) by a writer that was killed before acknowledging them
    handed_out: dict[int, bytes] = field(default_factory=dict)
    #: IDs announced by killed writers and never acknowledged: the only place gaps may be
    lost: set[int] = field(default_factory=set)
    kills: Counter[str] = field(default_factory=Counter)
    spawned: int = 0

    def setup_arguments(self, spawned: int) -> dict[str, Any]:
        """Arguments for ``setup`` in the ``spawned``-th writer; none by default."""
        return {}

    def kill_window(self, arguments: dict[str, Any]) -> float:
        """How long after it opened the writer set up with ``arguments`` may live."""
        return self.kill_within

    def backend(self) -> Backend:
        return open_backend(self.url, **self.storage_options)

    def round(self, *, kills: int, durability: str) -> None:
        """Run writers, killing ``kills`` of them, in one durability mode."""
        selector = selectors.DefaultSelector()
        children: dict[int, Child] = {}

        def spawn() -> None:
            self.spawned += 1
            arguments = self.setup_arguments(self.spawned)
            config = {
                "url": self.url,
                "storage_options": self.storage_options,
                "seed": self.rng.randrange(10**9),
                "durability": durability,
                "segment_bytes": self.segment_bytes,
                "setup": self.setup,
                "setup_arguments": arguments,
            }
            process = subprocess.Popen(
                [sys.executable, "-m", "trailstore.testing.crash_writer", json.dumps(config)],
                stdout=subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},  # imports as here
            )
            assert process.stdout is not None
            # a quarter of the kills land while the writer starts and opens the trail
            early = self.rng.random() < 0.25
            kill_at = time.monotonic() + self.rng.uniform(0.05, 0.4) if early else None
            children[process.pid] = Child(process, kill_at, arguments)
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
            self.kills[child.stopped_at or "random"] += 1
            self._collect(child)

        killed = 0
        deadline = time.monotonic() + STARTUP_TIMEOUT * kills
        try:
            for _ in range(self.writers):
                spawn()
            while killed < kills:
                self._step(selector, children)
                now = time.monotonic()
                due = [
                    c for c in children.values() if c.stopped_at or (c.kill_at and c.kill_at <= now)
                ]
                for child in due:
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
                window = self.kill_window(child.arguments)
                child.kill_at = time.monotonic() + self.rng.uniform(0.0, window)

    def _collect(self, child: Child) -> None:
        """Take over what a killed writer acknowledged, handed out and announced."""
        for event_id, line in child.acknowledged.items():
            assert event_id not in self.acknowledged, f"ID {event_id} acknowledged twice"
            assert self.handed_out.get(event_id, line) == line, f"ID {event_id} handed out twice"
            self.acknowledged[event_id] = line
            self.lost.discard(event_id)  # announced, lost, and later rightly used again
        for event_id, line in child.handed_out.items():
            if event_id not in child.acknowledged:
                assert event_id not in self.handed_out, f"ID {event_id} handed out twice"
                assert event_id not in self.acknowledged, f"handed-out ID {event_id} reused"
                self.handed_out[event_id] = line
        self.lost.update(child.reserved - child.acknowledged.keys())

    def check(self) -> dict[int, bytes]:
        """Every guarantee, on the trail as a writer's open leaves it (which repairs torn
        tails); returns every line found by ID."""
        damaged = AuditTrailReader(root_path=self.url, storage_options=self.storage_options)
        list(damaged.iter_events())  # the trail as the kills left it: read, never raise
        AuditTrailWriter(root_path=self.url, storage_options=self.storage_options).close()
        backend = self.backend()
        found = _scan(backend, self.segment_bytes)
        for event_id, line in self.acknowledged.items():
            assert found.get(event_id) == line, f"acknowledged event {event_id} lost or changed"
        for event_id, line in self.handed_out.items():
            held = found.get(event_id)
            assert held in (None, line), f"handed-out ID {event_id} was given to another event"
        last = backend.last_event_id()
        assert max(found, default=0) <= last, "the counter is below IDs in the trail"
        missing = set(range(1, last + 1)) - found.keys()
        unexplained = sorted(missing - self.lost)
        assert not unexplained, f"gaps no killed writer announced: {unexplained[:20]}"
        reader = AuditTrailReader(root_path=self.url, storage_options=self.storage_options)
        assert [event.event_id for event in reader.iter_events()] == sorted(found)
        reported = {i for first, end in reader.report.gaps for i in range(first, end + 1)}
        assert reported == missing, "the reader's gaps are not the missing IDs"
        assert reader.report.duplicate_ids == 0
        assert reader.report.malformed_lines == reader.report.torn_lines == 0
        verified = verify_trail(self.url, storage_options=self.storage_options, full=True)
        assert verified.problems == [], [str(problem) for problem in verified.problems]
        assert verified.covered_events == last, "the closing writer's checkpoint covers all"
        return found


def _scan(backend: Backend, segment_bytes: int) -> dict[int, bytes]:
    """Every line of the trail by ID, through the backend interface, asserting that each
    parses and belongs to its stream, that IDs are unique and ascend within a stream, and
    that no segment is larger than ``segment_bytes`` unless it holds a single event."""
    found: dict[int, bytes] = {}
    for stream in backend.list_streams():
        previous = 0
        for number in backend.list_segments(stream):
            lines = list(backend.read_segment(stream, number))
            size = sum(map(len, lines))
            assert size <= segment_bytes or len(lines) == 1, f"{stream} {number}: {size} bytes"
            for line in lines:
                event = decode_line(line)
                assert (event.domain, event.category) == stream, f"{stream} holds {line!r}"
                assert event.event_id not in found, f"duplicate ID {event.event_id}"
                assert event.event_id > previous, f"{stream} segment {number} out of order"
                found[event.event_id] = line
                previous = event.event_id
    return found


#: rounds of kills a fast crash test runs at most, waiting for enough acknowledged events
MAX_ROUNDS = 8


class CrashConformance:
    """Crash tests a backend's test class inherits (with ``BackendConformance``): SIGKILLed
    writer processes in every durability mode must lose nothing acknowledged, reuse no
    handed-out ID and leave only announced, reported gaps.

    It needs the ``trail_url`` and ``storage_options`` fixtures; ``crash_kit`` may be
    overridden to add a ``setup`` or damage between rounds (``between_rounds``).
    """

    #: kills per durability mode in the fast tests, and in all modes in the slow one
    crash_kills = 8
    crash_kills_long = 240

    @pytest.fixture
    def crash_kit(self, trail_url: str, storage_options: dict[str, Any]) -> CrashKit:
        backend = open_backend(trail_url, **storage_options)
        if not (backend.persistent and backend.supports_concurrent_processes):
            pytest.skip("the trail does not outlive its process or is not shared by processes")
        return CrashKit(trail_url, storage_options, random.Random(trail_url))

    def between_rounds(self, kit: CrashKit) -> None:
        """Damage a crash or an operator may leave between writers; none by default."""

    @pytest.mark.parametrize("durability", ["fsync", "flush", "batch"])
    def test_sigkilled_writers_lose_nothing_and_reuse_no_handed_out_id(
        self, crash_kit: CrashKit, durability: str
    ) -> None:
        # two rounds, and more while the writers were killed too soon to have acknowledged
        # enough to tell anything (a slow emulator on a loaded machine)
        for number in range(MAX_ROUNDS):
            crash_kit.round(kills=self.crash_kills // 2, durability=durability)
            crash_kit.check()
            self.between_rounds(crash_kit)
            if number >= 1 and len(crash_kit.acknowledged) >= 10:
                break
        crash_kit.check()
        assert sum(crash_kit.kills.values()) >= self.crash_kills
        assert len(crash_kit.acknowledged) >= 10, "too few events to tell anything"

    @pytest.mark.slow
    def test_sigkilled_writers_in_every_mode_long(self, crash_kit: CrashKit) -> None:
        rounds = self.crash_kills_long // 10
        for number in range(rounds):
            crash_kit.round(kills=10, durability=("fsync", "flush", "batch")[number % 3])
            crash_kit.check()
            self.between_rounds(crash_kit)
        crash_kit.check()
        assert sum(crash_kit.kills.values()) >= self.crash_kills_long
