"""``trailstore append``: one event from flags or from a JSON object on stdin."""

from __future__ import annotations

import inspect
import sys
from typing import Any

import click

from trailstore.backend import Durability
from trailstore.cli.group import command
from trailstore.cli.options import (
    JSON_OBJECT,
    Choice,
    Trail,
    durability_option,
    max_file_size_option,
    parse_timestamp,
    strict_json,
)
from trailstore.cli.output import ExitCode, UsageError, write
from trailstore.encoding import encode_body
from trailstore.events import AuditOperation, AuditPayload
from trailstore.lines import render_line
from trailstore.names import validate_name
from trailstore.writer import DEFAULT_MAX_FILE_SIZE_BYTES, AuditTrailWriter

#: the keys of an event read by ``append --stdin``
APPEND_KEYWORDS = frozenset(inspect.signature(AuditTrailWriter.append_event).parameters) - {"self"}
#: the ``append`` flags that name an event's required keywords
_EVENT_FLAGS = (
    ("--domain", "domain"),
    ("--category", "category"),
    ("--model-name", "model_name"),
    ("--operation", "operation"),
    ("--user", "logical_user_id"),
)
#: the flags ``--stdin`` replaces
_STDIN_EXCLUSIVE = (
    *_EVENT_FLAGS,
    ("--request-id", "request_id"),
    ("--before", "before"),
    ("--after", "after"),
    ("--key-field", "key_field"),
)
_OPERATIONS = tuple(operation.value for operation in AuditOperation)

_EXAMPLES = """\
  trailstore append --domain shop --category orders --model-name Order \\
      --operation create --user u-42 --after '{"id": 7, "total": 30}'
  trailstore append --domain shop --category orders --model-name Order \\
      --operation update --user u-42 --before '{"id": 7, "total": 30}' \\
      --after '{"id": 7, "total": 35}' --key-field id
  echo '{"domain": "hr", "category": "employees", "model_name": "Employee",
         "operation": "delete", "logical_user_id": "u-1",
         "payload": {"before": {"id": 3}}}' | trailstore append --stdin"""


def _event_from_flags(flags: dict[str, Any]) -> dict[str, Any]:
    missing = [flag for flag, keyword in _EVENT_FLAGS if flags[keyword] is None]
    if missing:
        raise UsageError(f"append needs {', '.join(missing)} (or --stdin)")
    operation = AuditOperation(flags["operation"])
    before, after = flags["before"], flags["after"]
    for flag, value, needed in (
        ("--before", before, operation is not AuditOperation.CREATE),
        ("--after", after, operation is not AuditOperation.DELETE),
    ):
        if needed and value is None:
            raise UsageError(f"--operation {operation} needs {flag} JSON_OBJECT")
        if not needed and value is not None:
            raise UsageError(f"--operation {operation} takes no {flag}")
    if operation is AuditOperation.CREATE:
        payload = AuditPayload.from_create(after)
    elif operation is AuditOperation.UPDATE:
        payload = AuditPayload.from_update(before, after, key_field=flags["key_field"])
    else:
        payload = AuditPayload.from_delete(before)
    fields = {keyword: flags[keyword] for _, keyword in _EVENT_FLAGS}
    return {**fields, "payload": payload, "request_id": flags["request_id"]}


def _event_from_stdin() -> dict[str, Any]:
    try:
        fields = strict_json(sys.stdin.read())
    except ValueError as exc:
        raise UsageError(f"stdin is not valid JSON ({exc})") from None
    if not isinstance(fields, dict):
        raise UsageError(f"stdin must hold one JSON object, got {type(fields).__name__}")
    unknown = sorted(fields.keys() - APPEND_KEYWORDS)
    if unknown:
        allowed = ", ".join(sorted(APPEND_KEYWORDS))
        raise UsageError(f"unknown key(s) on stdin: {', '.join(unknown)}; allowed: {allowed}")
    missing = [keyword for _, keyword in _EVENT_FLAGS if keyword not in fields]
    if missing:
        raise UsageError(f"the stdin event lacks {', '.join(missing)}")
    if fields["operation"] not in _OPERATIONS:
        raise UsageError(
            f"unknown operation {fields['operation']!r}: choose from {', '.join(_OPERATIONS)}"
        )
    if isinstance(fields.get("timestamp"), str):
        try:
            fields["timestamp"] = parse_timestamp(fields["timestamp"])
        except ValueError as exc:
            raise UsageError(f"timestamp: {exc}") from None
    return fields


@command(
    "append",
    summary="append one event",
    description="Append one event and print it, with its event_id, as one JSON line.",
    examples=_EXAMPLES,
)
@click.option("--domain", help="first path component of the stream, e.g. shop")
@click.option("--category", help="second path component of the stream, e.g. orders")
@click.option("--model-name", help="kind of record, e.g. Order")
@click.option("--operation", type=Choice(_OPERATIONS), help="what happened to the record")
@click.option("--user", "logical_user_id", metavar="USER", help="who did it (logical_user_id)")
@click.option("--request-id", help="correlation ID of the request (optional)")
@click.option(
    "--key-field",
    metavar="FIELD",
    help="update: keep this field (the record's key) in the delta even when unchanged, so that "
    "replay --key-field FIELD can tell which record changed",
)
@click.option(
    "--before", type=JSON_OBJECT, metavar="JSON", help="the record before (update, delete)"
)
@click.option("--after", type=JSON_OBJECT, metavar="JSON", help="the record after (create, update)")
@click.option(
    "--stdin",
    is_flag=True,
    help="read the event from stdin: one JSON object whose keys are append_event's keywords "
    f"({', '.join(sorted(APPEND_KEYWORDS))})",
)
@durability_option("when the append counts as done")
@max_file_size_option(
    DEFAULT_MAX_FILE_SIZE_BYTES, "rotate to a new segment before one grows past N bytes"
)
def append(
    trail: Trail, *, stdin: bool, durability: str, max_file_size_bytes: int, **flags: Any
) -> int:
    if stdin:
        given = [flag for flag, keyword in _STDIN_EXCLUSIVE if flags[keyword] is not None]
        if given:
            raise UsageError(f"--stdin reads the whole event; drop {', '.join(given)}")
        fields = _event_from_stdin()
    else:
        fields = _event_from_flags(flags)
    for kind in ("domain", "category"):
        validate_name(kind, fields[kind])  # before the writer creates the trail
    with AuditTrailWriter(
        root_path=trail.root,
        durability=Durability(durability),
        max_file_size_bytes=max_file_size_bytes,
        storage_options=trail.storage_options,
    ) as writer:
        event = writer.append_event(**fields)
    # the event exactly as its segment line stores it
    write(render_line(event.event_id, encode_body(event)).decode("ascii"))
    return ExitCode.OK
