"""trailstore: append-only audit trails on local disk, in memory, or in object storage."""

from trailstore.backend import Backend, CommitSession, Durability, StreamKey
from trailstore.errors import (
    AuditTrailError,
    BackendNotFoundError,
    ConfigurationError,
    ConflictError,
    FencedError,
    InvalidEventError,
    InvalidNameError,
    StorageError,
    WriterClosedError,
)
from trailstore.events import AuditEvent, AuditFieldChange, AuditOperation, AuditPayload
from trailstore.reader import AuditTrailReader, ReadReport
from trailstore.registry import open_backend
from trailstore.replay import AuditReplayer, ReplayResult
from trailstore.writer import DEFAULT_MAX_FILE_SIZE_BYTES, AuditTrailWriter

__all__ = [
    "DEFAULT_MAX_FILE_SIZE_BYTES",
    "AuditEvent",
    "AuditFieldChange",
    "AuditOperation",
    "AuditPayload",
    "AuditReplayer",
    "AuditTrailError",
    "AuditTrailReader",
    "AuditTrailWriter",
    "Backend",
    "BackendNotFoundError",
    "CommitSession",
    "ConfigurationError",
    "ConflictError",
    "Durability",
    "FencedError",
    "InvalidEventError",
    "InvalidNameError",
    "ReadReport",
    "ReplayResult",
    "StorageError",
    "StreamKey",
    "WriterClosedError",
    "open_backend",
]
