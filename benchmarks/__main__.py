"""``python -m benchmarks``: run the comparison and write results.json/.md/.png."""

from __future__ import annotations

import importlib.util
import logging
import multiprocessing
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import click

from benchmarks.cases import local_cases, s3_cases
from benchmarks.evidence import verify_speed
from benchmarks.export import export_figures
from benchmarks.follow import follow_latency
from benchmarks.lifecycle import lifecycle_figures
from benchmarks.report import (
    HEADER,
    TARGET_HEADER,
    markdown_table,
    result_rows,
    target_rows,
    targets,
    text_table,
    write_outputs,
)
from benchmarks.runner import Result, RunSettings, measure
from benchmarks.scans import LongRun, scan, writer_peak_rss_mb
from benchmarks.workload import WorkloadSpec
from trailstore.progress import ProgressBar

DESCRIPTION = """\
Run one realistic CRUD workload (payloads of about 200-2000 bytes over four streams) through
trailstore in every durability mode and through the writers people use instead, each case in a
fresh process, and report events/s, MB/s, p50/p99 append latency and peak RSS, each as a ratio
to the naive per-event writer measured in the same run. Also measures, over a long run's trail:
writer memory growth; reader speed (full scan; the newest 1,000 events by ID, by time and by
tail()); follow latency from a writer process; export to CSV and Parquet; verification speed;
and the lifecycle (compression per codec, reading from a zstd archive, archiving to S3 against
a plain s3fs copy). S3 cases run against a moto server on 127.0.0.1 when the trailstore-s3
plugin is installed.
"""


@dataclass(frozen=True)
class Arguments:
    """The harness's settings, as given on the command line (recorded with the results)."""

    events: int
    threads: int
    processes: int
    segment_bytes: int
    s3_events: int
    memory_events: int
    no_s3: bool
    only: tuple[str, ...]
    rounds: int
    quick: bool
    out: Path
    workdir: Path | None

    def scaled(self) -> Arguments:
        """These settings, with ``--quick``'s small counts and one round when it is given."""
        if not self.quick:
            return self
        return replace(self, events=1_000, s3_events=300, memory_events=20_000, rounds=1)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _moto_server() -> Iterator[dict[str, Any]]:
    """A moto S3 server on 127.0.0.1 with one bucket, for the S3 cases."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    options = {"endpoint_url": endpoint, "key": "bench", "secret": "bench"}
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket="bench")
    try:
        yield {"s3_bucket": "bench", "s3_storage_options": options}
    finally:
        server.stop()


def _in_child(function: Any, *arguments: Any) -> Any:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *arguments).result()


def _run_cases(settings: RunSettings, names: list[str], rounds: int) -> dict[str, Result]:
    """Run every case ``rounds`` times, round after round (so drift of the machine hits every
    case alike), each run in a fresh process; keep each case's median run by events/s."""
    runs: dict[str, list[Result]] = {name: [] for name in names}
    with ProgressBar(len(names) * rounds, "writers", enabled=sys.stderr.isatty()) as bar:
        for attempt in range(rounds):
            for name in names:
                print(f"  round {attempt + 1}/{rounds}: {name}", file=sys.stderr, flush=True)
                try:
                    runs[name].append(_in_child(measure, name, settings, attempt))
                except Exception as exc:  # a failing contestant is reported, not fatal
                    error = f"{type(exc).__name__}: {exc}"
                    runs[name].append(Result(name, 0, 0, 0, 0, 0, 0, 0, 0, error))
                bar.advance()
    return {name: _median(results) for name, results in runs.items()}


