"""Retention: remove sealed segments from a trail's own disk once an archive holds verified
copies of them (or, when told so explicitly, for good).

Each stream keeps an unbroken run of its newest segments: a segment is pruned only together
with every older one, and never the segment a stream's newest checkpoint is in (so never the
open one). Before anything is removed, a checkpoint records what is pruned, so that
``verify`` reports the segments as pruned, not as missing; a prune killed at any point leaves
every segment either in place or recorded, and running it again finishes it.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from trailstore.backend import Backend, StreamKey
from trailstore.errors import ConfigurationError, TrailNotFoundError
from trailstore.evidence.checkpointer import Checkpointer
from trailstore.evidence.keys import SigningKey, key_id, load_signing_key
from trailstore.evidence.records import PrunedMarker, Seal, pruned_path
from trailstore.lifecycle.archive import Archive
from trailstore.lifecycle.chain import Chain, SegmentKey
from trailstore.registry import open_backend


@dataclass(frozen=True)
class RetentionRule:
    """Which sealed segments to prune: those wholly ``older_than`` (by their newest
    timestamp) or wholly ``before_id``, and the oldest while the trail holds more than
    ``keep_bytes`` (open segments count, and are kept)."""

    older_than: timedelta | None = None
    keep_bytes: int | None = None
    before_id: int | None = None

    def __post_init__(self) -> None:
        if self.older_than is None and self.keep_bytes is None and self.before_id is None:
            raise ConfigurationError("say what to prune: older_than, keep_bytes or before_id")


@dataclass
class PruneReport:
    """What a prune run removed, and what it kept because it could not be sure of a copy."""

    pruned: list[SegmentKey] = field(default_factory=list)
    bytes_freed: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Candidate:
    key: SegmentKey
    seal: Seal
    seal_digest: str
    size: int


@dataclass(frozen=True)
class PrunePlan:
    """The sealed segments a rule selected, oldest of each stream first."""

    chain: Chain
    chosen: list[_Candidate]


class Pruner:
    """Prunes one trail by a ``RetentionRule``, checking each copy in ``archive`` first;
    without an archive only with ``discard`` (the data is then gone)."""

    def __init__(
        self,
        trail: Backend,
        archive: Archive | None,
        *,
        discard: bool = False,
        signing_key: SigningKey | None = None,
    ) -> None:
        if archive is None and not discard:
            raise ConfigurationError(
                "prune removes segments only once an archive holds verified copies: name the "
                "archive, or say that the pruned events may be lost for good (discard)"
            )
        if not trail.prunes_segments:
            raise ConfigurationError(
                f"{trail.url}: prune removes segments from a trail on a disk of its own; a trail "
                "in an object store keeps them (archive it elsewhere, or use the store's "
                "lifecycle rules)"
            )
        if not trail.trail_exists():
            raise TrailNotFoundError(f"{trail.url} holds no trail")
        self._trail = trail
        self._archive = archive
        key = None if signing_key is None else load_signing_key(signing_key)
        self._key_id = None if key is None else key_id(key.public_key())
        self._checkpointer = Checkpointer(trail, key)

    def plan(self, rule: RetentionRule, *, now: float | None = None) -> PrunePlan:
        """The segments ``rule`` selects now (``now``: Unix seconds, for ``older_than``)."""
        chain = Chain.read(self._trail)
        if self._archive is not None:
            self._archive.admit(self._trail.url, chain.origin, holding=True)
        signed = chain.latest is not None and chain.latest.signature is not None
        if signed and chain.latest is not None and self._key_id != chain.latest.key_id:
            raise ConfigurationError(
                f"the checkpoints of {self._trail.url} are signed by key {chain.latest.key_id}: "
                "prune records what it removes in a checkpoint, so give it that signing key"
                + ("" if self._key_id is None else f" (not key {self._key_id})")
            )
        return PrunePlan(chain, self._choose(chain, rule, time.time() if now is None else now))

    def prune(
        self,
        plan: PrunePlan,
        *,
        dry_run: bool = False,
        advance: Callable[[int], None] | None = None,
    ) -> PruneReport:
        """Check each planned segment (``advance(1)`` after each), record the ones that may
        go in a checkpoint, then remove them (``dry_run``: only report them)."""
        report = PruneReport()
        safe = []
        for candidate in plan.chosen:
            if self._safe_to_remove(report, candidate, candidate.key in plan.chain.pruned):
                safe.append(candidate)
            if advance is not None:
                advance(1)
        safe = _unbroken(safe, plan.chosen)
        if dry_run:
            report.pruned = [c.key for c in safe]
            report.bytes_freed = sum(c.size for c in safe)
            return report
        record = [(*c.key, c.seal_digest) for c in safe if c.key not in plan.chain.pruned]
        if record:
            self._checkpointer.checkpoint(pruned=record)
        for candidate in safe:
            stream, number = candidate.key
            marker = PrunedMarker(stream, number, candidate.seal_digest)
            self._trail.put_evidence(pruned_path(stream, number), marker.encode())
            self._trail.remove_sealed_segment(stream, number)
            report.pruned.append(candidate.key)
            report.bytes_freed += candidate.size
        return report

    def _choose(self, chain: Chain, rule: RetentionRule, now: float) -> list[_Candidate]:
        """The oldest sealed segments of each stream the rule selects, oldest first."""
        per_stream: list[list[_Candidate]] = []
        total = 0
        for stream in self._trail.list_streams():
            numbers = self._trail.list_segments(stream)
            if rule.keep_bytes is not None:  # a stat per segment, only for a byte budget
                total += sum(self._trail.segment_size(stream, n) for n in numbers)
            kept_from = chain.open_from(stream)
            run: list[_Candidate] = []
            previous = 0
            for number in numbers:
                key = (stream, number)
                lost = any(
                    (stream, gone) not in chain.pruned for gone in range(previous + 1, number)
                )
                if lost or kept_from is None or number >= kept_from or key not in chain.seals:
                    break  # a segment lost (not pruned) stops the run: it is not hidden
                previous = number
                seal, _ = chain.seal(self._trail, key)
                run.append(_Candidate(key, seal, chain.seals[key], seal.size))
            per_stream.append(run)
        chosen: list[_Candidate] = []
        for run in per_stream:
            while run and (run[0].key in chain.pruned or _selected(rule, run[0].seal, now)):
                chosen.append(run.pop(0))
        if rule.keep_bytes is not None:
            total -= sum(c.size for c in chosen)
            remaining = sorted((c for run in per_stream for c in run), key=_newest_id)
            by_stream: dict[StreamKey, list[_Candidate]] = {}
            for candidate in remaining:
                by_stream.setdefault(candidate.key[0], []).append(candidate)
            while total > rule.keep_bytes:
                oldest = min(
                    (run for run in by_stream.values() if run),
                    key=lambda r: _newest_id(r[0]),
                    default=None,
                )
                if oldest is None:
                    break
                candidate = oldest.pop(0)
                chosen.append(candidate)
                total -= candidate.size
        return sorted(chosen, key=lambda c: c.key)

    def _safe_to_remove(self, report: PruneReport, candidate: _Candidate, recorded: bool) -> bool:
        """Whether the segment may go: its bytes are those its seal describes (nothing
        unverified is pruned) and the archive, if any, holds the same bytes and the seal."""
        stream, number = candidate.key
        seal = candidate.seal
        try:
            data = self._trail.read_range(stream, number, 0, None)
        except FileNotFoundError:
            if recorded:
                return True  # removed by a run that was killed after recording it
            report.problems.append(f"{stream} segment {number} vanished while pruned: not recorded")
            return False
        if len(data) != seal.size or hashlib.sha256(data).hexdigest() != seal.sha256:
            report.problems.append(
                f"{stream} segment {number} does not match its seal: kept (run trailstore verify)"
            )
            return False
        archive = self._archive
        if archive is not None and not (
            archive.has_seal(stream, number) and archive.holds_copy(stream, number, seal)
        ):
            report.problems.append(
                f"{stream} segment {number}: {archive.url} holds no verified copy with its seal "
                "(run trailstore archive first): kept"
            )
            return False
        return True


def _selected(rule: RetentionRule, seal: Seal, now: float) -> bool:
    if rule.before_id is not None and seal.ids is not None and seal.ids[1] < rule.before_id:
        return True
    if rule.older_than is not None and seal.times is not None:
        return seal.times.high < now - rule.older_than.total_seconds()
    return False


def _newest_id(candidate: _Candidate) -> int:
    return 0 if candidate.seal.ids is None else candidate.seal.ids[1]


def _unbroken(safe: list[_Candidate], chosen: list[_Candidate]) -> list[_Candidate]:
    """The safe candidates not behind a kept one of their stream: a stream's pruned
    segments are always its oldest."""
    kept = {c.key for c in chosen} - {c.key for c in safe}
    first_kept: dict[StreamKey, int] = {}
    for stream, number in kept:
        first_kept[stream] = min(number, first_kept.get(stream, number))
    return [c for c in safe if c.key[1] < first_kept.get(c.key[0], c.key[1] + 1)]


def prune_trail(
    root_path: str | os.PathLike[str],
    rule: RetentionRule,
    *,
    archive: str | None = None,
    discard: bool = False,
    signing_key: SigningKey | None = None,
    storage_options: Mapping[str, Any] | None = None,
    archive_options: Mapping[str, Any] | None = None,
    dry_run: bool = False,
) -> PruneReport:
    """Prune a trail's sealed segments by ``rule`` once ``archive`` holds verified copies
    (or, with ``discard``, without one); ``dry_run`` only says what would go."""
    trail = open_backend(root_path, **dict(storage_options or {}))
    opened = None if archive is None else Archive(archive, archive_options)
    try:
        pruner = Pruner(trail, opened, discard=discard, signing_key=signing_key)
        return pruner.prune(pruner.plan(rule), dry_run=dry_run)
    finally:
        if opened is not None:
            opened.close()
        trail.close()
