"""Validation of ``domain`` and ``category``: each must be one safe path component."""

from __future__ import annotations

import functools
from enum import Enum

from trailstore.errors import InvalidNameError

MAX_NAME_BYTES = 255
RESERVED_DOMAINS = frozenset({"index.json"})
_FORBIDDEN_CHARACTERS = ("/", "\\", "\x00")


def validate_name(kind: str, value: object) -> str:
    """Return ``value`` as a plain str if it is a safe single path component, else raise."""
    if isinstance(value, Enum):
        value = value.value
    if not isinstance(value, str):
        raise InvalidNameError(f"{kind} must be a string, got {type(value).__name__}")
    _check_text(kind, str(value))
    return str(value)


@functools.lru_cache(maxsize=4096)
def _check_text(kind: str, value: str) -> None:
    """Raise ``InvalidNameError`` unless ``value`` is safe (safe names are remembered)."""
    if not value:
        raise InvalidNameError(f"{kind} must not be empty")
    if value.startswith("."):
        raise InvalidNameError(f"{kind} {value!r} must not start with '.' (reserved)")
    for character in _FORBIDDEN_CHARACTERS:
        if character in value:
            raise InvalidNameError(f"{kind} {value!r} must not contain {character!r}")
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidNameError(f"{kind} {value!r} is not valid unicode text") from exc
    if len(encoded) > MAX_NAME_BYTES:
        raise InvalidNameError(
            f"{kind} is {len(encoded)} bytes long; the limit is {MAX_NAME_BYTES}"
        )
    if kind == "domain" and value in RESERVED_DOMAINS:
        raise InvalidNameError(f"domain {value!r} is reserved")
