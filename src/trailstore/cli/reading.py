"""The commands that read a trail: ``query``, ``replay`` and ``stats``."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Iterator
from typing import Any

import click

from trailstore.backend import StreamKey
from trailstore.cli.group import command
from trailstore.cli.options import (
    NATURAL,
    READ_ARCHIVE,
    SECONDS,
    TIMESTAMP,
    Trail,
    archive_options,
    event_filters,
)
from trailstore.cli.output import (
    ExitCode,
    UsageError,
    human_bytes,
    report_damage,
    write,
    write_lines,
    write_table,
)
from trailstore.encoding import decode_line
from trailstore.errors import AuditTrailError
from trailstore.lines import quick_event_id
from trailstore.names import validate_name
from trailstore.reader import AuditTrailReader
from trailstore.replay import AuditReplayer
from trailstore.stats import StreamStats, trail_stats


def open_reader(
    trail: Trail, archive: str | None, archive_options: dict[str, Any]
) -> AuditTrailReader:
    """A reader of an existing trail (and its archive, if given): a root that holds none is
    an error."""
    return AuditTrailReader(
        root_path=trail.root,
        storage_options=trail.storage_options,
        archive=archive,
        archive_options=archive_options,
    )


@command(
    "query",
    summary="print matching events as JSON lines",
    description="Print matching events as JSON lines (the segment format) in ascending "
    "event_id. Damage met on the way (torn or malformed lines, missing IDs) is summarised on "
    "stderr.",
    examples="  trailstore query --domain shop --category orders --limit 10\n"
    "  trailstore query --model-name Invoice --since 2026-11-01 --until 2026-12-01T00:00Z\n"
    "  trailstore query --min-id 1000 --max-id 1999 | jq -c 'select(.operation==\"delete\")'\n"
    "  trailstore query --last 20 --domain shop\n"
    "  trailstore query --last 5 --follow | jq -c '{event_id, operation, model_name}'",
)
@event_filters
@click.option("--limit", type=NATURAL, metavar="N", help="stop after N events")
@click.option(
    "--last",
    type=NATURAL,
    metavar="N",
    help="only the newest N matching events (read from the end)",
)
@click.option(
    "--follow",
    is_flag=True,
    help="then keep printing new events as writers append them, until Ctrl-C",
)
@click.option(
    "--poll-interval",
    type=SECONDS,
    metavar="S",
    help="with --follow: seconds between looks for new events "
    "(default: 0.1 on a local disk, 2 on object stores)",
)
@archive_options(READ_ARCHIVE)
def query(
    trail: Trail,
    *,
    filters: dict[str, Any],
    limit: int | None,
    last: int | None,
    follow: bool,
    poll_interval: float | None,
    archive: str | None,
    archive_option: dict[str, Any],
) -> int:
    if last is not None and limit is not None:
        raise UsageError("--last and --limit do not go together: --last N prints the newest N")
    if poll_interval is not None and not follow:
        raise UsageError("--poll-interval is for --follow")
    reader = open_reader(trail, archive, archive_option)
    lines: Iterator[bytes]
    if follow and last is None:  # from the first matching event on
        after = (filters["min_event_id"] or 1) - 1
        lines = reader.follow_lines(**filters, after_event_id=after, poll_interval=poll_interval)
    elif follow:
        lines = following(reader, reader.tail_lines(last or 0, **filters), filters, poll_interval)
    elif last is not None:
        lines = iter(reader.tail_lines(last, **filters))
    else:
        lines = reader.iter_lines(**filters)
    if limit is not None:
        lines = itertools.islice(lines, limit)
    try:
        write_lines(lines, live=follow)
    except KeyboardInterrupt:
        if not follow:
            raise
        report_damage(reader.report)
        return ExitCode.INTERRUPTED  # how a follow ends, so said by the exit code alone
    report_damage(reader.report)
    return ExitCode.OK


def following(
    reader: AuditTrailReader,
    printed: list[bytes],
    filters: dict[str, Any],
    poll_interval: float | None,
) -> Iterator[bytes]:
    """``printed`` (the newest matching lines, from ``--last``), then every matching line after
    the first of them as writers append it: none of ``printed`` is repeated, and one a writer
    was still writing when they were read is not missed. (None printed: from now on.)"""
    yield from printed
    ids = {_event_id(line) for line in printed}
    after = min(ids) - 1 if ids else None
    lines = reader.follow_lines(**filters, after_event_id=after, poll_interval=poll_interval)
    for line in lines:
        if _event_id(line) not in ids:
            yield line


def _event_id(line: bytes) -> int:
    """The ID of a line the reader gave as an event."""
    event_id = quick_event_id(line)
    return decode_line(line).event_id if event_id is None else event_id


@command(
    "replay",
    summary="rebuild the records of one stream",
    description="Fold one stream's events into the records they describe and print the result "
    'as JSON: {"state": {MODEL: RECORD}, "last_event_id": N, "applied_events": N}; with '
    "--key-field the state is {MODEL: {KEY: RECORD}}.",
    examples="  trailstore replay --domain shop --category orders --key-field id --indent 2\n"
    "  trailstore replay --domain billing --category invoices --model-name Invoice "
    "--max-id 500\n"
    "  trailstore replay --domain hr --category employees --key-field id "
    "| jq '.state.Employee | length'\n"
    "  trailstore replay --domain shop --category orders --key-field id "
    "--at 2026-11-01T00:00Z",
)
@click.option("--domain", required=True, help="domain of the stream")
@click.option("--category", required=True, help="category of the stream")
@click.option("--model-name", multiple=True, help="only this model (repeatable)")
@click.option("--max-id", type=NATURAL, metavar="ID", help="replay up to this event_id")
@click.option(
    "--at",
    type=TIMESTAMP,
    metavar="TIME",
    help="the state at this moment (Unix s or ISO-8601): every event stamped at or before it",
)
@click.option(
    "--key-field",
    help="tell records apart by this payload field: the state is then {MODEL: {KEY: RECORD}} "
    "(default: the model name identifies the record)",
)
@click.option("--indent", type=NATURAL, metavar="N", help="pretty-print the JSON")
@archive_options(READ_ARCHIVE)
def replay(
    trail: Trail,
    *,
    domain: str,
    category: str,
    model_name: tuple[str, ...],
    max_id: int | None,
    at: float | None,
    key_field: str | None,
    indent: int | None,
    archive: str | None,
    archive_option: dict[str, Any],
) -> int:
    stream = StreamKey(validate_name("domain", domain), validate_name("category", category))
    reader = open_reader(trail, archive, archive_option)
    if stream not in reader.streams():
        known = ", ".join(str(other) for other in reader.streams()) or "none"
        raise AuditTrailError(f"no stream {stream} in {trail.root} (its streams: {known})")
    result = AuditReplayer(reader=reader, key_field=key_field).reconstruct_state(
        domain=stream.domain,
        category=stream.category,
        model_names=model_name or None,
        max_event_id=max_id,
        as_of=at,
    )
    write(json.dumps(dataclasses.asdict(result), indent=indent) + "\n")
    report_damage(reader.report)
    return ExitCode.OK


def _row(stats: StreamStats) -> list[str]:
    low, high = stats.min_event_id, stats.max_event_id
    return [
        stats.stream,
        str(stats.segments),
        str(stats.events),
        str(stats.bytes),
        "-" if low is None else str(low),
        "-" if high is None else str(high),
    ]


@command(
    "stats",
    summary="summarise streams, segments, events and damage",
    description="Show streams, segments, events, bytes, the event_id range and any damage "
    "found (one full scan of the trail).",
    examples="  trailstore stats\n  trailstore stats --json | jq .total.events",
)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
@click.option("--indent", type=NATURAL, metavar="N", help="pretty-print the JSON")
@archive_options(READ_ARCHIVE)
def stats(
    trail: Trail,
    *,
    as_json: bool,
    indent: int | None,
    archive: str | None,
    archive_option: dict[str, Any],
) -> int:
    figures = trail_stats(open_reader(trail, archive, archive_option))
    if as_json:
        write(json.dumps(figures.to_json(), indent=indent) + "\n")
        return ExitCode.OK
    write_table(
        ("stream", "segments", "events", "bytes", "min id", "max id"),
        [_row(stream) for stream in figures.streams],
        footer=_row(figures.total),
    )
    damage = figures.damage
    gaps = ", ".join(f"{first}..{last}" for first, last in damage.gaps) or "none"
    lines = [
        "",
        f"last allocated event id: {figures.last_event_id}",
        f"size on storage: {human_bytes(figures.total.bytes)}",
        f"malformed lines: {damage.malformed_lines}, torn lines: {damage.torn_lines}, "
        f"missing segments: {damage.missing_segments}",
        f"missing IDs: {gaps}, duplicate IDs: {damage.duplicate_ids}",
    ]
    if damage.pruned_segments:
        lines.append(
            f"pruned segments: {damage.pruned_segments} (not counted above; read them with "
            "--archive URL)"
        )
    lines.append(f"writers: {figures.coordination}")
    write("\n".join(lines) + "\n")
    return ExitCode.OK
