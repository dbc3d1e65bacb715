"""The line format: compact JSON, ``None`` fields left out, non-ASCII escaped, ``\\n`` ended."""

from __future__ import annotations

import json

from pydantic_core import PydanticSerializationError

from audittrail.errors import InvalidEventError
from audittrail.events import AuditEvent

_ID_PREFIX = b'{"event_id":'
_WITHOUT_ID = {"event_id"}


def encode_body(event: AuditEvent) -> bytes:
    """Serialise ``event`` without its ``event_id``: ``{"timestamp":…}``.

    The models only admit plain JSON values, so this fails only for text that cannot be
    encoded (lone surrogates); that raises ``InvalidEventError``.
    """
    try:
        text = event.model_dump_json(exclude_none=True, exclude=_WITHOUT_ID, ensure_ascii=True)
    except (PydanticSerializationError, UnicodeError) as exc:
        raise InvalidEventError(f"event is not JSON-serialisable: {exc}") from exc
    return text.encode("ascii")


def render_line(event_id: int, body: bytes) -> bytes:
    """Join an allocated ``event_id`` and an encoded body into one complete line."""
    return b"%s%d,%s\n" % (_ID_PREFIX, event_id, body[1:])


def decode_line(line: bytes) -> AuditEvent:
    """Parse one line; raises ``ValueError`` (incl. pydantic's) if it is not a valid event."""
    return AuditEvent.model_validate_json(line)


def line_event_id(line: bytes) -> int | None:
    """Read the ``event_id`` of a line written by any version, without a full parse."""
    if line.startswith(_ID_PREFIX):
        end = line.find(b",", len(_ID_PREFIX))
        digits = line[len(_ID_PREFIX) : end]
        if end > 0 and digits.isdigit():
            return int(digits)
    try:
        value = json.loads(line).get("event_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None
