"""Turn results into ratios, tables (text and Markdown), JSON and a chart."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.cases import BARE, NAIVE, NAIVE_S3, NO_CHECKPOINTS, STDLIB
from benchmarks.runner import Result
from benchmarks.scans import LongRun

HEADER = [
    "writer",
    "events",
    "events/s (x naive)",
    "MB/s (x)",
    "p50 us (x)",
    "p99 us (x)",
    "peak RSS MB (x)",
    "writer MB",
]
TARGET_HEADER = ["target", "goal", "measured", "met"]


@dataclass
class Target:
    """One line of the target table, with what this run measured."""

    configuration: str
    goal: str
    measured: str
    met: bool


def _rate(results: dict[str, Result], pattern: str) -> float | None:
    """Events/s of the first successful case whose whole name matches ``pattern``."""
    for name, result in results.items():
        if re.fullmatch(pattern, name) and not result.error:
            return result.events_per_second
    return None


def targets(results: dict[str, Result], long_run: LongRun | None) -> list[Target]:
    """Evaluate every target this run has figures for."""
    found: list[Target] = []

    def ratio(configuration: str, case: str, baseline: str, goal: float) -> None:
        rate, base = _rate(results, case), _rate(results, re.escape(baseline))
        if rate is not None and base:
            value = rate / base
            found.append(
                Target(configuration, f">= {goal:g}x {baseline}", f"{value:.1f}x", value >= goal)
            )

    ratio("local fsync, 1 thread", "trailstore local fsync", NAIVE, 3)
    ratio("local fsync, threads", r"trailstore local fsync, \d+ threads", NAIVE, 10)
    ratio("local flush, 1 thread", "trailstore local flush", NAIVE, 20)
    ratio("local flush, 1 thread", "trailstore local flush", STDLIB, 2)
    ratio("local batch, 1 thread", "trailstore local batch", NAIVE, 30)
    ratio("local batch, 1 thread", "trailstore local batch", BARE, 0.6)
    ratio(
        "local append_events(1000), fsync",
        r"trailstore local fsync, append_events\(1000\)",
        NAIVE,
        50,
    )
    ratio(
        "checkpoints, local flush",
        "trailstore local flush",
        f"trailstore local flush, {NO_CHECKPOINTS}",
        0.9,
    )
    ratio(
        "checkpoints, local fsync",
        "trailstore local fsync",
        f"trailstore local fsync, {NO_CHECKPOINTS}",
        0.95,
    )
    ratio("S3 fsync, 1 thread", "trailstore S3 fsync", NAIVE_S3, 2)
    ratio("S3 fsync, threads", r"trailstore S3 fsync, \d+ threads", NAIVE_S3, 5)
    ratio("S3 batch, 1 thread", "trailstore S3 batch", NAIVE_S3, 100)
    if long_run is None:
        return found
    growth, scan = long_run.growth_mb, long_run.scan
    found.append(Target("writer memory", "< 20 MB growth", f"{growth:.1f} MB", growth < 20))
    speed = scan.full_scan_events_per_second
    found.append(
        Target("reader full scan", ">= 150k events/s", f"{speed / 1000:.0f}k/s", speed >= 150_000)
    )
    found.append(
        Target(
            "reader min_event_id near the end",
            ">= 20x full scan",
            f"{scan.tail_speedup:.0f}x",
            scan.tail_speedup >= 20,
        )
    )
    for configuration, speedup in (
        ("reader min_timestamp, newest 1,000", scan.time_speedup),
        ("reader tail(1000) / query --last", scan.last_speedup),
    ):
        found.append(Target(configuration, ">= 20x full scan", f"{speedup:.0f}x", speedup >= 20))
    verify = long_run.verify
    share = verify.full_share_of_sha256
    found.append(
        Target(
            "verify --full",
            ">= 0.8x hashlib.sha256 MB/s",
            f"{share:.2f}x ({verify.full_mb_per_second:,.0f} MB/s)",
            share >= 0.8,
        )
    )
    zstd = long_run.lifecycle.codec("zstd")
    if zstd is not None:
        share = zstd.read_mb_per_second / long_run.lifecycle.plain_read_mb_per_second
        found.append(
            Target(
                "read from a zstd archive",
                ">= 0.5x plain segments MB/s",
                f"{share:.2f}x ({zstd.read_mb_per_second:,.0f} MB/s)",
                share >= 0.5,
            )
        )
    found.append(
        Target(
            f"verify after {verify.added_events:,} new events",
            "< 1% of verify --full",
            f"{verify.incremental_share:.2%}",
            verify.incremental_share < 0.01,
        )
    )
    return found


def _with_ratio(
    value: float, base: float | None, *, lower_is_better: bool = False, digits: int = 0
) -> str:
    """``value`` and, in brackets, how many times better than ``base`` it is."""
    text = f"{value:,.{digits}f}"
    if base and value:
        factor = base / value if lower_is_better else value / base
        text += f" ({factor:.1f}x)"
    return text


def _figure(
    result: Result, naive: Result | None, name: str, lower_is_better: bool = False, digits: int = 0
) -> str:
    base = getattr(naive, name) if naive else None
    return _with_ratio(getattr(result, name), base, lower_is_better=lower_is_better, digits=digits)


def result_rows(results: dict[str, Result]) -> list[list[str]]:
    """Rows of the main table: every figure with its ratio to the naive writer's (higher is
    better for every ratio: for latency and memory it is naive / this)."""
    naive = results.get(NAIVE)
    rows = []
    for result in results.values():
        if result.error:
            rows.append([result.name, "error: " + result.error[:70], "", "", "", "", "", ""])
            continue

        rows.append(
            [
                result.name,
                f"{result.events:,}",
                _figure(result, naive, "events_per_second"),
                _figure(result, naive, "mb_per_second", digits=2),
                _figure(result, naive, "p50_us", lower_is_better=True),
                _figure(result, naive, "p99_us", lower_is_better=True),
                _figure(result, naive, "peak_rss_mb", lower_is_better=True),
                f"{result.writer_rss_mb:.1f}",
            ]
        )
    return rows


def target_rows(found: list[Target]) -> list[list[str]]:
    """Rows of the target table."""
    return [[t.configuration, t.goal, t.measured, "yes" if t.met else "NO"] for t in found]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(header: list[str], rows: list[list[str]]) -> str:
    """A plain table with aligned columns for the terminal."""
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]

    def render(row: list[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))

    return "\n".join(
        [render(header), render(["-" * width for width in widths]), *map(render, rows)]
    )


def write_outputs(
    out: Path, payload: dict[str, Any], markdown: str, results: dict[str, Result]
) -> list[Path]:
    """Write ``results.json``, ``results.md`` and ``results.png`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    (out / "results.md").write_text(markdown + "\n")
    draw_chart(results, out / "results.png")
    return [out / "results.json", out / "results.md", out / "results.png"]


def draw_chart(results: dict[str, Result], path: Path) -> None:
    """Horizontal bars of events/s on a log scale; baselines grey, trailstore blue."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [result for result in results.values() if not result.error][::-1]
    names = [result.name for result in measured]
    rates = [result.events_per_second for result in measured]
    colours = ["#1f77b4" if name.startswith("trailstore") else "#9e9e9e" for name in names]
    figure, axes = plt.subplots(figsize=(10, 0.45 * len(names) + 1.5))
    axes.barh(names, rates, color=colours)
    axes.set_xscale("log")
    axes.set_xlabel("events per second (log scale)")
    axes.set_title("trailstore and the alternatives, one harness run on one machine")
    for position, rate in enumerate(rates):
        axes.text(rate, position, f" {rate:,.0f}", va="center", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
