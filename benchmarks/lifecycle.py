"""Lifecycle figures: how well each codec compresses the workload's sealed segments, how fast
a trail pruned into an archive reads back across both tiers against its plain segments, and
how fast ``archive`` uploads to the S3 server against a plain ``s3fs`` copy of the same
segment files."""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trailstore.demo import Workload
from trailstore.lifecycle import Codec, RetentionRule, archive_trail, prune_trail
from trailstore.reader import AuditTrailReader
from trailstore.writer import AuditTrailWriter

#: segments of 1 MiB, so that a trail of moderate size has many sealed ones
SEGMENT_BYTES = 1024 * 1024


@dataclass
class CodecResult:
    codec: str
    segment_mb: float
    stored_mb: float
    archive_mb_per_second: float
    read_mb_per_second: float

    @property
    def ratio(self) -> float:
        """Stored bytes as a share of the segments' bytes."""
        return self.stored_mb / self.segment_mb


@dataclass
class LifecycleResult:
    """Per codec, archiving to a local directory and reading a trail pruned into it; the plain
    trail's read speed; and the S3 archive against a plain copy, if an S3 server ran."""

    events: int
    plain_read_mb_per_second: float
    codecs: list[CodecResult] = field(default_factory=list)
    s3_copy_mb_per_second: float | None = None
    s3_archive_mb_per_second: dict[str, float] = field(default_factory=dict)
    s3_mb: float = 0.0

    def codec(self, name: str) -> CodecResult | None:
        return next((result for result in self.codecs if result.codec == name), None)

    def describe(self) -> str:
        parts = [
            f"{result.codec}: stored {result.ratio:.1%} of {result.segment_mb:,.0f} MB, "
            f"archived at {result.archive_mb_per_second:,.0f} MB/s, read back at "
            f"{result.read_mb_per_second:,.0f} MB/s"
            for result in self.codecs
        ]
        text = (
            f"lifecycle over {self.events:,} distinct events: plain segments read at "
            f"{self.plain_read_mb_per_second:,.0f} MB/s; "
        ) + ("; ".join(parts) or "no sealed segment to archive")
        if self.s3_copy_mb_per_second is not None:
            archived = ", ".join(
                f"{codec} {speed:,.1f} MB/s"
                for codec, speed in self.s3_archive_mb_per_second.items()
            )
            text += (
                f"; to the S3 server ({self.s3_mb:,.0f} MB of sealed segments): plain s3fs copy "
                f"{self.s3_copy_mb_per_second:,.1f} MB/s, trailstore archive {archived}"
            )
        return text


def _read_mb_per_second(root: Path, archive: Path | None = None) -> float:
    """Read every line through ``AuditTrailReader`` (parsing each, as readers do)."""
    reader = AuditTrailReader(root_path=root, archive=None if archive is None else str(archive))
    began = time.perf_counter()
    size = sum(len(line) for line in reader.iter_lines())
    return size / (time.perf_counter() - began) / 1e6


def _distinct_trail(root: Path, events: int, seed: int) -> None:
    """A trail of ``events`` events all distinct (the writer cases cycle a pool of them, which
    would flatter compression), in segments of 1 MiB."""
    with AuditTrailWriter(
        root_path=root, durability="batch", max_file_size_bytes=SEGMENT_BYTES
    ) as writer:
        for fields in Workload(seed).events(events):
            writer.append_event(**fields)


def lifecycle_figures(workdir: Path, context: dict[str, Any], events: int) -> LifecycleResult:
    """Write a trail of distinct events; archive it with each codec, prune a copy of it to its
    open segments and read that copy across both tiers; then the S3 comparison. Run in a
    fresh process."""
    root = workdir / "lifecycle-trail"
    _distinct_trail(root, events, seed=11)
    _read_mb_per_second(root)  # pages cached before any timing
    result = LifecycleResult(events, plain_read_mb_per_second=_read_mb_per_second(root))
    for codec in Codec:
        archive = workdir / f"archive-{codec.value}"
        began = time.perf_counter()
        report = archive_trail(root, archive, codec=codec)
        seconds = time.perf_counter() - began
        if not report.bytes_read:
            return result  # no segment is sealed (a tiny run): nothing to measure
        pruned = workdir / f"pruned-{codec.value}"
        shutil.copytree(root, pruned)
        prune_trail(pruned, RetentionRule(keep_bytes=0), archive=str(archive))
        result.codecs.append(
            CodecResult(
                codec=codec.value,
                segment_mb=report.bytes_read / 1e6,
                stored_mb=report.bytes_stored / 1e6,
                archive_mb_per_second=report.bytes_read / seconds / 1e6,
                read_mb_per_second=_read_mb_per_second(pruned, archive),
            )
        )
        shutil.rmtree(pruned)
    if "s3_storage_options" in context:
        _s3_figures(result, root, context)
    return result


def _s3_figures(result: LifecycleResult, root: Path, context: dict[str, Any]) -> None:
    """Archive the trail's sealed segments to S3 (each codec, fresh prefixes) and copy the
    same segment files there with ``s3fs.put_file``, side by side."""
    import s3fs

    options, bucket = context["s3_storage_options"], context["s3_bucket"]
    sealed = sorted(
        seal.with_name(seal.name.replace(".seal.json", ".jsonl"))
        for seal in root.glob("*/*/audit-*.seal.json")
    )
    size = sum(path.stat().st_size for path in sealed)
    result.s3_mb = size / 1e6
    fs = s3fs.S3FileSystem(**options)
    prefix = f"{bucket}/copy-{uuid.uuid4().hex[:8]}"
    began = time.perf_counter()
    for path in sealed:
        fs.put_file(str(path), f"{prefix}/{path.relative_to(root)}")
    result.s3_copy_mb_per_second = size / (time.perf_counter() - began) / 1e6
    for codec in (Codec.NONE, Codec.ZSTD):
        target = f"s3://{bucket}/archive-{codec.value}-{uuid.uuid4().hex[:8]}"
        began = time.perf_counter()
        report = archive_trail(root, target, codec=codec, archive_options=options)
        seconds = time.perf_counter() - began
        if report.bytes_read != size or report.problems:
            raise AssertionError(f"the S3 archive did not take every sealed segment: {report}")
        result.s3_archive_mb_per_second[codec.value] = size / seconds / 1e6