def _median(results: list[Result]) -> Result:
    failed = [result for result in results if result.error]
    if failed:
        return failed[0]
    return sorted(results, key=lambda result: result.events_per_second)[len(results) // 2]


def _long_run(spec: WorkloadSpec, workdir: Path, events: int, context: dict[str, Any]) -> LongRun:
    """Writer peak RSS after ``events // 100`` and ``events`` events, then reader scans,
    verification and the lifecycle (archive, compressed reads) over its trail."""
    print(
        "  running: writer memory, reader scans, verify, archive, follow",
        file=sys.stderr,
        flush=True,
    )
    small = max(1, events // 100)
    return LongRun(
        small,
        events,
        _in_child(writer_peak_rss_mb, spec, workdir / "memory-small", small),
        _in_child(writer_peak_rss_mb, spec, workdir / "memory-large", events),
        _in_child(scan, workdir / "memory-large"),
        _in_child(verify_speed, spec, workdir / "memory-large"),
        _in_child(lifecycle_figures, workdir, context, max(events // 5, 5000)),
        _in_child(follow_latency, spec, workdir / "follow", max(events // 500, 500)),
        _in_child(export_figures, workdir / "memory-large"),
    )


@click.command(
    help=DESCRIPTION,
    # \b keeps click from rewrapping the examples
    epilog="\b\nexamples:\n  python -m benchmarks\n  python -m benchmarks --quick --out /tmp/bench",
)
@click.option("--events", default=10_000, show_default=True, help="events per writer case")
@click.option("--threads", default=8, show_default=True, help="threads of the concurrent rows")
@click.option("--processes", default=1, show_default=True, help="add a multi-process row (>1)")
@click.option("--segment-bytes", default=5 * 1024 * 1024, show_default=True, help="rotation size")
@click.option("--s3-events", default=2_000, show_default=True, help="events per S3 case")
@click.option("--memory-events", default=1_000_000, show_default=True, help="long-run events")
@click.option("--no-s3", is_flag=True, help="skip the S3 cases")
@click.option(
    "--only", multiple=True, metavar="TEXT", help="run only writers whose name contains TEXT"
)
@click.option(
    "--rounds", default=3, show_default=True, help="runs per writer; the median is reported"
)
@click.option("--quick", is_flag=True, help="small counts, one round: a smoke run")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("benchmarks/results"),
    show_default=True,
    help="output dir",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="where trails are written (default: temp)",
)
def main(**options: Any) -> None:
    """Run the harness (targets are reported, not enforced)."""
    arguments = Arguments(**options).scaled()
    spec = WorkloadSpec(events=arguments.events, segment_bytes=arguments.segment_bytes)
    use_s3 = not arguments.no_s3 and importlib.util.find_spec("trailstore_s3") is not None
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=arguments.workdir) as scratch:
        workdir = Path(scratch)
        with _moto_server() if use_s3 else _no_server() as context:
            settings = RunSettings(
                spec, arguments.threads, arguments.processes, arguments.s3_events, workdir, context
            )
            names = [case.name for case in local_cases(arguments.threads, arguments.processes)]
            names += [case.name for case in s3_cases(arguments.threads)] if use_s3 else []
            if arguments.only:
                names = [name for name in names if any(text in name for text in arguments.only)]
            results = _run_cases(settings, names, arguments.rounds)
            long_run = (
                None
                if arguments.only
                else _long_run(spec, workdir, arguments.memory_events, context)
            )
    rows = result_rows(results)
    goal_rows = target_rows(targets(results, long_run))
    summary = (
        f"workload: {arguments.events:,} events per case ({arguments.s3_events:,} for S3), "
        f"median of {arguments.rounds} run(s) each, "
        f"{arguments.threads} threads in the concurrent rows, segments of "
        f"{arguments.segment_bytes:,} bytes" + (f"; {long_run.describe()}" if long_run else "")
    )
    markdown = "\n\n".join(
        [markdown_table(HEADER, rows), markdown_table(TARGET_HEADER, goal_rows), summary]
    )
    payload = {
        "settings": {key: str(value) for key, value in asdict(arguments).items()},
        "results": [asdict(result) for result in results.values()],
        "long_run": asdict(long_run) if long_run else None,
        "targets": [dict(zip(TARGET_HEADER, row, strict=True)) for row in goal_rows],
        "s3": use_s3,
    }
    written = write_outputs(arguments.out, payload, markdown, results)
    print(text_table(HEADER, rows))
    print()
    print(text_table(TARGET_HEADER, goal_rows))
    print()
    print(summary)
    print(f"\nwrote {', '.join(map(str, written))} in {time.perf_counter() - started:.0f} s")


@contextmanager
def _no_server() -> Iterator[dict[str, Any]]:
    yield {}


if __name__ == "__main__":
    main()
