"""Getting prepared events into a backend: group commit (``fsync``/``flush``) and ``batch``.

Both committers assign IDs only inside a backend commit session, so an event that fails
validation never reaches them and never spends an ID.
"""

from __future__ import annotations

import atexit
import functools
import logging
import threading
import time
import weakref
from collections.abc import Sequence
from typing import NamedTuple

from trailstore.backend import Backend, CommitSession, StreamKey
from trailstore.errors import AuditTrailError, WriterClosedError
from trailstore.events import AuditEvent
from trailstore.lines import render_line

log = logging.getLogger("trailstore")


class PreparedEvent(NamedTuple):
    """A validated event and its encoded body, waiting for an ID."""

    stream: StreamKey
    event: AuditEvent
    body: bytes


def _stage(session: CommitSession, events: Sequence[PreparedEvent]) -> range:
    """Allocate IDs for ``events`` and queue their lines in ``session``; return the IDs."""
    first = session.allocate(len(events))
    ids = range(first, first + len(events))
    by_stream: dict[StreamKey, list[bytes]] = {}
    for event_id, (stream, _, body) in zip(ids, events, strict=True):
        line = render_line(event_id, body)
        lines = by_stream.get(stream)
        if lines is None:
            by_stream[stream] = [line]
        else:
            lines.append(line)
    for stream, lines in by_stream.items():
        session.append(stream, lines)
    return ids


def _assign(events: Sequence[PreparedEvent], ids: range) -> None:
    """Give each committed event its ID (set directly: the model is already validated)."""
    for event_id, prepared in zip(ids, events, strict=True):
        object.__setattr__(prepared.event, "event_id", event_id)


class _Request:
    """One caller's events, waiting in the group-commit queue."""

    __slots__ = ("done", "error", "events")

    def __init__(self, events: Sequence[PreparedEvent]) -> None:
        self.events = events
        self.done = False
        self.error: BaseException | None = None


#: how long a leader may wait for concurrent callers, as a share of the last commit's duration
GATHER_SHARE = 0.5
#: and at most this many seconds
GATHER_LIMIT = 0.002


class GroupCommitter:
    """Commit on every call; callers arriving while a commit runs are committed together by
    the next leader, sharing one session, one write and one sync.

    When the previous group had several callers, the new leader first waits a moment (a share
    of the last commit's duration) for as many callers to join, as a database's commit delay
    does: one sync then covers the whole group instead of every other call.
    """

    def __init__(self, backend: Backend, max_segment_bytes: int, *, sync: bool) -> None:
        self._backend = backend
        self._max_segment_bytes = max_segment_bytes
        self._sync = sync
        self._queue: list[_Request] = []
        self._leader_active = False
        self._gathering = False
        self._followers = 0
        lock = threading.Lock()
        self._group_done = threading.Condition(lock)
        self._caller_joined = threading.Condition(lock)
        self._last_group_size = 1
        self._last_commit_seconds = 0.0

    def submit(self, events: Sequence[PreparedEvent]) -> None:
        request = _Request(events)
        with self._group_done:
            self._queue.append(request)
            if self._leader_active:
                self._follow(request)
            if request.done:
                group = None
            else:
                self._leader_active = True
                try:
                    self._gather()
                except BaseException:  # interrupted while waiting: hand leadership back
                    self._queue.remove(request)
                    self._leader_active = False
                    self._group_done.notify_all()
                    raise
                group, self._queue = self._queue, []
        if group is not None:
            try:
                began = time.monotonic()
                self._commit(group)
                self._last_commit_seconds = time.monotonic() - began
                self._last_group_size = len(group)
            finally:
                with self._group_done:
                    self._leader_active = False
                    if self._followers:
                        self._group_done.notify_all()
        if request.error is not None:
            raise request.error

    def _follow(self, request: _Request) -> None:
        """Wait until a leader has committed ``request`` or nobody leads any more."""
        if self._gathering:
            self._caller_joined.notify()
        self._followers += 1
        try:
            while self._leader_active and not request.done:
                self._group_done.wait()
        finally:
            self._followers -= 1

    def _gather(self) -> None:
        """As the new leader, wait briefly for the callers that joined the last group."""
        if self._last_group_size < 2:
            return
        deadline = time.monotonic() + min(GATHER_LIMIT, GATHER_SHARE * self._last_commit_seconds)
        self._gathering = True
        try:
            while len(self._queue) < self._last_group_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._caller_joined.wait(remaining)
        finally:
            self._gathering = False

    def _commit(self, group: list[_Request]) -> None:
        events = [prepared for request in group for prepared in request.events]
        error: BaseException | None = None
        try:
            session = self._backend.begin(max_segment_bytes=self._max_segment_bytes)
            try:
                _stage(session, events)
            except BaseException:
                session.abort()
                raise
            first = session.commit(sync=self._sync)  # the IDs may have moved since allocate
            _assign(events, range(first, first + len(events)))
        except Exception as exc:
            error = exc
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: fail the whole group
            for request in group:
                request.error = AuditTrailError(f"commit interrupted by {exc!r}")
                request.done = True
            raise
        for request in group:
            request.error = error
            request.done = True

    def flush(self) -> None:
        """Nothing is ever pending between calls."""

    def close(self) -> None:
        """Nothing to stop."""

    def abandon(self) -> None:
        """In a forked child: nothing of the parent's is pending here."""


