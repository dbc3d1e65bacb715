"""The ``history`` command: every event about one record, with the fields each changed."""

from __future__ import annotations

import json
from typing import Any

import click

from trailstore.cli.group import command
from trailstore.cli.options import READ_ARCHIVE, Trail, archive_options
from trailstore.cli.output import ExitCode, UsageError, report_damage, write
from trailstore.cli.reading import open_reader
from trailstore.errors import AuditTrailError
from trailstore.history import record_history


@command(
    "history",
    summary="show every change of one record",
    description="Show every event about one record, oldest first, with the fields each one "
    "added, changed or removed. A record is its model name within its stream, or with "
    "--key-field and --key the record whose payload field has that value. --json prints one "
    "JSON object per event: its metadata, its changes and the record after it.",
    examples="  trailstore history --domain shop --category orders --model-name Order "
    "--key-field id --key ord_1\n"
    "  trailstore history --domain hr --category settings --model-name Policy --json "
    "| jq -c '.changes[]'",
)
@click.option("--domain", required=True, help="domain of the record's stream")
@click.option("--category", required=True, help="category of the record's stream")
@click.option("--model-name", required=True, help="the record's model")
@click.option("--key-field", help="the payload field that tells records of the model apart")
@click.option("--key", help="the record's value of --key-field (compared as text)")
@click.option("--json", "as_json", is_flag=True, help="print JSON lines instead of text")
@archive_options(READ_ARCHIVE)
def history(
    trail: Trail,
    *,
    domain: str,
    category: str,
    model_name: str,
    key_field: str | None,
    key: str | None,
    as_json: bool,
    archive: str | None,
    archive_option: dict[str, Any],
) -> int:
    if (key_field is None) != (key is None):
        raise UsageError("--key-field and --key go together: give both or neither")
    reader = open_reader(trail, archive, archive_option)
    entries = record_history(
        reader,
        domain=domain,
        category=category,
        model_name=model_name,
        key_field=key_field,
        key=key,
    )
    shown = 0
    for entry in entries:
        if as_json:
            write(json.dumps(entry.to_json(), ensure_ascii=False) + "\n")
        else:
            write(("\n" if shown else "") + entry.describe() + "\n")
        shown += 1
    report_damage(reader.report)
    if not shown:
        which = f"{model_name} with {key_field} {key!r}" if key_field else model_name
        raise AuditTrailError(f"no event of {which} in {domain}/{category}")
    return ExitCode.OK
