"""The local-disk backend: the appending segment store under the local-lock coordinator.

Files of a trail root besides the streams:

- ``index.json`` — ``{"last_event_id": N}``, replaced atomically; it may lag the data and is
  reconciled with the stream tails on open. It is a checkpoint: failing to write it (a full
  disk, a directory in its place) is logged and never fails an append.
- ``.trailstore.lock`` — the live counter, advanced *before* data is written, so a writer that
  finds it changed knows another writer (perhaps a crashed one) touched the trail.

Writers exclude each other with ``flock`` on the root directory itself, held for one commit
(``LocalLock``): unlike a lock file, a directory cannot be deleted or replaced under a running
trail, so a deleted counter file never lets two writers in at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from trailstore.backend import (
    INDEX_NAME,
    Backend,
    CommitSession,
    QueueingSession,
    StreamKey,
    plan_rotation,
    segment_name,
)
from trailstore.coordinators.local_lock import LocalLock
from trailstore.errors import StorageError
from trailstore.registry import local_path
from trailstore.store.appending import AppendingStore, AppendSegment

INDEX_REFRESH_SECONDS = 1.0
#: IDs handed out before their commit (``batch`` mode) are reserved this many at a time, on
#: the counter file and in ``index.json``
HANDED_OUT_BLOCK = 1024

log = logging.getLogger("trailstore")


class LocalBackend(Backend):
    """A trail in a local directory, safe for many threads and processes."""

    supports_concurrent_processes = True
    prunes_segments = True
    follow_poll_interval = 0.1

    def __init__(self, url: str, **storage_options: Any) -> None:
        super().__init__(url, **storage_options)
        self.root = local_path(url)
        self.store = AppendingStore(self.root)
        self.lock = LocalLock(self.root)
        self._known_counter: int | None = None
        self._index_written_at = 0.0
        self._index_warned = False

    @property
    def coordination(self) -> str:
        return LocalLock.described

    # -- writing -----------------------------------------------------------------------------

    def open_for_writing(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise StorageError(f"trail root {self.root} exists and is not a directory")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._acquire()
        except OSError as exc:
            raise StorageError(f"cannot open trail root {self.root} for writing: {exc}") from exc
        try:
            self._reconcile()
        except StorageError:
            raise
        except OSError as exc:
            raise StorageError(f"cannot reconcile trail {self.root} with its data: {exc}") from exc
        finally:
            self.lock.release()

    def begin(self, *, max_segment_bytes: int, hand_out: bool = False) -> CommitSession:
        try:
            self._acquire()
        except OSError as exc:
            raise StorageError(f"cannot lock trail {self.root}: {exc}") from exc
        try:
            counter = self.lock.read()
            if counter is None:
                self._reconcile()
            elif counter != self._known_counter:
                self.store.forget()
                self._known_counter = counter
        except StorageError:
            self.lock.release()
            raise
        except OSError as exc:
            self.lock.release()
            raise StorageError(f"cannot start a commit on trail {self.root}: {exc}") from exc
        except BaseException:
            self.lock.release()
            raise
        assert self._known_counter is not None
        return _LocalSession(self, self._known_counter, max_segment_bytes, hand_out=hand_out)

    def _acquire(self) -> None:
        """Take the trail's lock; a counter file opened afresh (first use, or deleted and
        created again: it only ever holds a copy of the counter) is not trusted as known."""
        if self.lock.acquire():
            self._known_counter = None
        assert self.lock.directory_fd is not None
        self.store.attach(self.lock.directory_fd)

    def _write_index(self, value: int, *, reserved_through: int | None = None) -> None:
        """Replace ``index.json``; a failure is logged, never raised: the index is a
        checkpoint of the counter, which the data and the counter file already hold.

        ``reserved_through`` records IDs handed out before their commit (``batch``), a copy of
        the counter file's reservation that survives that file's deletion; such a write is not
        synced (batch mode promises nothing on power failure).
        """
        document = {"last_event_id": value}
        if reserved_through is not None:
            document["reserved_through"] = reserved_through
        try:
            self.store.write_index(document, sync=reserved_through is None)
            self._index_warned = False
        except OSError as exc:
            if not self._index_warned:
                log.warning("cannot update %s (it lags): %s", self.root / INDEX_NAME, exc)
                self._index_warned = True
        self._index_written_at = time.monotonic()

    def _reconcile(self) -> None:
        """Set the counter to the highest of counter file, ``index.json`` (and the IDs it
        records as handed out) and stream tails."""
        self.store.forget()
        counters = self.store.read_index()
        index = counters.get("last_event_id")
        highest = max(self.lock.read() or 0, index or 0, counters.get("reserved_through", 0))
        for stream in self.list_streams():
            highest = max(highest, self.store.highest_id_in_tail(stream))
        self.lock.write(highest)
        if index != highest:
            self._write_index(highest)
        self._known_counter = highest

    def abandon(self) -> None:
        """In a forked child: close the inherited descriptors without unlocking (``flock``
        belongs to the open file the parent shares; an unlock here would release its lock)."""
        self.lock.abandon()
        self.store.abandon()

    def close(self) -> None:
        """Bring ``index.json`` up to date and release every handle; later commits fail."""
        if self.lock.closed or not self.lock.held_counter:
            self.lock.close()  # never opened for writing: nothing to bring up to date
            self.store.close()
            return
        self._acquire()
        try:
            try:
                counter = self.lock.read()
                if counter is not None and counter != self.store.read_index().get("last_event_id"):
                    self._write_index(counter)
            finally:
                self.store.close()
        except OSError as exc:
            raise StorageError(f"cannot close trail {self.root}: {exc}") from exc
        finally:
            self.lock.close()
            self.lock.release()

    # -- reading -----------------------------------------------------------------------------

    def last_event_id(self) -> int:
        """The counter if no commit is under way; during one (its IDs may not be written yet)
        the lagging ``index.json``, which is only ever written after the data. Never waits."""
        counter = self.lock.peek()
        return max(counter or 0, self.store.read_index().get("last_event_id", 0))

    def trail_exists(self) -> bool:
        if self.root.exists() and not self.root.is_dir():
            raise StorageError(f"trail root {self.root} is not a directory")
        if (self.root / INDEX_NAME).is_file():
            return True
        return any(self.list_segments(stream) for stream in self.list_streams())

    def list_streams(self) -> list[StreamKey]:
        return self.store.list_streams()

    def list_segments(self, stream: StreamKey) -> list[int]:
        return self.store.list_segments(stream)

    def read_segment(self, stream: StreamKey, number: int) -> Iterator[bytes]:
        return self.store.read_segment(stream, number)

    def segment_size(self, stream: StreamKey, number: int) -> int:
        return self.store.segment_size(stream, number)

    def read_range(self, stream: StreamKey, number: int, start: int, end: int | None) -> bytes:
        return self.store.read_range(stream, number, start, end)

    # -- evidence ------------------------------------------------------------------------------

    def put_evidence(self, path: str, data: bytes) -> bool:
        return self.store.create_file_once(path, data)

    def get_evidence(self, path: str) -> bytes:
        return self.store.read_file(path)

    def list_evidence(self, directory: str) -> list[str]:
        return self.store.list_files(directory)

    def remove_sealed_segment(self, stream: StreamKey, number: int) -> None:
        self.store.remove_file(f"{stream.domain}/{stream.category}/{segment_name(number)}")


class _LocalSession(QueueingSession):
    def __init__(
        self, backend: LocalBackend, counter: int, max_segment_bytes: int, *, hand_out: bool
    ) -> None:
        super().__init__(counter, max_segment_bytes, hand_out=hand_out)
        self._backend = backend
        self._reserved = counter
        self._open = True

    def allocate(self, count: int) -> int:
        """Reserve IDs; IDs handed out before the commit are on the counter at once (in blocks
        of ``HANDED_OUT_BLOCK``), so that a crash before the commit leaves them spent, a
        reported gap, never reused. The commit trims the counter to the IDs really used."""
        first = super().allocate(count)
        if self.hand_out and self._end > self._reserved:
            self._reserved = self._end + HANDED_OUT_BLOCK - 1
            self.reserving(first, self._reserved)
            try:
                self._backend.lock.write(self._reserved)
                self._backend._write_index(self._start, reserved_through=self._reserved)
            except OSError as exc:
                raise StorageError(
                    f"cannot reserve IDs in trail {self._backend.root}: {exc}"
                ) from exc
        return first

    def commit(self, *, sync: bool) -> int:
        backend = self._backend
        written: list[tuple[AppendSegment, int]] = []
        try:
            self._write(written, sync=sync)
        except BaseException as exc:
            self._roll_back(written)
            self._finish()
            if isinstance(exc, OSError) and not isinstance(exc, StorageError):
                raise StorageError(f"cannot append to trail {backend.root}: {exc}") from exc
            raise
        try:
            backend.store.close_retired()
            backend._known_counter = self._end
            reserved_in_index = self._reserved > self._start  # handed-out IDs recorded there
            if reserved_in_index or (
                time.monotonic() - backend._index_written_at >= INDEX_REFRESH_SECONDS
            ):
                backend._write_index(self._end)
        finally:
            self._finish()
        return self._start + 1

    def _write(self, written: list[tuple[AppendSegment, int]], *, sync: bool) -> None:
        """Advance the counter, then write (rotating as planned), sync, and check that every
        written file is still in the trail; ``written`` collects what to cut back on failure."""
        backend, store = self._backend, self._backend.store
        if self._end != self._start or self._reserved != self._end:
            if not self.hand_out:
                self.reserving(self._start + 1, self._end)
            backend.lock.write(self._end)
        for stream, lines in self._queued.items():
            segment = store.segment_for(stream)
            for new_segment, run in plan_rotation(segment.size, lines, self._max_segment_bytes):
                if new_segment:
                    segment = store.rotate(stream)
                    backend.rotations += 1
                written.append((segment, segment.size))
                store.append(segment, b"".join(run))
        if sync:  # and only then, as it costs a path lookup per stream, check that the files
            segments = [segment for segment, _ in written]  # are still the trail's
            store.sync(segments)
            store.verify_written(segments)

    def _roll_back(self, written: list[tuple[AppendSegment, int]]) -> None:
        """Undo a failed commit: cut the written files back and return the reserved IDs.

        The IDs stay spent (a reported gap) if they were already handed out to callers, or if
        a file cannot be cut back, so that no later event can get the same ID.
        """
        backend = self._backend
        backend._known_counter = None
        cut_back = True
        for segment, size in reversed(written):
            try:
                backend.store.cut_back(segment, size)
            except OSError:
                cut_back = False
                log.exception("could not roll back a failed append of %s", backend.root)
        if cut_back and not self.hand_out:
            try:
                backend.lock.write(self._start)
                backend._known_counter = self._start
            except OSError:
                log.exception("could not give back IDs reserved in %s", backend.root)
        backend.store.forget()

    def abort(self) -> None:
        self._finish()

    def _finish(self) -> None:
        if self._open:
            self._open = False
            self._backend.lock.release()
