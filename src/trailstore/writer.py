"""``AuditTrailWriter``: validate → encode → hand to the committer, which allocates IDs."""

from __future__ import annotations

import functools
import os
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

from pydantic import ValidationError

from trailstore.backend import Durability, DurabilityName, StreamKey
from trailstore.commit import BatchCommitter, GroupCommitter, PreparedEvent
from trailstore.encoding import encode_body
from trailstore.errors import ConfigurationError, InvalidEventError, WriterClosedError
from trailstore.events import (
    AuditEvent,
    AuditOperation,
    AuditPayload,
    OperationName,
    unix_seconds,
)
from trailstore.evidence.cadence import CheckpointCadence
from trailstore.evidence.checkpointer import Checkpointer
from trailstore.evidence.keys import SigningKey, load_signing_key
from trailstore.names import validate_name
from trailstore.registry import open_backend

DEFAULT_MAX_FILE_SIZE_BYTES = 5 * 1024 * 1024
DEFAULT_FLUSH_INTERVAL = 0.2
DEFAULT_FLUSH_MAX_EVENTS = 1000
DEFAULT_CHECKPOINT_EVERY = 10_000
DEFAULT_CHECKPOINT_INTERVAL = 60.0


def _positive(name: str, value: object, kind: type) -> None:
    if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:  # type: ignore[operator]
        raise ConfigurationError(f"{name} must be a positive {kind.__name__}, got {value!r}")


def _seconds(name: str, value: object) -> None:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not 0 < value <= threading.TIMEOUT_MAX  # also refuses NaN
    ):
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")


class AuditTrailWriter:
    """Append audit events to a trail; thread-safe, and process-safe on backends that say so.

    ``root_path`` is a directory or a URL (``memory://name``, ``s3://bucket/prefix`` with the
    ``trailstore-s3`` plugin). ``durability`` is ``"fsync"`` (default), ``"flush"`` or
    ``"batch"``; ``storage_options`` go to the backend untouched.

    With ``checkpoints`` (the default) the writer checkpoints the trail for ``verify`` every
    ``checkpoint_every`` events, every ``checkpoint_interval`` seconds (checked as events are
    appended), when its commit completes a segment, and at ``close()``; a checkpoint is signed
    with ``signing_key`` (an Ed25519 private key, or the path of its PEM file) if one is given.
    Either cadence may be ``None``.
    """

    def __init__(
        self,
        *,
        root_path: str | os.PathLike[str],
        max_file_size_bytes: int = DEFAULT_MAX_FILE_SIZE_BYTES,
        durability: Durability | DurabilityName = Durability.FSYNC,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        flush_max_events: int = DEFAULT_FLUSH_MAX_EVENTS,
        storage_options: Mapping[str, Any] | None = None,
        checkpoints: bool = True,
        checkpoint_every: int | None = DEFAULT_CHECKPOINT_EVERY,
        checkpoint_interval: float | None = DEFAULT_CHECKPOINT_INTERVAL,
        signing_key: SigningKey | None = None,
    ) -> None:
        _positive("max_file_size_bytes", max_file_size_bytes, int)
        _positive("flush_max_events", flush_max_events, int)
        _seconds("flush_interval", flush_interval)
        if checkpoint_every is not None:
            _positive("checkpoint_every", checkpoint_every, int)
        if checkpoint_interval is not None:
            _seconds("checkpoint_interval", checkpoint_interval)
        self._checkpoints = checkpoints
        self._checkpoint_every = checkpoint_every
        self._checkpoint_interval = checkpoint_interval
        self._signing_key = None if signing_key is None else load_signing_key(signing_key)
        try:
            self.durability = Durability(durability)
        except ValueError:
            choices = ", ".join(mode.value for mode in Durability)
            raise ConfigurationError(
                f"durability must be one of {choices}, got {durability!r}"
            ) from None
        self.root_path = root_path
        self.max_file_size_bytes = max_file_size_bytes
        self._storage_options = dict(storage_options or {})
        self._flush_interval = float(flush_interval)
        self._flush_max_events = flush_max_events
        self._fork_lock = threading.Lock()
        self._open_storage()
        self._closed = False
        _LIVE_WRITERS.add(self)

    def _open_storage(self) -> None:
        """Open the backend and the committer of this process (``_pid`` is set last: a thread
        that sees it set to this process finds the committer ready)."""
        self._backend = open_backend(self.root_path, **self._storage_options)
        try:
            self._backend.open_for_writing()
        except BaseException:
            self._backend.close()
            raise
        self._committer: GroupCommitter | BatchCommitter
        if self.durability is Durability.BATCH:
            self._committer = BatchCommitter(
                self._backend,
                self.max_file_size_bytes,
                flush_interval=self._flush_interval,
                flush_max_events=self._flush_max_events,
            )
        else:
            self._committer = GroupCommitter(
                self._backend, self.max_file_size_bytes, sync=self.durability is Durability.FSYNC
            )
        self._cadence: CheckpointCadence | None = None
        if self._checkpoints:
            self._cadence = CheckpointCadence(
                self._backend,
                Checkpointer(self._backend, self._signing_key),
                every_events=self._checkpoint_every,
                every_seconds=self._checkpoint_interval,
            )
        self._pid = os.getpid()

    def append_event(
        self,
        *,
        domain: str,
        category: str,
        model_name: str,
        operation: AuditOperation | OperationName,
        logical_user_id: str,
        payload: AuditPayload | Mapping[str, Any] | None = None,
        request_id: str | None = None,
        timestamp: float | datetime | None = None,
    ) -> AuditEvent:
        """Append one event and return it with its ``event_id`` once it is as durable as the
        writer's durability mode promises."""
        prepared = _prepare(
            domain=domain,
            category=category,
            model_name=model_name,
            operation=operation,
            logical_user_id=logical_user_id,
            payload=payload,
            request_id=request_id,
            timestamp=timestamp,
        )
        self._submit([prepared])
        return prepared.event

    def append_events(self, events: Iterable[Mapping[str, Any]]) -> list[AuditEvent]:
        """Append several events (each a mapping of ``append_event``'s keywords) in one commit.

        Every event is validated first: if one is invalid, none is written and no ID is spent.
        """
        prepared = []
        for position, fields in enumerate(events):
            try:
                prepared.append(_prepare(**fields))
            except TypeError as exc:
                raise InvalidEventError(f"event #{position}: {exc}") from exc
        if prepared:
            self._submit(prepared)
        return [item.event for item in prepared]

    def _submit(self, prepared: list[PreparedEvent]) -> None:
        if self._closed:
            raise WriterClosedError(f"writer for {self.root_path} is closed")
        if os.getpid() != self._pid:
            with self._fork_lock:  # the first appends of a child's threads race to reopen
                if os.getpid() != self._pid:
                    self._reopen_after_fork()
        self._committer.submit(prepared)
        if self._cadence is not None:
            self._cadence.appended(len(prepared))

    def _reopen_after_fork(self) -> None:
        """In a child process, the inherited handles, locks and unflushed events belong to the
        parent: drop them without touching the parent's lock, and open the trail afresh."""
        if not self._backend.survives_fork:
            raise ConfigurationError(
                f"a writer of {self.root_path} cannot be used across fork(): its storage "
                "client does not survive one; create the writer in each child process"
            )
        self._let_go_of_the_parents()
        self._open_storage()

    def _let_go_of_the_parents(self) -> None:
        """Forget what this process inherited through ``fork()``: the parent's pending events
        stay the parent's, and its lock is never released from here."""
        if self._cadence is not None:
            self._cadence.abandon()
        self._committer.abandon()
        self._backend.abandon()

    def flush(self) -> None:
        """Make every event appended so far durable (matters in ``batch`` mode)."""
        if os.getpid() == self._pid:  # a forked child that never appended has nothing pending
            self._committer.flush()

    def close(self) -> None:
        """Flush, write the final ``index.json`` and release the trail. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        _LIVE_WRITERS.discard(self)
        if os.getpid() != self._pid:  # inherited and never used here: nothing of ours to close
            self._let_go_of_the_parents()
            return
        try:
            self._committer.close()
            if self._cadence is not None:
                self._cadence.close()
        finally:
            self._backend.close()

    def __enter__(self) -> AuditTrailWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


#: open writers, so that a forked child can drop what it inherited from each at once
_LIVE_WRITERS: weakref.WeakSet[AuditTrailWriter] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """In a new child: fresh reopen locks (a parent thread may have held one at the fork) and
    the parent's pending events disowned, so an exit of the child never flushes them."""
    for writer in list(_LIVE_WRITERS):
        writer._fork_lock = threading.Lock()
        writer._committer.abandon()


