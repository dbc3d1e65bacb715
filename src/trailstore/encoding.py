"""The line format: compact JSON, ``None`` fields left out, non-ASCII escaped, ``\\n`` ended."""

from __future__ import annotations

import json

from pydantic_core import PydanticSerializationError

from trailstore.errors import InvalidEventError
from trailstore.events import AuditEvent

_ID_PREFIX = b'{"event_id":'
_SERIALIZER = AuditEvent.__pydantic_serializer__


def encode_body(event: AuditEvent) -> bytes:
    """Serialise ``event`` whose ID is not yet known; ``render_line`` puts the real ID in.

    The models only admit plain JSON values, so this fails only for text that cannot be
    encoded (lone surrogates); that raises ``InvalidEventError``. Non-ASCII text is escaped;
    the common all-ASCII event is serialised once.
    """
    try:
        body = _SERIALIZER.to_json(event, exclude_none=True)
        if not body.isascii():
            body = _SERIALIZER.to_json(event, exclude_none=True, ensure_ascii=True)
            if b"\\ufffd" in body:
                _reject_lone_surrogates(event)
    except (PydanticSerializationError, UnicodeError) as exc:
        raise InvalidEventError(f"event is not JSON-serialisable: {exc}") from exc
    return body


def _reject_lone_surrogates(event: AuditEvent) -> None:
    """Raise ``UnicodeError`` if ``event`` holds a lone surrogate anywhere.

    pydantic-core refuses them in values but writes one in a ``dict[str, …]`` key as U+FFFD,
    which would not read back equal; a genuine U+FFFD passes.
    """
    json.dumps(event.model_dump(), ensure_ascii=False).encode("utf-8")


def render_line(event_id: int, body: bytes) -> bytes:
    """Give an encoded body (whose first field is its placeholder ``event_id``) its real ID."""
    return b"%s%d,%s\n" % (_ID_PREFIX, event_id, body[body.index(b",") + 1 :])


def decode_line(line: bytes) -> AuditEvent:
    """Parse one line; raises ``ValueError`` (incl. pydantic's) if it is not a valid event."""
    return AuditEvent.model_validate_json(line)


def line_event_id(line: bytes) -> int | None:
    """Read the ``event_id`` of a line written by any version, without a full parse.

    Returns ``None`` for anything else, however hostile (deep nesting, thousands of digits).
    """
    try:
        if line.startswith(_ID_PREFIX):
            end = line.find(b",", len(_ID_PREFIX))
            digits = line[len(_ID_PREFIX) : end]
            if end > 0 and digits.isdigit():
                return int(digits)
        value = json.loads(line).get("event_id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return value if isinstance(value, int) else None
