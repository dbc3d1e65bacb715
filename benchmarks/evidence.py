"""Verification speed over the long run's trail: ``verify --full`` against ``hashlib.sha256``
over the same segment bytes, and an incremental verify after 1,000 more events."""

from __future__ import annotations

import hashlib
import itertools
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.workload import WorkloadSpec
from trailstore.evidence import Status, verify_trail
from trailstore.writer import AuditTrailWriter

_BLOCK = 8 * 1024 * 1024


@dataclass
class VerifyResult:
    """Verification figures over a trail of ``events`` events."""

    events: int
    segment_bytes: int
    sha256_mb_per_second: float
    full_mb_per_second: float
    full_seconds: float
    added_events: int
    incremental_seconds: float

    @property
    def full_share_of_sha256(self) -> float:
        return self.full_mb_per_second / self.sha256_mb_per_second

    @property
    def incremental_share(self) -> float:
        """The incremental verify's time as a share of the full one's."""
        return self.incremental_seconds / self.full_seconds

    def describe(self) -> str:
        return (
            f"verify --full over {self.events:,} events ({self.segment_bytes / 1e6:,.0f} MB): "
            f"{self.full_mb_per_second:,.0f} MB/s, hashlib.sha256 over the same bytes "
            f"{self.sha256_mb_per_second:,.0f} MB/s; after {self.added_events:,} more events "
            f"an incremental verify took {self.incremental_seconds * 1000:.1f} ms "
            f"({self.incremental_share:.2%} of the full one)"
        )


def _sha256_seconds(root: Path) -> tuple[float, int]:
    """Hash every segment file with ``hashlib.sha256`` a block at a time."""
    began, size = time.perf_counter(), 0
    for path in sorted(root.glob("*/*/audit-*.jsonl")):
        digest = hashlib.sha256()
        with path.open("rb") as segment:
            while block := segment.read(_BLOCK):
                digest.update(block)
                size += len(block)
    return time.perf_counter() - began, size


def verify_speed(spec: WorkloadSpec, root: Path, added: int = 1000) -> VerifyResult:
    """Time ``hashlib.sha256`` over the segments, ``verify --full``, then (after ``added``
    events more) an incremental verify from the full one's checkpoint; run in a fresh
    process."""
    verify_trail(root, full=True)  # imports done and pages cached before either timing
    hashed_seconds, size = _sha256_seconds(root)
    began = time.perf_counter()
    full = verify_trail(root, full=True)
    full_seconds = time.perf_counter() - began
    if full.status is not Status.INTACT or full.latest is None:
        raise AssertionError(f"the long run's trail does not verify: {full.problems[:3]}")
    with AuditTrailWriter(root_path=root, max_file_size_bytes=spec.segment_bytes) as writer:
        for fields in itertools.islice(itertools.cycle(spec.pool()), added):
            writer.append_event(**fields)
    began = time.perf_counter()
    again = verify_trail(root, trusted=full.latest)
    incremental_seconds = time.perf_counter() - began
    if again.status is not Status.INTACT or again.covered_events != full.covered_events + added:
        raise AssertionError(f"the incremental verify did not cover the new events: {again}")
    return VerifyResult(
        events=full.covered_events,
        segment_bytes=size,
        sha256_mb_per_second=size / hashed_seconds / 1e6,
        full_mb_per_second=full.bytes_checked / full_seconds / 1e6,
        full_seconds=full_seconds,
        added_events=added,
        incremental_seconds=incremental_seconds,
    )
