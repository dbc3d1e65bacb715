"""Crash safety on S3: writer processes SIGKILLed at random points, restarted, the trail checked.

Each round runs two writer processes (``_s3_crash_writer.py``) on one ``s3://`` trail in the
moto server. About half are killed at a random moment after they opened the trail (mid-commit
while holding the lease, or between commits); the others stop at a named point of the
protocol and are killed there: between the index compare-and-swap and the chunk upload,
halfway through a multi-stream upload, and before, after and during sealing. After each round
(and a writer open, which repairs) every acknowledged event must be in the trail exactly once,
byte for byte; IDs are unique; an ID may be missing only if a killed writer had reserved it and
not acknowledged it, and the reader reports exactly the missing IDs as gaps; no segment
exceeds the size bound or holds a line twice. Between rounds a torn chunk is planted (as a
non-atomic gateway or a copied local trail would leave it) and must end up in quarantine, and
``index.json`` is made to lag or removed, to be reconciled with the data.
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
from pathlib import Path
from typing import Any

import botocore.retryhandler
import pytest
from _fault_proxy import BACKOFF_SCALE, FaultProxy, scaled_backoff
from _s3_crash_writer import BACKOFF_VARIABLE, POINTS
from _s3_trail import check
from conftest import options_for
from trailstore_s3.backend import S3Backend
from trailstore_s3.layout import chunk_name

from trailstore import AuditTrailReader, AuditTrailWriter

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from test_crash import Child  # the local harness's view of one writer

CHILD = Path(__file__).with_name("_s3_crash_writer.py")
LIMIT = 2000
LEASE_SECONDS = 3.0
STARTUP_TIMEOUT = 30.0
#: the stop point of a writer never reached within this time after it opened: kill it anyway
POINT_TIMEOUT = 4.0


@dataclass
class S3Child(Child):
    """A writer process that may also report the protocol point it stopped at (``K``)."""

    point: str = "none"
    stopped_at: str | None = None

    def receive(self, data: bytes) -> None:
        pending, self.buffer = self.buffer + data, b""
        complete, newline, tail = pending.rpartition(b"\n")
        kept = []
        for line in (complete + newline).splitlines(keepends=True):
            if line.startswith(b"K "):
                self.stopped_at = line[2:].strip().decode()
            else:
                kept.append(line)
        super().receive(b"".join(kept) + tail)


@dataclass
class S3CrashRun:
    """Rounds of killed writers on one S3 trail, and everything they acknowledged."""

    url: str
    options: dict[str, Any]
    rng: random.Random
    acknowledged: dict[int, bytes] = field(default_factory=dict)
    #: IDs reserved by killed writers and never acknowledged: the only place gaps may be
    lost: set[int] = field(default_factory=set)
    kills: Counter[str] = field(default_factory=Counter)
    spawned: int = 0
    torn_planted: list[tuple[str, bytes]] = field(default_factory=list)

    def round(self, *, kills: int, durability: str) -> None:
        selector = selectors.DefaultSelector()
        children: dict[int, S3Child] = {}

        def spawn() -> None:
            # every other writer stops at the protocol points in turn, the rest die at random
            self.spawned += 1
            point = POINTS[self.spawned // 2 % len(POINTS)] if self.spawned % 2 else "none"
            process = subprocess.Popen(
                [
                    sys.executable,
                    str(CHILD),
                    self.url,
                    json.dumps(self.options),
                    str(self.rng.randrange(10**9)),
                    durability,
                    str(LIMIT),
                    str(LEASE_SECONDS),
                    point,
                    str(self.rng.randint(0, 3)),
                ],
                stdout=subprocess.PIPE,
            )
            assert process.stdout is not None
            children[process.pid] = S3Child(process, None, point=point)
            selector.register(process.stdout, selectors.EVENT_READ, process.pid)

        def kill(child: S3Child) -> None:
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
            for _ in range(2):
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

    def _step(self, selector: selectors.BaseSelector, children: dict[int, S3Child]) -> None:
        """Take in whatever the writers sent; arm a writer's kill once it is open."""
        for key, _ in selector.select(timeout=0.01):
            child = children[key.data]
            data = os.read(key.fd, 1 << 16)
            if not data:
                child.process.wait()
                raise AssertionError(f"writer exited by itself: {child.process.returncode}")
            child.receive(data)
            if child.kill_at is None and child.ready:
                wait = POINT_TIMEOUT if child.point != "none" else self.rng.uniform(0.05, 0.8)
                child.kill_at = time.monotonic() + wait

    def _collect(self, child: S3Child) -> None:
        """Take over what a killed writer acknowledged and reserved."""
        for event_id, line in child.acknowledged.items():
            assert event_id not in self.acknowledged, f"ID {event_id} acknowledged twice"
            self.acknowledged[event_id] = line
            self.lost.discard(event_id)  # reused after the counter was rebuilt from the data
        self.lost.update(child.reserved - child.acknowledged.keys())

    def plant_torn_chunk(self) -> None:
        """A chunk ending in half a line, above the counter, in some stream's open segment."""
        backend = S3Backend(self.url, **self.options)
        state = backend.index.read()[0]
        if not state.streams:
            return
        stream, segment = self.rng.choice(sorted(state.streams.items()))
        event_id = state.last_event_id + 1
        key = backend.location.chunk_key(stream, segment.number, chunk_name(event_id))
        torn = b'{"event_id":%d,"timestamp":1.0,"doma' % event_id
        backend.store.put(key, torn)
        quarantine = backend.location.quarantine_key(stream, segment.number, chunk_name(event_id))
        self.torn_planted.append((quarantine, torn + b"\n"))
        self.lost.add(event_id)  # a reader may count it until a writer opens

    def damage_index(self) -> None:
        """Leave ``index.json`` lagging (in the original format) or remove it."""
        backend = S3Backend(self.url, **self.options)
        key = backend.location.index_key
        match self.rng.choice(["keep", "keep", "lagging", "missing"]):
            case "lagging":
                etag = backend.index.read()[1]
                lagging = b'{"last_event_id": %d}' % (max(self.acknowledged, default=0) // 2)
                backend.store.put(key, lagging, if_match=etag)
            case "missing":
                backend.store.delete([key])

    def check(self) -> None:
        """Every guarantee, after a reader met the trail as the kills left it and a writer
        opened it (which repairs)."""
        list(AuditTrailReader(root_path=self.url, storage_options=self.options).iter_events())
        AuditTrailWriter(root_path=self.url, storage_options=self.options).close()
        check(self.url, self.options, LIMIT, self.acknowledged, self.lost)
        store = S3Backend(self.url, **self.options).store
        for quarantine, torn in self.torn_planted:
            assert store.get(quarantine)[0] == torn, f"torn bytes not kept in {quarantine}"


def _run(
    url: str, options: dict[str, Any], seed: int, rounds: list[str], kills_per_round: int
) -> S3CrashRun:
    run = S3CrashRun(url, options, random.Random(seed))
    for durability in rounds:
        run.round(kills=kills_per_round, durability=durability)
        run.check()
        run.plant_torn_chunk()
        run.damage_index()
    run.check()
    print(
        f"S3 crash run: {sum(run.kills.values())} kills {dict(run.kills)},"
        f" {len(run.acknowledged)} acknowledged events checked,"
        f" {len(run.lost)} IDs reserved and lost, {len(run.torn_planted)} torn chunks quarantined"
    )
    return run


@pytest.fixture
def short_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checking writer waits for a killed writer's lease only as long as the writers do."""
    monkeypatch.setattr(S3Backend, "lease_seconds", LEASE_SECONDS)
    monkeypatch.setattr(S3Backend, "seal_grace_seconds", 0.2)


def test_sigkilled_s3_writers_lose_nothing_acknowledged(
    fresh_trail_url: str, s3_options: dict[str, Any], short_lease: None
) -> None:
    run = _run(fresh_trail_url, s3_options, 7, ["fsync", "batch"] * 2, kills_per_round=8)
    assert sum(run.kills.values()) >= 32
    assert run.kills["random"] >= 10 and len(run.kills) >= 5
    assert len(run.acknowledged) > 100


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_sigkilled_s3_writers_lose_nothing_acknowledged_long(
    fresh_trail_url: str, s3_options: dict[str, Any], short_lease: None, seed: int
) -> None:
    run = _run(fresh_trail_url, s3_options, seed, ["fsync", "batch"] * 4, kills_per_round=12)
    assert sum(run.kills.values()) >= 96
    assert set(run.kills) == {"random", *POINTS[1:]}


@pytest.mark.slow
def test_sigkilled_s3_writers_behind_ten_percent_faults_lose_nothing_acknowledged(
    fresh_trail_url: str, s3_endpoint: str, short_lease: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kills of the fast run, with every request of writers and checks through the fault
    proxy (botocore's backoff scaled down in every process)."""
    original = botocore.retryhandler.delay_exponential
    monkeypatch.setattr(
        botocore.retryhandler, "delay_exponential", scaled_backoff(original, BACKOFF_SCALE)
    )
    monkeypatch.setenv(BACKOFF_VARIABLE, str(BACKOFF_SCALE))
    proxy = FaultProxy(s3_endpoint, rate=0.10, seed=3)
    proxy.start()
    try:
        run = _run(fresh_trail_url, options_for(proxy.endpoint), 3, ["fsync", "batch"] * 2, 8)
    finally:
        proxy.stop()
    print(proxy.summary())
    assert sum(run.kills.values()) >= 32
    assert sum(proxy.injected.values()) >= 0.05 * len(proxy.requests)
