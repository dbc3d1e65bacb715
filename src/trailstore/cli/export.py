"""The ``export`` command: events as CSV, Parquet or JSON lines, for tools that are not ours."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from trailstore.cli.group import command
from trailstore.cli.options import (
    READ_ARCHIVE,
    Choice,
    Trail,
    archive_options,
    event_filters,
    progress_option,
)
from trailstore.cli.output import ExitCode, StdoutClosed, UsageError, report_damage, say
from trailstore.cli.reading import open_reader
from trailstore.errors import DestinationExistsError
from trailstore.export import ExportFormat, export_events
from trailstore.progress import ProgressBar

_SUFFIXES = {f".{kind.value}": kind for kind in ExportFormat}


def _format(chosen: str | None, output: Path | None) -> ExportFormat:
    """The format asked for, else the one the output's suffix names."""
    if chosen is not None:
        return ExportFormat(chosen)
    if output is not None and output.suffix.lower() in _SUFFIXES:
        return _SUFFIXES[output.suffix.lower()]
    raise UsageError("say which --format (csv, parquet or jsonl), or name an --output with it")


@command(
    "export",
    summary="write events as CSV, Parquet or JSON lines",
    description="Write the matching events as CSV or Parquet (one row per event: event_id, "
    "timestamp in UTC, timestamp_unix, domain, category, model_name, operation, "
    "logical_user_id, request_id, and the payload's before, after and delta as JSON text) or as "
    "JSON lines (the stored lines, byte for byte), in bounded memory. A file is written whole "
    "or not at all; an existing one is kept unless --overwrite. Parquet needs pyarrow: pip "
    "install 'trailstore[parquet]'.",
    examples="  trailstore export --output audit.parquet\n"
    "  trailstore export --format csv --domain shop --since 2026-11-01 --output nov.csv\n"
    "  trailstore export --format jsonl --category orders | gzip > orders.jsonl.gz",
)
@click.option(
    "--format",
    "chosen_format",
    type=Choice([kind.value for kind in ExportFormat]),
    help="csv, parquet or jsonl (default: from the --output suffix)",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="where to write (default: stdout)",
)
@click.option("--overwrite", is_flag=True, help="replace --output if it exists")
@event_filters
@progress_option
@archive_options(READ_ARCHIVE)
def export(
    trail: Trail,
    *,
    chosen_format: str | None,
    output: Path | None,
    overwrite: bool,
    filters: dict[str, Any],
    progress: bool,
    archive: str | None,
    archive_option: dict[str, Any],
) -> int:
    kind = _format(chosen_format, output)
    if output is None and kind is ExportFormat.PARQUET and sys.stdout.isatty():
        raise UsageError("Parquet is binary: give --output FILE or redirect stdout")
    reader = open_reader(trail, archive, archive_option)
    with ProgressBar(None, f"exporting {kind.value}", enabled=progress) as bar:
        done = 0

        def advance(count: int) -> None:
            nonlocal done
            bar.advance(count - done)
            done = count

        try:
            result = export_events(
                reader,
                sys.stdout.buffer if output is None else output,
                format=kind,
                overwrite=overwrite,
                progress=advance,
                **filters,
            )
        except DestinationExistsError as exc:
            raise UsageError(f"{output} exists: pass --overwrite to replace it") from exc
        except BrokenPipeError as exc:
            raise StdoutClosed from exc
    if output is not None:
        say(f"wrote {result.events:,} events ({result.bytes:,} bytes) to {output}", "info")
    report_damage(reader.report)
    return ExitCode.OK
