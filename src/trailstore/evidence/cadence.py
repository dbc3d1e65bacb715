"""When a writer checkpoints: every so many events, every so many seconds, when one of its
commits completes a segment, and at close.

Checkpoints due while appending are written by a thread of their own, so an append never waits
for one (and a ``batch`` writer's open session, which holds the trail, is never waited for by
the thread that holds it). A checkpoint never fails an append: a failure is logged, and the
next checkpoint covers what this one would have.
"""

from __future__ import annotations

import logging
import threading
import time

from trailstore.backend import Backend
from trailstore.errors import AuditTrailError
from trailstore.evidence.checkpointer import Checkpointer

log = logging.getLogger("trailstore")


class CheckpointCadence:
    """Decides when a writer checkpoints its trail, and does."""

    def __init__(
        self,
        backend: Backend,
        checkpointer: Checkpointer,
        *,
        every_events: int | None,
        every_seconds: float | None,
    ) -> None:
        self._backend = backend
        self._checkpointer = checkpointer
        self._every_events = every_events
        self._every_seconds = every_seconds
        self._lock = threading.Lock()
        self._running = threading.Lock()
        self._due = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._events = 0
        self._rotations = backend.rotations
        self._last = time.monotonic()

    def appended(self, count: int) -> None:
        """Count appended events; have a checkpoint written if one is due."""
        with self._lock:
            self._events += count
            due = (
                (self._every_events is not None and self._events >= self._every_events)
                or self._backend.rotations != self._rotations
                or (
                    self._every_seconds is not None
                    and time.monotonic() - self._last >= self._every_seconds
                )
            )
            if not due or self._stopping:
                return
            self._events = 0
            self._rotations = self._backend.rotations
            self._last = time.monotonic()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="trailstore-checkpoint", daemon=True
                )
                self._thread.start()
        self._due.set()

    def close(self) -> None:
        """Stop the checkpoint thread and write a last checkpoint (once nothing is pending)."""
        with self._lock:
            self._stopping = True
            thread = self._thread
        self._due.set()
        if thread is not None:
            thread.join()
        self.checkpoint()

    def abandon(self) -> None:
        """In a forked child: the thread did not survive the fork; write nothing from here."""
        self._stopping = True

    def checkpoint(self) -> None:
        """Write a checkpoint now, logging (never raising) a failure."""
        with self._running:
            try:
                self._checkpointer.checkpoint()
            except (AuditTrailError, OSError) as exc:
                log.error("could not checkpoint %s: %s", self._backend.url, exc)

    def _run(self) -> None:
        while True:
            self._due.wait()
            self._due.clear()
            if self._stopping:
                return
            self.checkpoint()
