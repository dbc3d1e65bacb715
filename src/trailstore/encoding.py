"""The line format: compact JSON, ``None`` fields left out, non-ASCII escaped, ``\\n`` ended."""

from __future__ import annotations

import json

from pydantic_core import PydanticSerializationError

from trailstore.errors import InvalidEventError
from trailstore.events import AuditEvent
from trailstore.lines import MAX_LINE_BYTES

_SERIALIZER = AuditEvent.__pydantic_serializer__
_VALIDATE_JSON = AuditEvent.__pydantic_validator__.validate_json
#: a body shorter than this cannot hold an integer too long to read back (4,300 digits)
_PLAIN_BYTES = 4096
#: a body with fewer ``[`` and ``{`` cannot be nested too deep to read back (200 levels)
_PLAIN_NESTING = 128


def encode_body(event: AuditEvent) -> bytes:
    """Serialise ``event`` whose ID is not yet known; ``render_line`` puts the real ID in.

    The models only admit plain JSON values; ``InvalidEventError`` is left for text that
    cannot be encoded (lone surrogates), an event longer than ``MAX_LINE_BYTES``, and one the
    reader would not give back equal. Non-ASCII text is escaped; the common all-ASCII event is
    serialised once.
    """
    try:
        body = _SERIALIZER.to_json(event, exclude_none=True)
        if not body.isascii():
            body = _SERIALIZER.to_json(event, exclude_none=True, ensure_ascii=True)
            if b"\\ufffd" in body:
                _reject_lone_surrogates(event)
    except (PydanticSerializationError, UnicodeError) as exc:
        raise InvalidEventError(f"event is not JSON-serialisable: {exc}") from exc
    if len(body) > _PLAIN_BYTES or body.count(b"[") + body.count(b"{") > _PLAIN_NESTING:
        if len(body) > MAX_LINE_BYTES - 32:  # room for the real ID
            raise InvalidEventError(
                f"event is {len(body):,} bytes serialised; the limit is {MAX_LINE_BYTES:,}"
            )
        _require_readable(event, body)
    return body


def _require_readable(event: AuditEvent, body: bytes) -> None:
    """Refuse a body the reader would not give back equal (nested deeper than its parser goes,
    or an integer longer than Python converts); only large or deeply bracketed bodies, which
    alone can be such, pay for this second parse."""
    try:
        readable = _VALIDATE_JSON(body) == event
    except ValueError as exc:  # pydantic's ValidationError is one
        raise InvalidEventError(f"event would not read back: {_summary(exc)}") from exc
    if not readable:
        raise InvalidEventError("event would not read back equal to what was appended")


def _summary(error: Exception) -> str:
    """pydantic's report without its header line and the documentation link."""
    lines = str(error).splitlines()
    return " ".join(lines[1:3]).strip() if len(lines) > 1 else str(error)


def _reject_lone_surrogates(event: AuditEvent) -> None:
    """Raise ``UnicodeError`` if ``event`` holds a lone surrogate anywhere.

    pydantic-core refuses them in values but writes one in a ``dict[str, …]`` key as U+FFFD,
    which would not read back equal; a genuine U+FFFD passes.
    """
    json.dumps(event.model_dump(), ensure_ascii=False).encode("utf-8")


def decode_line(line: bytes) -> AuditEvent:
    """Parse one line; raises ``ValueError`` (incl. pydantic's) if it is not a valid event."""
    event: AuditEvent = _VALIDATE_JSON(line)
    return event
