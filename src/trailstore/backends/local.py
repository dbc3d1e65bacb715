"""The local-disk backend: flock per commit, ``O_APPEND`` writes, atomic ``index.json``.

Files of a trail root besides the streams:

- ``index.json`` — ``{"last_event_id": N}``, replaced atomically (temp + fsync + rename); it may
  lag the data and is reconciled with the stream tails on open.
- ``.trailstore.lock`` — the file every writer ``flock``s for the duration of one commit. It also
  holds the live counter, which is advanced *before* data is written, so a writer that finds
  the counter changed knows another writer (perhaps a crashed one) touched the trail.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trailstore.backend import (
    INDEX_NAME,
    Backend,
    CommitSession,
    QueueingSession,
    StreamKey,
    parse_segment_name,
    plan_rotation,
    segment_name,
)
from trailstore.encoding import line_event_id
from trailstore.errors import StorageError, WriterClosedError
from trailstore.registry import local_path

LOCK_NAME = ".trailstore.lock"
TORN_SUFFIX = ".torn"
INDEX_REFRESH_SECONDS = 1.0
#: the counter is a padded decimal line; reading this much covers it
COUNTER_READ_BYTES = 64
#: IDs handed out before their commit (``batch`` mode) go on the counter this many at a time
HANDED_OUT_BLOCK = 64
#: segments of different streams written in one commit are synced by up to this many threads
SYNC_THREADS = 8
_TAIL_CHUNK = 64 * 1024

log = logging.getLogger("trailstore")


@dataclass
class _OpenSegment:
    path: Path
    number: int
    fd: int
    size: int


def _datasync(fd: int) -> None:
    """``fdatasync`` where the platform has it (Linux), ``fsync`` elsewhere (macOS)."""
    getattr(os, "fdatasync", os.fsync)(fd)


def _parse_counter(data: bytes) -> int | None:
    """The counter held by the lock file, ``None`` if it holds anything else."""
    text = data.strip()
    return int(text) if text.isdigit() else None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _last_newline_offset(fd: int, size: int) -> int:
    """Offset just past the last ``\\n`` of the file, 0 if it has none."""
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        chunk = os.pread(fd, end - start, start)
        position = chunk.rfind(b"\n")
        if position >= 0:
            return start + position + 1
        end = start
    return 0


def repair_torn_tail(path: Path) -> int:
    """Cut a segment back to its last complete line; the cut bytes go to ``<segment>.torn``.

    Returns the number of bytes moved to quarantine.
    """
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return 0
        keep = _last_newline_offset(fd, size)
        torn = os.pread(fd, size - keep, keep)
        quarantine = path.with_name(path.name + TORN_SUFFIX)
        with open(quarantine, "ab") as out:
            out.write(torn + b"\n")
            out.flush()
            os.fsync(out.fileno())
        os.ftruncate(fd, keep)
        os.fsync(fd)
        log.warning("repaired torn tail of %s: %d bytes moved to %s", path, len(torn), quarantine)
        return len(torn)
    finally:
        os.close(fd)


class LocalBackend(Backend):
    """A trail in a local directory, safe for many threads and processes."""

    supports_concurrent_processes = True

    def __init__(self, url: str, **storage_options: Any) -> None:
        super().__init__(url, **storage_options)
        self.root = local_path(url)
        self._thread_lock = threading.Lock()
        self._lock_fd: int | None = None
        self._known_counter: int | None = None
        self._segments: dict[StreamKey, _OpenSegment] = {}
        self._retired: list[_OpenSegment] = []
        self._unsynced_directories: set[Path] = set()
        self._index_written_at = 0.0
        self._sync_pool: ThreadPoolExecutor | None = None
        self._closed = False

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
        except OSError as exc:
            raise StorageError(f"cannot reconcile trail {self.root} with its data: {exc}") from exc
        finally:
            self._release()

    def begin(self, *, max_segment_bytes: int) -> CommitSession:
        try:
            self._acquire()
        except OSError as exc:
            raise StorageError(f"cannot lock trail {self.root}: {exc}") from exc
        try:
            counter = self._read_counter()
            if counter is None:
                self._reconcile()
            elif counter != self._known_counter:
                self._forget_segments()
                self._known_counter = counter
        except OSError as exc:
            self._release()
            raise StorageError(f"cannot start a commit on trail {self.root}: {exc}") from exc
        except BaseException:
            self._release()
            raise
        assert self._known_counter is not None
        return _LocalSession(self, self._known_counter, max_segment_bytes)

    def _acquire(self) -> None:
        self._thread_lock.acquire()
        try:
            if self._closed:
                raise WriterClosedError(f"trail {self.root} was closed by this writer")
            while True:
                if self._lock_fd is None:
                    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
                    self._lock_fd = os.open(self.root / LOCK_NAME, flags, 0o644)
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
                if self._holds_the_lock_file():
                    return
                # the lock file was deleted or replaced: a lock on the old one excludes nobody
                os.close(self._lock_fd)
                self._lock_fd = None
                self._known_counter = None
        except BaseException:
            self._thread_lock.release()
            raise

    def _holds_the_lock_file(self) -> bool:
        """True if the locked descriptor is still a file with a name: one deleted or replaced
        by a rename has no link left, and a lock on it excludes nobody."""
        assert self._lock_fd is not None
        return os.fstat(self._lock_fd).st_nlink > 0

    def _release(self) -> None:
        try:
            if self._lock_fd is not None:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def _read_counter(self) -> int | None:
        assert self._lock_fd is not None
        return _parse_counter(os.pread(self._lock_fd, COUNTER_READ_BYTES, 0))

    def _write_counter(self, value: int) -> None:
        assert self._lock_fd is not None
        data = b"%20d\n" % value
        if os.pwrite(self._lock_fd, data, 0) != len(data):
            raise OSError(errno.EIO, "short write to the counter file")

    def _read_index(self) -> int | None:
        try:
            value = json.loads((self.root / INDEX_NAME).read_bytes())["last_event_id"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            log.warning("ignoring unreadable %s: %s", self.root / INDEX_NAME, exc)
            return None
        return value if isinstance(value, int) and value >= 0 else None

    def _write_index(self, value: int) -> None:
        temporary = self.root / f".{INDEX_NAME}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
        try:
            with open(temporary, "wb") as out:
                out.write(json.dumps({"last_event_id": value}).encode())
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.root / INDEX_NAME)
        finally:
            temporary.unlink(missing_ok=True)
        _fsync_directory(self.root)
        self._index_written_at = time.monotonic()

    def _reconcile(self) -> None:
        """Set the counter to the highest of counter file, ``index.json`` and stream tails."""
        self._forget_segments()
        index = self._read_index()
        highest = max(self._read_counter() or 0, index or 0)
        for stream in self.list_streams():
            highest = max(highest, self._highest_id_in_tail(stream))
        self._write_counter(highest)
        if index != highest:
            self._write_index(highest)
        self._known_counter = highest

    def _highest_id_in_tail(self, stream: StreamKey) -> int:
        for number in reversed(self.list_segments(stream)):
            path = self._segment_path(stream, number)
            repair_torn_tail(path)
            ids = [line_event_id(line) for line in self.read_segment(stream, number)]
            found = [event_id for event_id in ids if event_id is not None]
            if found:
                return max(found)
        return 0

    def _segment_path(self, stream: StreamKey, number: int) -> Path:
        return self.root / stream.domain / stream.category / segment_name(number)

    def _open_segment(self, stream: StreamKey, number: int) -> _OpenSegment:
        path = self._segment_path(stream, number)
        existed = path.exists()
        if existed:
            repair_torn_tail(path)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        if not existed:
            self._unsynced_directories.add(path.parent)
        return _OpenSegment(path, number, fd, os.fstat(fd).st_size)

    def _segment_for(self, stream: StreamKey) -> _OpenSegment:
        segment = self._segments.get(stream)
        if segment is None:
            directory = self.root / stream.domain / stream.category
            if not directory.is_dir():
                directory.mkdir(parents=True, exist_ok=True)
                self._unsynced_directories.update({directory.parent, self.root})
            numbers = self.list_segments(stream)
            segment = self._open_segment(stream, numbers[-1] if numbers else 1)
            self._segments[stream] = segment
        return segment

    def _rotate(self, stream: StreamKey) -> _OpenSegment:
        old = self._segments.pop(stream)
        self._retired.append(old)
        segment = self._open_segment(stream, old.number + 1)
        self._segments[stream] = segment
        return segment

    def _sync(self, segments: Sequence[_OpenSegment]) -> None:
        """Make the written segments and new directories durable; several segments are
        synced at once (one thread each), so their flushes overlap instead of queueing."""
        descriptors = list(dict.fromkeys(segment.fd for segment in segments))
        if len(descriptors) == 1:
            _datasync(descriptors[0])
        elif descriptors:
            if self._sync_pool is None:
                self._sync_pool = ThreadPoolExecutor(SYNC_THREADS, "trailstore-sync")
            syncs = [self._sync_pool.submit(_datasync, fd) for fd in descriptors]
            wait(syncs)  # all of them, before a failure can lead to closing descriptors
            for done in syncs:
                done.result()
        for directory in sorted(self._unsynced_directories, key=lambda p: len(p.parts)):
            _fsync_directory(directory)
        self._unsynced_directories.clear()

    def _close_retired(self) -> None:
        for segment in self._retired:
            os.close(segment.fd)
        self._retired.clear()

    def _forget_segments(self) -> None:
        self._close_retired()
        for segment in self._segments.values():
            os.close(segment.fd)
        self._segments.clear()

    def abandon(self) -> None:
        """Close the inherited descriptors without unlocking: ``flock`` belongs to the open
        file the parent shares, so an unlock here would release the parent's lock."""
        for segment in [*self._segments.values(), *self._retired]:
            os.close(segment.fd)
        self._segments.clear()
        self._retired.clear()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        self._sync_pool = None

    def close(self) -> None:
        """Bring ``index.json`` up to date and release every handle; later commits fail."""
        if self._closed or self._lock_fd is None:
            self._closed = True
            return
        self._acquire()
        self._closed = True
        try:
            counter = self._read_counter()
            if counter is not None and counter != self._read_index():
                self._write_index(counter)
        except OSError as exc:
            raise StorageError(f"cannot write the index of trail {self.root}: {exc}") from exc
        finally:
            if self._sync_pool is not None:
                self._sync_pool.shutdown()
                self._sync_pool = None
            self._forget_segments()
            fd, self._lock_fd = self._lock_fd, None
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            self._thread_lock.release()

    # -- reading -----------------------------------------------------------------------------

    def last_event_id(self) -> int:
        """The counter if no commit is under way; during one (its IDs may not be written yet)
        the lagging ``index.json``, which is only ever written after the data. Never waits."""
        try:
            with open(self.root / LOCK_NAME, "rb") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:
                    return self._read_index() or 0
                counter = _parse_counter(lock.read(COUNTER_READ_BYTES))
        except OSError:  # missing, or not a file
            counter = None
        return max(counter or 0, self._read_index() or 0)

    def trail_exists(self) -> bool:
        if self.root.exists() and not self.root.is_dir():
            raise StorageError(f"trail root {self.root} is not a directory")
        if (self.root / INDEX_NAME).is_file():
            return True
        return any(self.list_segments(stream) for stream in self.list_streams())

    def list_streams(self) -> list[StreamKey]:
        streams: list[StreamKey] = []
        for domain in _subdirectories(self.root):
            streams.extend(
                StreamKey(domain, category) for category in _subdirectories(self.root / domain)
            )
        return sorted(streams)

    def list_segments(self, stream: StreamKey) -> list[int]:
        directory = self.root / stream.domain / stream.category
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return []
        numbers = (parse_segment_name(entry.name) for entry in entries if entry.is_file())
        return sorted(number for number in numbers if number is not None)

    def read_segment(self, stream: StreamKey, number: int) -> Iterator[bytes]:
        with open(self._segment_path(stream, number), "rb") as segment:
            yield from segment

    def segment_size(self, stream: StreamKey, number: int) -> int:
        return self._segment_path(stream, number).stat().st_size