os.register_at_fork(after_in_child=_after_fork_in_child)


@functools.lru_cache(maxsize=1024)
def _stream_of(domain: object, category: object) -> StreamKey:
    """The stream of a (domain, category) pair, validated once per distinct pair."""
    return StreamKey(validate_name("domain", domain), validate_name("category", category))


def _prepare(
    *,
    domain: str,
    category: str,
    model_name: str,
    operation: AuditOperation | OperationName,
    logical_user_id: str,
    payload: AuditPayload | Mapping[str, Any] | None = None,
    request_id: str | None = None,
    timestamp: float | datetime | None = None,
) -> PreparedEvent:
    """Validate and encode one event; raises before anything is written or any ID is spent."""
    try:
        stream = _stream_of(domain, category)
    except TypeError:  # unhashable, so not a name: let the check say what is wrong
        stream = _stream_of.__wrapped__(domain, category)
    for field, value in (("model_name", model_name), ("logical_user_id", logical_user_id)):
        if isinstance(value, str) and not value.strip():
            raise InvalidEventError(f"{field} must not be empty or blank")
    try:
        event = AuditEvent(
            event_id=0,
            timestamp=time.time() if timestamp is None else unix_seconds(timestamp),
            domain=stream.domain,
            category=stream.category,
            model_name=model_name,
            operation=operation,  # type: ignore[arg-type]
            logical_user_id=logical_user_id,
            request_id=request_id,
            payload=payload,  # type: ignore[arg-type]
        )
    except ValidationError as exc:
        raise InvalidEventError(f"invalid audit event: {exc}") from exc
    if event.payload is not None:
        _require_fitting_payload(event.operation, event.payload)
    return PreparedEvent(stream, event, encode_body(event))


def _require_fitting_payload(operation: AuditOperation, payload: AuditPayload) -> None:
    """A payload must say what its operation did: what was created, deleted or changed."""
    if operation is AuditOperation.CREATE and payload.after is None:
        raise InvalidEventError("a create payload needs 'after', the record as created")
    if operation is AuditOperation.DELETE and payload.before is None:
        raise InvalidEventError("a delete payload needs 'before', the record as deleted")
    if operation is AuditOperation.UPDATE and payload.after is None and payload.delta is None:
        raise InvalidEventError("an update payload needs 'delta' (the changes) or 'after'")
