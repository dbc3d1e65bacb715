"""Crash safety on S3, through the crash kit of ``trailstore.testing``: writer processes
SIGKILLed at random moments and, every other one, at a named point of the protocol (before and
after a commit's claim, before and after sealing, in the middle of a checkpoint;
``_s3_crash_setup.py``). Between rounds half a line is planted at the end of an open segment
(as a gateway that is not atomic or a damaged copy would leave it) and must end up in
quarantine, and ``index.json`` is made to lag, garbled or removed: no writer relies on it."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import botocore.retryhandler
import pytest
from _fault_proxy import BACKOFF_SCALE, FaultProxy, scaled_backoff
from _s3_crash_setup import POINTS
from conftest import options_for
from trailstore_s3.backend import S3Backend

from trailstore.backends.logged import LogBackend
from trailstore.testing import CrashKit
from trailstore.testing.conformance import append_raw_to_log

LEASE_SECONDS = 3.0
#: the stop point of a writer never reached within this time after it opened: kill it anyway
POINT_TIMEOUT = 4.0


@dataclass
class S3CrashKit(CrashKit):
    """Every other writer stops at the protocol points in turn; the rest die at random."""

    segment_bytes: int = 2000
    setup: str | None = "_s3_crash_setup:install"
    backoff_scale: float | None = None
    torn_planted: list[tuple[str, bytes]] = field(default_factory=list)

    def setup_arguments(self, spawned: int) -> dict[str, Any]:
        point = POINTS[spawned // 2 % len(POINTS)] if spawned % 2 else "none"
        return {
            "point": point,
            "skip": self.rng.randint(0, 3),
            "lease": LEASE_SECONDS,
            "backoff_scale": self.backoff_scale,
        }

    def kill_window(self, arguments: dict[str, Any]) -> float:
        return POINT_TIMEOUT if arguments["point"] != "none" else 0.8

    def between_rounds(self) -> None:
        self._plant_torn_line()
        self._damage_index()

    def _plant_torn_line(self) -> None:
        """Half a line at the end of some stream's open segment, as a gateway that is not
        atomic or a damaged copy may leave it; the next writer's open must quarantine it."""
        backend = S3Backend(self.url, **self.storage_options)
        state = backend.store.open_state()
        if state is None or not state.streams:
            return
        stream, segment = self.rng.choice(sorted(state.streams.items()))
        torn = b'{"event_id":%d,"timestamp":1.0,"doma' % (state.reserved_through + 1)
        append_raw_to_log(backend, stream.domain, stream.category, torn)
        self.torn_planted.append((backend.store.layout.quarantine(stream, segment.number), torn))

    def _damage_index(self) -> None:
        """Leave ``index.json`` lagging (in the original format), garbled or removed."""
        backend = S3Backend(self.url, **self.storage_options)
        index = f"{backend.location.root}/index.json"
        match self.rng.choice(["keep", "lagging", "garbage", "missing"]):
            case "lagging":
                lagging = b'{"last_event_id": %d}' % (max(self.acknowledged, default=0) // 2)
                backend.fs.pipe_file(index, lagging)
            case "garbage":
                backend.fs.pipe_file(index, b"\x00{garbage")
            case "missing":
                backend.fs.rm_file(index)

    def check(self) -> dict[int, bytes]:
        found = super().check()
        fs = S3Backend(self.url, **self.storage_options).fs
        for quarantine, torn in self.torn_planted:
            assert fs.cat_file(quarantine) == torn + b"\n", f"torn bytes not kept in {quarantine}"
        return found


def _run(
    url: str,
    options: dict[str, Any],
    seed: int,
    rounds: list[str],
    kills_per_round: int,
    **kit: Any,
) -> S3CrashKit:
    run = S3CrashKit(url, options, random.Random(seed), **kit)
    for durability in rounds:
        run.round(kills=kills_per_round, durability=durability)
        run.check()
        run.between_rounds()
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
    monkeypatch.setattr(LogBackend, "lease_seconds", LEASE_SECONDS)


def test_sigkilled_s3_writers_lose_nothing_acknowledged(
    fresh_trail_url: str, s3_options: dict[str, Any], short_lease: None
) -> None:
    run = _run(fresh_trail_url, s3_options, 7, ["fsync", "batch"] * 2, kills_per_round=8)
    assert sum(run.kills.values()) >= 32
    assert run.kills["random"] >= 10 and len(run.kills) >= 4  # random and protocol points
    assert len(run.acknowledged) >= 20  # not a vacuous run


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_sigkilled_s3_writers_lose_nothing_acknowledged_long(
    fresh_trail_url: str, s3_options: dict[str, Any], short_lease: None, seed: int
) -> None:
    run = _run(fresh_trail_url, s3_options, seed, ["fsync", "batch"] * 4, kills_per_round=12)
    assert sum(run.kills.values()) >= 96
    assert set(run.kills) >= {"random", *POINTS[1:5]}  # mid-checkpoint only when reached


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
    proxy = FaultProxy(s3_endpoint, rate=0.10, seed=3)
    proxy.start()
    try:
        run = _run(
            fresh_trail_url,
            options_for(proxy.endpoint),
            3,
            ["fsync", "batch"] * 2,
            8,
            backoff_scale=BACKOFF_SCALE,
        )
    finally:
        proxy.stop()
    print(proxy.summary())
    assert sum(run.kills.values()) >= 32
    assert sum(proxy.injected.values()) >= 0.05 * len(proxy.requests)