def _subdirectories(path: Path) -> list[str]:
    try:
        entries = list(os.scandir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [entry.name for entry in entries if entry.is_dir() and not entry.name.startswith(".")]


class _LocalSession(QueueingSession):
    def __init__(self, backend: LocalBackend, counter: int, max_segment_bytes: int) -> None:
        super().__init__(counter, max_segment_bytes)
        self._backend = backend
        self._reserved = counter
        self._open = True

    def allocate(self, count: int) -> int:
        """Reserve IDs; IDs handed out before the commit are on the counter at once (in blocks
        of ``HANDED_OUT_BLOCK``), so that a crash before the commit leaves them spent, a
        reported gap, never reused. The commit trims the counter to the IDs really used."""
        first = super().allocate(count)
        if self.ids_handed_out and self._end > self._reserved:
            self._reserved = self._end + HANDED_OUT_BLOCK - 1
            try:
                self._backend._write_counter(self._reserved)
            except OSError as exc:
                raise StorageError(
                    f"cannot reserve IDs in trail {self._backend.root}: {exc}"
                ) from exc
        return first

    def commit(self, *, sync: bool) -> None:
        backend = self._backend
        written: list[tuple[_OpenSegment, int]] = []
        try:
            if self._end != self._start or self._reserved != self._end:
                backend._write_counter(self._end)
            for stream, lines in self._queued.items():
                segment = backend._segment_for(stream)
                for new_segment, run in plan_rotation(segment.size, lines, self._max_segment_bytes):
                    if new_segment:
                        segment = backend._rotate(stream)
                    written.append((segment, segment.size))
                    data = b"".join(run)
                    _write_all(segment.fd, data)
                    segment.size += len(data)
            if sync:
                backend._sync([segment for segment, _ in written])
            backend._close_retired()
            backend._known_counter = self._end
            if time.monotonic() - backend._index_written_at >= INDEX_REFRESH_SECONDS:
                backend._write_index(self._end)
        except OSError as exc:
            self._roll_back(written)
            raise StorageError(f"cannot append to trail {backend.root}: {exc}") from exc
        finally:
            self._finish()

    def _roll_back(self, written: list[tuple[_OpenSegment, int]]) -> None:
        """Undo a failed commit: cut segments back and return the reserved IDs.

        The IDs stay spent (a reported gap) if they were already handed out to callers, or if
        a segment cannot be cut back, so that no later event can get the same ID.
        """
        backend = self._backend
        backend._known_counter = None
        cut_back = True
        for segment, size in reversed(written):
            try:
                os.truncate(segment.path, size)
            except OSError:
                cut_back = False
                log.exception("could not roll back a failed append of %s", backend.root)
        if cut_back and not self.ids_handed_out:
            try:
                backend._write_counter(self._start)
                backend._known_counter = self._start
            except OSError:
                log.exception("could not give back IDs reserved in %s", backend.root)
        backend._forget_segments()

    def abort(self) -> None:
        self._finish()

    def _finish(self) -> None:
        if self._open:
            self._open = False
            self._backend._release()
