"""Export figures: how fast, and in how much memory, a trail becomes Parquet (CSV beside it)."""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.memory import peak_mb, reset_peak, resident_mb
from trailstore.export import ExportFormat, export_events
from trailstore.reader import AuditTrailReader


@dataclass
class ExportFigures:
    """One export of a whole trail: speed, the process's memory before and at its peak, and
    the size of what it wrote."""

    format: str
    events: int
    seconds: float
    resident_before_mb: float
    peak_mb: float
    output_mb: float

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds

    @property
    def growth_mb(self) -> float:
        """What the export added to the process's resident memory at its peak."""
        return self.peak_mb - self.resident_before_mb


@dataclass
class ExportBenchmark:
    parquet: ExportFigures
    csv: ExportFigures

    def describe(self) -> str:
        """One sentence for the summary."""
        return f"export of {self.parquet.events:,} events: " + "; ".join(
            f"{figures.format} {figures.events_per_second:,.0f} events/s, peak RSS "
            f"{figures.peak_mb:,.0f} MB (+{figures.growth_mb:,.0f} MB), {figures.output_mb:,.1f} MB"
            for figures in (self.parquet, self.csv)
        )


def _export(root: Path, format: ExportFormat, directory: Path) -> ExportFigures:
    reader = AuditTrailReader(root_path=root)
    destination = directory / f"export.{format.value}"
    before = resident_mb()
    reset_peak()
    began = time.perf_counter()
    result = export_events(reader, destination, format=format)
    seconds = time.perf_counter() - began
    peak = peak_mb()
    destination.unlink()
    return ExportFigures(format.value, result.events, seconds, before, peak, result.bytes / 1e6)


def export_figures(root: Path) -> ExportBenchmark:
    """Export the trail at ``root`` to CSV, then to Parquet, into a scratch directory beside
    it (run in a fresh process: CSV first, so that its peak does not include pyarrow)."""
    sum(1 for _ in AuditTrailReader(root_path=root).iter_lines())  # pages cached before timing
    with tempfile.TemporaryDirectory(dir=root.parent, prefix="export-") as scratch:
        csv = _export(root, ExportFormat.CSV, Path(scratch))
        parquet = _export(root, ExportFormat.PARQUET, Path(scratch))
    return ExportBenchmark(parquet=parquet, csv=csv)
