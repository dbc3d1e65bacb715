"""trailstore: append-only audit trails for Python applications.

Every create, update and delete of a record becomes one structured event (``AuditEvent``),
appended as a compact JSON line to a segment file of its ``<domain>/<category>`` stream, with
one global, gap-free ``event_id`` across threads, processes and hosts.

- ``AuditTrailWriter(root_path=...)`` appends (``append_event``, ``append_events``) with the
  durability you choose: ``fsync`` (default), ``flush`` or ``batch``;
- ``AsyncAuditTrailWriter`` (``trailstore.aio``) appends the same way from asyncio code, its
  storage work in threads so the event loop never waits;
- ``AuditTrailReader(root_path=...).iter_events(...)`` reads back, filtered, in ID order, and
  counts any damage it meets in ``reader.report``;
- ``AuditReplayer(reader=...).reconstruct_state(...)`` folds events back into records;
- ``trail_stats(reader)`` counts each stream's segments, bytes and events in one scan;
- ``AuditPayload.from_create/from_update/from_delete`` build payloads.

A root is a directory (the default, local-disk backend), ``memory://NAME``, or
``s3://BUCKET/PREFIX`` with the ``trailstore-s3`` plugin. The ``trailstore`` command line
appends, queries, replays and summarises trails (``trailstore --help``).
"""

from importlib.metadata import PackageNotFoundError, version

from trailstore.aio import AsyncAuditTrailWriter
from trailstore.backend import Backend, CommitSession, Durability, DurabilityName, StreamKey
from trailstore.errors import (
    AuditTrailError,
    BackendNotFoundError,
    ConfigurationError,
    ConflictError,
    FencedError,
    InvalidEventError,
    InvalidNameError,
    ReplayError,
    StorageError,
    TrailNotFoundError,
    WriterClosedError,
)
from trailstore.events import (
    AuditEvent,
    AuditFieldChange,
    AuditOperation,
    AuditPayload,
    OperationName,
)
from trailstore.reader import AuditTrailReader, ReadReport
from trailstore.registry import open_backend
from trailstore.replay import AuditReplayer, ReplayResult
from trailstore.stats import StreamStats, TrailStats, trail_stats
from trailstore.writer import DEFAULT_MAX_FILE_SIZE_BYTES, AuditTrailWriter

try:
    __version__ = version("trailstore")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "DEFAULT_MAX_FILE_SIZE_BYTES",
    "AsyncAuditTrailWriter",
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
    "DurabilityName",
    "FencedError",
    "InvalidEventError",
    "InvalidNameError",
    "OperationName",
    "ReadReport",
    "ReplayError",
    "ReplayResult",
    "StorageError",
    "StreamKey",
    "StreamStats",
    "TrailNotFoundError",
    "TrailStats",
    "WriterClosedError",
    "__version__",
    "open_backend",
    "trail_stats",
]
