"""Tamper evidence: a chain of (optionally signed) checkpoints over every event of a trail, in
``event_id`` order across its streams, seals of complete segments, and ``verify``.

Nothing here changes a segment's bytes: checkpoints live in ``<root>/.trailstore/evidence/``
and seals beside their segments, where readers of the original format do not look.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from trailstore.errors import TrailNotFoundError
from trailstore.evidence.checkpointer import Checkpointer
from trailstore.evidence.keys import (
    SigningKey,
    generate_key_pair,
    load_public_key,
    load_signing_key,
)
from trailstore.evidence.records import Checkpoint, Seal
from trailstore.evidence.report import (
    Finding,
    Problem,
    Status,
    TrustedCheckpoint,
    VerificationReport,
)
from trailstore.evidence.verifier import Verifier
from trailstore.registry import open_backend


def verify_trail(
    root_path: str | os.PathLike[str],
    *,
    public_key: Ed25519PublicKey | str | os.PathLike[str] | None = None,
    trusted: TrustedCheckpoint | None = None,
    full: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    archive: str | None = None,
    archive_options: Mapping[str, Any] | None = None,
) -> VerificationReport:
    """Verify a trail: from ``trusted`` (a checkpoint verified before: only what was added
    since is read) or, with ``full`` or without one, from its first checkpoint. With
    ``archive``, pruned segments are verified in their archived copies."""
    from trailstore.lifecycle import Archive, TieredBackend  # which builds on this package

    key = None if public_key is None else load_public_key(public_key)
    backend = open_backend(root_path, **dict(storage_options or {}))
    if archive is not None:
        backend = TieredBackend(backend, Archive(archive, archive_options))
    try:
        if not backend.trail_exists():
            raise TrailNotFoundError(f"{root_path} holds no trail")
        return Verifier(backend, key).verify(trusted, full=full)
    finally:
        backend.close()


def checkpoint_trail(
    root_path: str | os.PathLike[str],
    *,
    signing_key: SigningKey | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Checkpoint | None:
    """Checkpoint a trail now (as its writers do on their own); ``None`` if nothing is new."""
    key = None if signing_key is None else load_signing_key(signing_key)
    backend = open_backend(root_path, **dict(storage_options or {}))
    try:
        if not backend.trail_exists():
            raise TrailNotFoundError(f"{root_path} holds no trail")
        return Checkpointer(backend, key).checkpoint()
    finally:
        backend.close()


__all__ = [
    "Checkpoint",
    "Checkpointer",
    "Finding",
    "Problem",
    "Seal",
    "Status",
    "TrustedCheckpoint",
    "VerificationReport",
    "checkpoint_trail",
    "generate_key_pair",
    "verify_trail",
]
