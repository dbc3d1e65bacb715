"""The lifecycle commands: ``archive`` sealed segments, then ``prune`` them from the trail."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, get_args

import click

from trailstore.backend import Retention
from trailstore.cli.group import command
from trailstore.cli.options import (
    DURATION,
    FILE,
    POSITIVE,
    SIZE,
    TIMESTAMP,
    Choice,
    Trail,
    archive_options,
    key_value_option,
    progress_option,
)
from trailstore.cli.output import ExitCode, UsageError, human_bytes, say, write
from trailstore.lifecycle import Archive, Archiver, Codec, Pruner, RetentionRule
from trailstore.progress import ProgressBar
from trailstore.registry import open_backend

LockMode = Literal["governance", "compliance"]


def _retention(
    object_lock: LockMode | None, retain_until: float | None, retain_days: int | None
) -> Retention | None:
    if object_lock is None:
        if retain_until is not None or retain_days is not None:
            raise UsageError("--retain-until and --retain-days need --object-lock MODE")
        return None
    if retain_until is not None and retain_days is None:
        until = datetime.fromtimestamp(retain_until, UTC)
    elif retain_days is not None and retain_until is None:
        until = datetime.now(UTC) + timedelta(days=retain_days)
    else:
        raise UsageError("--object-lock needs one of --retain-until or --retain-days")
    if until <= datetime.now(UTC):
        raise UsageError(f"the retention date {until.isoformat()} is not in the future")
    return Retention(object_lock, until)


@command(
    "archive",
    summary="copy sealed segments, seals and checkpoints to an archive",
    description="Copy every sealed segment (one a checkpoint has sealed: never the open one), "
    "its seal and the trail's checkpoints to the archive at --to: a directory or any URL a "
    "trail can live at (s3://BUCKET/PREFIX with trailstore-s3, or any fsspec filesystem). Each "
    "object is created once and read back to check it; what the archive holds already is not "
    "uploaded again, so a run that was interrupted finishes when run again. Safe while writers "
    "run. Exit 1 if a segment could not be archived (it is named).",
    examples="  trailstore archive --to /mnt/archive/trail\n"
    "  trailstore archive --to s3://audit-archive/app --to-option "
    "endpoint_url=http://127.0.0.1:9000\n"
    "  trailstore archive --to s3://audit-archive/app --object-lock compliance "
    "--retain-days 2555",
)
@click.option("--to", required=True, metavar="URL", help="the archive's root")
@key_value_option(
    "--to-option", "storage_options of the archive's backend, as --storage-option (repeatable)"
)
@click.option(
    "--compress",
    type=Choice([codec.value for codec in Codec]),
    default=Codec.ZSTD.value,
    show_default=True,
    help="how archived segments are compressed; digests cover the uncompressed bytes",
)
@click.option(
    "--object-lock",
    type=Choice(get_args(LockMode)),
    metavar="MODE",
    help="S3 Object Lock retention of every archived object: governance or compliance (the "
    "bucket must have Object Lock enabled)",
)
@click.option(
    "--retain-until",
    type=TIMESTAMP,
    metavar="TIME",
    help="retain until this time (Unix s or ISO-8601)",
)
@click.option("--retain-days", type=POSITIVE, metavar="N", help="retain for N days from now")
@progress_option
def archive(
    trail: Trail,
    *,
    to: str,
    to_option: dict[str, Any],
    compress: str,
    object_lock: LockMode | None,
    retain_until: float | None,
    retain_days: int | None,
    progress: bool,
) -> int:
    root = trail.root
    retention = _retention(object_lock, retain_until, retain_days)
    backend = open_backend(root, **trail.storage_options)
    copies = Archive(to, to_option)
    try:
        archiver = Archiver(backend, copies, codec=Codec(compress), retention=retention)
        pending = archiver.pending()
        with ProgressBar(
            len(pending), "archiving segments", enabled=progress and bool(pending)
        ) as bar:
            report = archiver.run(pending, bar.advance)
    finally:
        copies.close()
        backend.close()
    ratio = (
        f" ({report.bytes_stored / report.bytes_read:.0%} of it stored)"
        if report.bytes_read
        else ""
    )
    write(
        f"archived {report.segments_archived} sealed segments to {to}: "
        f"{human_bytes(report.bytes_read)} as {compress}{ratio}; "
        f"{report.segments_present} were there already; {report.checkpoints_archived} "
        "checkpoints copied\n"
    )
    for problem in report.problems:
        say(problem)
    return ExitCode.FAILED if report.problems else ExitCode.OK


@command(
    "prune",
    summary="remove archived sealed segments from the trail's disk",
    description="Remove a trail's oldest sealed segments from its disk, once --archive holds a "
    "copy that reads back identical to the seal (or, with --discard, for good). A segment goes "
    "when it is wholly older than --older-than or wholly before --before-id, and the oldest go "
    "while the trail holds more than --keep-bytes. Each stream keeps its newest segments and "
    "always its open one. A checkpoint records what was pruned, so verify reports it as "
    "pruned. Safe while writers run. Exit 1 if a chosen segment was kept.",
    examples="  trailstore prune --older-than 90d --archive s3://audit-archive/app\n"
    "  trailstore prune --keep-bytes 10GiB --archive /mnt/archive/trail --dry-run\n"
    "  trailstore prune --before-id 1000000 --discard",
)
@click.option(
    "--older-than",
    type=DURATION,
    metavar="AGE",
    help="segments whose newest event is older than AGE (90d, 12h)",
)
@click.option(
    "--keep-bytes",
    type=SIZE,
    metavar="SIZE",
    help="prune the oldest while the trail holds more (10GiB)",
)
@click.option(
    "--before-id",
    type=POSITIVE,
    metavar="ID",
    help="segments whose events all have an event_id below ID",
)
@archive_options("the archive that must hold a verified copy of each segment")
@click.option(
    "--discard",
    is_flag=True,
    help="prune without an archive: the pruned events are gone for good",
)
@click.option(
    "--signing-key", type=FILE, help="sign the checkpoint recording the prune, as writers do"
)
@click.option("--dry-run", is_flag=True, help="say what would go; remove nothing")
@progress_option
def prune(
    trail: Trail,
    *,
    older_than: timedelta | None,
    keep_bytes: int | None,
    before_id: int | None,
    archive: str | None,
    archive_option: dict[str, Any],
    discard: bool,
    signing_key: Path | None,
    dry_run: bool,
    progress: bool,
) -> int:
    if archive is None and not discard:
        raise UsageError(
            "prune removes segments only once an archive holds verified copies: pass --archive "
            "URL (after trailstore archive --to URL), or --discard to lose them for good"
        )
    if archive is not None and discard:
        raise UsageError("--archive and --discard exclude each other")
    if older_than is None and keep_bytes is None and before_id is None:
        raise UsageError("say what to prune: --older-than, --keep-bytes or --before-id")
    rule = RetentionRule(older_than=older_than, keep_bytes=keep_bytes, before_id=before_id)
    backend = open_backend(trail.root, **trail.storage_options)
    copies = None if archive is None else Archive(archive, archive_option)
    try:
        pruner = Pruner(backend, copies, discard=discard, signing_key=signing_key)
        plan = pruner.plan(rule)
        with ProgressBar(
            len(plan.chosen), "checking segments", enabled=progress and bool(plan.chosen)
        ) as bar:
            report = pruner.prune(plan, dry_run=dry_run, advance=bar.advance)
    finally:
        if copies is not None:
            copies.close()
        backend.close()
    verb = "would prune" if dry_run else "pruned"
    lines = [f"{verb} {len(report.pruned)} sealed segments ({human_bytes(report.bytes_freed)})"]
    for stream, numbers in itertools.groupby(report.pruned, key=lambda key: key[0]):
        held = [number for _, number in numbers]
        span = f"segment {held[0]}" if len(held) == 1 else f"segments {held[0]}-{held[-1]}"
        lines.append(f"  {stream}: {span}")
    write("\n".join(lines) + "\n")
    for problem in report.problems:
        say(problem)
    return ExitCode.FAILED if report.problems else ExitCode.OK
