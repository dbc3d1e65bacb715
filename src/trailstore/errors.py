"""One exception hierarchy for everything trailstore raises on purpose."""

from __future__ import annotations


class AuditTrailError(Exception):
    """Base class of every trailstore error."""


class InvalidNameError(AuditTrailError, ValueError):
    """A domain or category is not a single safe path component."""


class InvalidEventError(AuditTrailError, ValueError):
    """An event cannot be validated or serialised; nothing was written and no ID was spent."""


class ConfigurationError(AuditTrailError, ValueError):
    """A writer or reader was given an impossible setting."""


class StorageError(AuditTrailError, OSError):
    """The storage refused an operation (missing root, not writable, disk full, …)."""


class ConflictError(AuditTrailError):
    """A conditional write lost a race with another writer."""


class FencedError(AuditTrailError):
    """A newer writer took over this trail; this writer must stop."""


class BackendNotFoundError(AuditTrailError, LookupError):
    """No backend is installed for a URL scheme."""


class WriterClosedError(AuditTrailError, RuntimeError):
    """The writer was used after ``close()``."""


class TrailNotFoundError(StorageError):
    """A reader was pointed at a root that holds no trail (no ``index.json``, no segment)."""


class ReplayError(AuditTrailError):
    """The events cannot be replayed as asked (a keyed replay met an event without its key)."""


class EvidenceError(AuditTrailError):
    """A checkpoint cannot be made: the trail's data does not continue its last checkpoint
    (changed, missing or out-of-place events; ``trailstore verify`` says where)."""


class MissingDependencyError(ConfigurationError, ImportError):
    """A feature needs an optional dependency that is not installed; the message names the
    extra that installs it."""


class DestinationExistsError(AuditTrailError, FileExistsError):
    """An export would replace an existing file it was not told to overwrite."""
