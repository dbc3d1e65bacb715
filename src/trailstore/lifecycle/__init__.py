"""A trail's lifecycle: sealed segments compressed and archived to another root (any URL a
backend opens, S3 with Object Lock), pruned from the trail's own disk once archived and
verified, and read back across both tiers as one trail."""

from __future__ import annotations

from trailstore.lifecycle.archive import Archive, Archiver, ArchiveReport, archive_trail
from trailstore.lifecycle.codecs import Codec
from trailstore.lifecycle.prune import (
    PrunePlan,
    Pruner,
    PruneReport,
    RetentionRule,
    prune_trail,
)
from trailstore.lifecycle.tiered import TieredBackend

__all__ = [
    "Archive",
    "ArchiveReport",
    "Archiver",
    "Codec",
    "PrunePlan",
    "PruneReport",
    "Pruner",
    "RetentionRule",
    "TieredBackend",
    "archive_trail",
    "prune_trail",
]
