"""Writer memory over a long run, and reader speed over the trail it leaves."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.evidence import VerifyResult
from benchmarks.export import ExportBenchmark
from benchmarks.follow import FollowResult
from benchmarks.lifecycle import LifecycleResult
from benchmarks.memory import peak_mb, reset_peak
from benchmarks.workload import WorkloadSpec
from trailstore.reader import AuditTrailReader
from trailstore.writer import AuditTrailWriter


@dataclass
class ScanResult:
    """Reader figures over a trail of ``events`` events."""

    events: int
    full_scan_seconds: float
    full_scan_events_per_second: float
    tail_query_seconds: float
    tail_speedup: float
    #: a ``min_timestamp`` query for the newest ``tail`` events (sealed segments skipped)
    time_query_seconds: float
    time_speedup: float
    #: ``AuditTrailReader.tail(tail)``: the same events read from the end
    last_seconds: float
    last_speedup: float


@dataclass
class LongRun:
    """Writer memory over a short and a long run, and the reader over the long run's trail."""

    small_events: int
    large_events: int
    small_rss_mb: float
    large_rss_mb: float
    scan: ScanResult
    verify: VerifyResult
    lifecycle: LifecycleResult
    follow: FollowResult
    export: ExportBenchmark

    @property
    def growth_mb(self) -> float:
        """Peak RSS growth from the short to the long run."""
        return self.large_rss_mb - self.small_rss_mb

    def describe(self) -> str:
        """One sentence for the summary."""
        return (
            f"writer peak RSS {self.small_rss_mb:.0f} MB after {self.small_events:,} events, "
            f"{self.large_rss_mb:.0f} MB after {self.large_events:,}; reader over "
            f"{self.scan.events:,} events: full scan {self.scan.full_scan_seconds:.2f} s, "
            f"the newest 1,000 by min_event_id in {self.scan.tail_query_seconds * 1000:.1f} ms, "
            f"by min_timestamp in {self.scan.time_query_seconds * 1000:.1f} ms, "
            f"by tail() in {self.scan.last_seconds * 1000:.1f} ms; {self.follow.describe()}; "
            f"{self.export.describe()}; "
            f"{self.verify.describe()}; {self.lifecycle.describe()}"
        )


def writer_peak_rss_mb(spec: WorkloadSpec, root: Path, events: int) -> float:
    """Append ``events`` events in batch mode (run in a fresh process); return the peak RSS in
    MB while appending (the workload pool already in memory included)."""
    pool = spec.pool()
    reset_peak()
    with AuditTrailWriter(
        root_path=root, durability="batch", max_file_size_bytes=spec.segment_bytes
    ) as writer:
        for fields in itertools.islice(itertools.cycle(pool), events):
            writer.append_event(**fields)
    return peak_mb()


def scan(root: Path, tail: int = 1000) -> ScanResult:
    """Time a full scan, then three ways to the newest ``tail`` events: by ``min_event_id``,
    by ``min_timestamp`` (the time of the oldest of them) and by ``tail()``; each is checked
    against the full scan."""
    reader = AuditTrailReader(root_path=root)
    began = time.perf_counter()
    stamps = [event.timestamp for event in reader.iter_events()]
    full = time.perf_counter() - began
    events = len(stamps)
    last = reader.backend.last_event_id()
    by_id, found = _timed(lambda: sum(1 for _ in reader.iter_events(min_event_id=last - tail + 1)))
    _expect("min_event_id", found, min(tail, events))
    since = stamps[-tail]
    by_time, found = _timed(lambda: sum(1 for _ in reader.iter_events(min_timestamp=since)))
    _expect("min_timestamp", found, sum(1 for stamp in stamps if stamp >= since))
    newest, found = _timed(lambda: len(reader.tail(tail)))
    _expect("tail", found, min(tail, events))
    return ScanResult(
        events,
        full,
        events / full,
        by_id,
        full / by_id,
        by_time,
        full / by_time,
        newest,
        full / newest,
    )


def _timed(work: Callable[[], int]) -> tuple[float, int]:
    began = time.perf_counter()
    found = work()
    return time.perf_counter() - began, found


def _expect(query: str, found: int, expected: int) -> None:
    if found != expected:
        raise AssertionError(f"the {query} query found {found} events, expected {expected}")
