"""audittrail: append-only audit trails on local disk, in memory, or in object storage."""

from audittrail.backend import Backend, CommitSession, Durability, StreamKey
from audittrail.errors import (
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
from audittrail.events import AuditEvent, AuditFieldChange, AuditOperation, AuditPayload
from audittrail.reader import AuditTrailReader, ReadReport
from audittrail.registry import open_backend
from audittrail.replay import AuditReplayer, ReplayResult
from audittrail.writer import DEFAULT_MAX_FILE_SIZE_BYTES, AuditTrailWriter

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
