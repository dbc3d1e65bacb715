"""The commands of tamper evidence: ``verify``, ``checkpoint`` and ``keygen``."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
from pathlib import Path
from typing import Any

import click

from trailstore.cli.group import command
from trailstore.cli.options import FILE, NATURAL, Trail, archive_options
from trailstore.cli.output import ExitCode, UsageError, write
from trailstore.evidence import (
    Status,
    TrustedCheckpoint,
    VerificationReport,
    checkpoint_trail,
    generate_key_pair,
    verify_trail,
)
from trailstore.registry import local_path, url_scheme


def _verified_state_file(root: str) -> Path:
    """Where ``verify`` remembers the newest checkpoint it verified for a trail."""
    state_home = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    if url_scheme(root) in ("", "file"):
        root = str(local_path(root).resolve())
    digest = hashlib.sha256(root.encode()).hexdigest()[:32]
    return Path(state_home) / "trailstore" / "verified" / f"{digest}.json"


def _verification_text(root: str, report: VerificationReport) -> str:
    lines = [f"trail {root}: {report.status}"]
    if report.latest is not None or report.checkpoints_checked:
        begun = "the first" if report.checked_from == 0 else f"trusted #{report.checked_from}"
        signed = f"signed by key {report.signed_by}" if report.signed_by else "unsigned"
        lines.append(
            f"checkpoints: {report.checkpoints_checked} checked from {begun}; they cover events "
            f"1-{report.covered_events} ({report.gaps} IDs lost by crashed writers); newest "
            f"{signed}"
        )
    lines.append(
        f"data: {report.bytes_checked} bytes hashed; {report.uncovered_events} events written "
        "after the newest checkpoint (in order, not yet covered)"
    )
    lines.extend(f"  {problem}" for problem in report.problems)
    lines.extend(f"note: {note}" for note in report.notes)
    return "\n".join(lines) + "\n"


@command(
    "verify",
    summary="check the trail against its checkpoints; exit 1 if it was tampered with",
    description="Check the trail against its chain of checkpoints: every checkpoint present, "
    "each naming the one before (and signed by --public-key's key, if given), every event they "
    "cover unchanged and in place, and every event written since continuing them. Only what "
    "was added since the last verified checkpoint (remembered per trail, see --state) is read, "
    "unless --full. Exit codes: 0 intact, 1 tampered (the report names streams, segments and "
    "event IDs), 3 no checkpoint to verify against.",
    examples="  trailstore verify\n"
    "  trailstore verify --full --public-key trail.pub\n"
    "  trailstore verify --json | jq .problems",
)
@click.option("--public-key", type=FILE, help="PEM public key the checkpoints must be signed with")
@click.option("--full", is_flag=True, help="verify everything, not only what is new")
@click.option(
    "--state",
    type=FILE,
    help="file remembering the newest verified checkpoint (default: one per trail under "
    "$XDG_STATE_HOME/trailstore/verified/)",
)
@click.option("--no-state", is_flag=True, help="neither read nor remember a verified checkpoint")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@click.option("--indent", type=NATURAL, metavar="N", help="pretty-print the JSON")
@archive_options("verify pruned segments in their copies in this archive")
def verify(
    trail: Trail,
    *,
    public_key: Path | None,
    full: bool,
    state: Path | None,
    no_state: bool,
    as_json: bool,
    indent: int | None,
    archive: str | None,
    archive_option: dict[str, Any],
) -> int:
    root = trail.root
    remembered = None if no_state else (state or _verified_state_file(root))
    trusted = None if remembered is None else TrustedCheckpoint.load(remembered)
    report = verify_trail(
        root,
        public_key=public_key,
        trusted=trusted,
        full=full or trusted is None,
        storage_options=trail.storage_options,
        archive=archive,
        archive_options=archive_option,
    )
    if as_json:
        write(json.dumps(report.to_json(), indent=indent) + "\n")
    else:
        write(_verification_text(root, report))
    if report.intact and report.latest is not None and remembered is not None:
        report.latest.save(remembered)
    if report.status is Status.UNVERIFIABLE:
        return ExitCode.UNVERIFIABLE
    return ExitCode.OK if report.intact else ExitCode.FAILED


@command(
    "checkpoint",
    summary="checkpoint the trail now",
    description="Write the trail's next checkpoint, covering every event written so far "
    "(writers do this on their own; this starts the evidence of a trail written without it).",
    examples="  trailstore checkpoint --signing-key trail.key",
)
@click.option(
    "--signing-key", type=FILE, help="PEM Ed25519 private key to sign the checkpoint with"
)
def checkpoint(trail: Trail, *, signing_key: Path | None) -> int:
    made = checkpoint_trail(
        trail.root, signing_key=signing_key, storage_options=trail.storage_options
    )
    if made is None:
        write("nothing new to checkpoint\n")
    else:
        signed = f", signed by key {made.key_id}" if made.signature else ""
        write(f"checkpoint {made.number}: events 1-{made.size}{signed}\n")
    return ExitCode.OK


@command(
    "keygen",
    summary="make an Ed25519 key pair for signing checkpoints",
    description="Write a new Ed25519 private key (mode 0600) and its public key as PEM files; "
    "never overwrites a file.",
    examples="  trailstore keygen --private trail.key --public trail.pub",
)
@click.option("--private", type=FILE, required=True, help="where to write the private key")
@click.option("--public", type=FILE, required=True, help="where to write the public key")
def keygen(_trail: Trail, *, private: Path, public: Path) -> int:
    try:
        identity = generate_key_pair(private, public)
    except FileExistsError as exc:
        raise UsageError(f"{exc.filename} exists; keygen never overwrites a key") from exc
    write(
        f"key {identity}: private key {private} (give it to writers: "
        f"AuditTrailWriter(..., signing_key={str(private)!r})), public key {public}\n"
        f"  verify (with --root or $TRAILSTORE_ROOT set): trailstore verify --public-key "
        f"{shlex.quote(str(public.resolve()))}\n"
    )
    return ExitCode.OK
