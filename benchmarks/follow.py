"""Follow latency: from ``append_event`` returning in a writer process to the event coming
out of ``AuditTrailReader.follow`` in another."""

from __future__ import annotations

import multiprocessing
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.workload import WorkloadSpec
from trailstore.reader import AuditTrailReader
from trailstore.writer import AuditTrailWriter


@dataclass
class FollowResult:
    """Latency percentiles of events followed live."""

    events: int
    poll_interval: float
    p50_ms: float
    p99_ms: float

    def describe(self) -> str:
        """One phrase for the summary."""
        return (
            f"follow latency over {self.events:,} events (poll every {self.poll_interval} s): "
            f"p50 {self.p50_ms:.0f} ms, p99 {self.p99_ms:.0f} ms"
        )


def _append_paced(root: str, spec: WorkloadSpec, events: int, pause: float, sent: Any) -> None:
    """Append ``events`` events with fsync, ``pause`` seconds apart; report when each
    append returned (wall clock, comparable across processes)."""
    pool = spec.pool()
    returned: dict[int, float] = {}
    with AuditTrailWriter(
        root_path=root, durability="fsync", max_file_size_bytes=spec.segment_bytes
    ) as writer:
        for number in range(events):
            event_id = writer.append_event(**pool[number % len(pool)]).event_id
            returned[event_id] = time.time()
            time.sleep(pause)
    sent.put(returned)


def follow_latency(spec: WorkloadSpec, root: Path, events: int = 2000) -> FollowResult:
    """Follow a trail while a writer process appends to it at about 500 events/s."""
    with AuditTrailWriter(root_path=root) as writer:
        writer.append_event(**spec.pool()[0])
    reader = AuditTrailReader(root_path=root)
    seen: dict[int, float] = {}
    stop = threading.Event()

    def follow() -> None:
        for event in reader.follow(stop=stop):
            seen[event.event_id] = time.time()

    follower = threading.Thread(target=follow)
    follower.start()
    context = multiprocessing.get_context("spawn")
    sent = context.Queue()
    writer_process = context.Process(
        target=_append_paced, args=(str(root), spec, events, 0.002, sent)
    )
    writer_process.start()
    returned: dict[int, float] = sent.get(timeout=600)
    writer_process.join()
    deadline = time.monotonic() + 30
    while len(seen) < len(returned) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    follower.join()
    missing = returned.keys() - seen.keys()
    if missing:
        raise AssertionError(f"{len(missing)} appended events were never followed")
    latencies = sorted((seen[event_id] - at) * 1000 for event_id, at in returned.items())
    percentiles = statistics.quantiles(latencies, n=100)
    interval = reader.backend.follow_poll_interval
    return FollowResult(len(latencies), interval, percentiles[49], percentiles[98])
