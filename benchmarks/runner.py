"""Run one case in a fresh child process and measure it."""

from __future__ import annotations

import multiprocessing
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from benchmarks.baselines import plain_fields
from benchmarks.cases import Case, local_cases, s3_cases
from benchmarks.memory import peak_mb, reset_peak, resident_mb
from benchmarks.workload import WorkloadSpec, line_bytes


@dataclass
class Result:
    """The figures of one case."""

    name: str
    events: int
    seconds: float
    events_per_second: float
    mb_per_second: float
    p50_us: float
    p99_us: float
    peak_rss_mb: float
    writer_rss_mb: float
    error: str | None = None


@dataclass(frozen=True)
class RunSettings:
    """Everything a child needs to rebuild and run its case."""

    spec: WorkloadSpec
    threads: int
    processes: int
    s3_events: int
    workdir: Path
    context: dict[str, Any]


def find_case(name: str, settings: RunSettings) -> Case:
    """The case called ``name`` (children rebuild cases: builders are not picklable)."""
    for case in [*local_cases(settings.threads, settings.processes), *s3_cases(settings.threads)]:
        if case.name == name:
            return case
    raise KeyError(name)


def _event_count(case: Case, settings: RunSettings) -> int:
    return min(settings.spec.events, settings.s3_events) if case.s3 else settings.spec.events


def _drive(
    case: Case, settings: RunSettings, root: Path, count: int, pool: list[dict[str, Any]]
) -> Run:
    """Append ``count`` events of ``pool`` from ``case.threads`` threads and close the writer.

    Times from the first append to the end of ``close()``, with the latency of every call.
    """
    if case.baseline:
        pool = [plain_fields(fields) for fields in pool]
    appender = case.build(root, settings.spec.segment_bytes, settings.context)
    latencies: list[list[int]] = [[] for _ in range(case.threads)]

    def work(worker: int) -> None:
        mine = [pool[i % len(pool)] for i in range(worker, count, case.threads)]
        clock, record = time.perf_counter_ns, latencies[worker].append
        if case.batch > 1:
            append_many = appender.append_many  # type: ignore[attr-defined]
            for start in range(0, len(mine), case.batch):
                began = clock()
                append_many(mine[start : start + case.batch])
                record(clock() - began)
        else:
            append = appender.append
            for fields in mine:
                began = clock()
                append(fields)
                record(clock() - began)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(case.threads)]
    reset_peak()
    resident = resident_mb()
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    appender.close()
    seconds = time.perf_counter() - began
    peak = peak_mb()
    return Run(
        seconds,
        [latency for per_thread in latencies for latency in per_thread],
        peak,
        peak - resident,
    )


class Run(NamedTuple):
    """What one process measured."""

    seconds: float
    latencies_ns: list[int]
    peak_rss_mb: float
    #: how far the peak rose above the resident size just before the first append
    writer_rss_mb: float


def _process_worker(
    name: str, settings: RunSettings, root: Path, count: int, start: Any, results: Any
) -> None:
    case = find_case(name, settings)
    pool = settings.spec.pool()
    start.wait()
    results.put(_drive(case, settings, root, count, pool))


def _drive_processes(case: Case, settings: RunSettings, root: Path, count: int) -> Run:
    """Like ``_drive`` from ``case.processes`` processes started together; the slowest counts."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(case.processes + 1), context.Queue()
    share = count // case.processes
    workers = [
        context.Process(
            target=_process_worker, args=(case.name, settings, root, share, start, results)
        )
        for _ in range(case.processes)
    ]
    for worker in workers:
        worker.start()
    start.wait()
    runs: list[Run] = [results.get() for _ in workers]
    for worker in workers:
        worker.join()
    return Run(
        max(run.seconds for run in runs),
        [latency for run in runs for latency in run.latencies_ns],
        sum(run.peak_rss_mb for run in runs),
        sum(run.writer_rss_mb for run in runs),
    )


def measure(name: str, settings: RunSettings, attempt: int = 0) -> Result:
    """Run case ``name`` here (meant to be a fresh child process) on a new trail and return
    its figures."""
    case = find_case(name, settings)
    count = _event_count(case, settings)
    root = settings.workdir / f"case-{zlib.crc32(name.encode()):08x}-{attempt}"
    pool = settings.spec.pool()
    if case.processes > 1:
        run = _drive_processes(case, settings, root, count)
        count = count // case.processes * case.processes
    else:
        run = _drive(case, settings, root, count, pool)
    sizes = [line_bytes(fields) for fields in pool]
    total_bytes = sum(sizes[i % len(pool)] for i in range(count))
    ordered = sorted(run.latencies_ns)
    return Result(
        name=name,
        events=count,
        seconds=run.seconds,
        events_per_second=count / run.seconds,
        mb_per_second=total_bytes / run.seconds / 1e6,
        p50_us=ordered[len(ordered) // 2] / 1000,
        p99_us=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1000,
        peak_rss_mb=run.peak_rss_mb,
        writer_rss_mb=run.writer_rss_mb,
    )