class BatchCommitter:
    """Hold one commit session open while events accumulate; commit it every
    ``flush_interval`` seconds, every ``flush_max_events`` events, and on flush/close/exit."""

    def __init__(
        self,
        backend: Backend,
        max_segment_bytes: int,
        *,
        flush_interval: float,
        flush_max_events: int,
    ) -> None:
        self._backend = backend
        self._max_segment_bytes = max_segment_bytes
        self._flush_interval = flush_interval
        self._flush_max_events = flush_max_events
        self._lock = threading.Lock()
        self._session: CommitSession | None = None
        self._opened_at = 0.0
        self._pending = 0
        self._error: BaseException | None = None
        self._closed = False
        self._stopping = threading.Event()
        self._flusher = threading.Thread(target=self._run, name="trailstore-batch", daemon=True)
        self._flusher.start()
        self._exit_hook = functools.partial(_flush_at_exit, weakref.ref(self))
        atexit.register(self._exit_hook)

    def submit(self, events: Sequence[PreparedEvent]) -> None:
        with self._lock:
            if self._closed:
                raise WriterClosedError("the batch writer was closed")
            self._raise_pending_error()
            if self._session is None:
                self._session = self._backend.begin(
                    max_segment_bytes=self._max_segment_bytes, hand_out=True
                )
                self._opened_at = time.monotonic()
            _assign(events, _stage(self._session, events))
            self._pending += len(events)
            if self._pending >= self._flush_max_events:
                self._commit_locked()
                self._raise_pending_error()

    def flush(self) -> None:
        with self._lock:
            self._commit_locked()
            self._raise_pending_error()

    def abandon(self) -> None:
        """In a forked child: the pending session and events are the parent's; never flush
        them from here (the flusher thread did not survive the fork anyway)."""
        atexit.unregister(self._exit_hook)
        self._session = None

    def close(self) -> None:
        atexit.unregister(self._exit_hook)
        self._stopping.set()
        self._flusher.join()
        with self._lock:
            self._closed = True
            self._commit_locked()
            self._raise_pending_error()

    def _run(self) -> None:
        while not self._stopping.wait(self._flush_interval / 4):
            with self._lock:
                due = time.monotonic() - self._opened_at >= self._flush_interval
                if self._session is not None and due:
                    self._commit_locked()

    def _commit_locked(self) -> None:
        session, self._session = self._session, None
        self._pending = 0
        if session is None:
            return
        try:
            session.commit(sync=True)
        except Exception as exc:
            log.error("batch flush failed: %s", exc)
            self._error = exc

    def _raise_pending_error(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error


def _flush_at_exit(reference: weakref.ref[BatchCommitter]) -> None:
    committer = reference()
    if committer is not None:
        committer.close()
