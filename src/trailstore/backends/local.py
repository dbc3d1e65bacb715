"""The local-disk backend: flock per commit, ``O_APPEND`` writes, atomic ``index.json``.

Files of a trail root besides the streams:

- ``index.json`` — ``{"last_event_id": N}``, replaced atomically (temp + fsync + rename); it may
  lag the data and is reconciled with the stream tails on open. It is a checkpoint: failing to
  write it (a full disk, a directory in its place) is logged and never fails an append.
- ``.trailstore.lock`` — the live counter, advanced *before* data is written, so a writer that
  finds it changed knows another writer (perhaps a crashed one) touched the trail.

Writers exclude each other with ``flock`` on the root directory itself, held for one commit:
unlike a lock file, a directory cannot be deleted or replaced under a running trail, so a
deleted counter file never lets two writers in at once.

Nothing below the root is reached through a symbolic link: directories and files are opened
relative to their parent's descriptor with ``O_NOFOLLOW``, and the path of every segment about
to be written is checked to still name the file this writer has open.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import stat
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
from trailstore.errors import StorageError, WriterClosedError
from trailstore.lines import bounded_lines, line_event_id
from trailstore.registry import local_path

LOCK_NAME = ".trailstore.lock"
TORN_SUFFIX = ".torn"
INDEX_REFRESH_SECONDS = 1.0
#: the counter is a padded decimal line; reading this much covers it
COUNTER_READ_BYTES = 64
#: IDs handed out before their commit (``batch`` mode) are reserved this many at a time, on
#: the counter file and in ``index.json``
HANDED_OUT_BLOCK = 1024
#: segments of different streams written in one commit are synced by up to this many threads
SYNC_THREADS = 8
_COPY_CHUNK = 1024 * 1024
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW

log = logging.getLogger("trailstore")


@dataclass
class _OpenSegment:
    stream: StreamKey
    number: int
    fd: int
    size: int
    #: the path relative to the root, to check that it still names this file
    relative: str
    #: ``(st_ino, st_dev)`` of the open file
    identity: tuple[int, int]


def _datasync(fd: int) -> None:
    """``fdatasync`` where the platform has it (Linux), ``fsync`` elsewhere (macOS)."""
    getattr(os, "fdatasync", os.fsync)(fd)


def _parse_counter(data: bytes) -> int | None:
    """The counter held by the counter file, ``None`` if it holds anything else."""
    text = data.strip()
    return int(text) if text.isdigit() else None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _refusing_links(path: Path, error: OSError) -> OSError:
    """``ELOOP`` from an ``O_NOFOLLOW`` open means a symbolic link: say so, naming it."""
    if error.errno == errno.ELOOP:
        return StorageError(f"{path} is a symbolic link; links below a trail root are refused")
    return error


def _open_below(parent_fd: int, name: str, flags: int, path: Path, mode: int = 0o644) -> int:
    """Open ``name`` in the directory ``parent_fd`` without following a link there."""
    try:
        return os.open(name, flags | _NOFOLLOW, mode, dir_fd=parent_fd)
    except OSError as exc:
        raise _refusing_links(path, exc) from exc


def _fsync_directory(fd: int) -> None:
    os.fsync(fd)


def _last_newline_offset(fd: int, size: int) -> int:
    """Offset just past the last ``\\n`` of the file, 0 if it has none."""
    end = size
    while end > 0:
        start = max(0, end - _COPY_CHUNK)
        position = os.pread(fd, end - start, start).rfind(b"\n")
        if position >= 0:
            return start + position + 1
        end = start
    return 0


def repair_torn_tail(directory_fd: int, name: str, path: Path) -> int:
    """Cut a segment back to its last complete line; the cut bytes go to ``<segment>.torn``
    (copied a chunk at a time, so a torn tail of any size costs bounded memory).

    Returns the number of bytes moved to quarantine.
    """
    fd = _open_below(directory_fd, name, os.O_RDWR, path)
    try:
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return 0
        keep = _last_newline_offset(fd, size)
        quarantine = name + TORN_SUFFIX
        out = _open_below(
            directory_fd, quarantine, os.O_WRONLY | os.O_APPEND | os.O_CREAT, path.parent
        )
        try:
            for offset in range(keep, size, _COPY_CHUNK):
                _write_all(out, os.pread(fd, min(_COPY_CHUNK, size - offset), offset))
            _write_all(out, b"\n")
            os.fsync(out)
        finally:
            os.close(out)
        os.ftruncate(fd, keep)
        os.fsync(fd)
        log.warning("repaired torn tail of %s: %d bytes moved to %s", path, size - keep, quarantine)
        return size - keep
    finally:
        os.close(fd)


class LocalBackend(Backend):
    """A trail in a local directory, safe for many threads and processes."""

    supports_concurrent_processes = True

    def __init__(self, url: str, **storage_options: Any) -> None:
        super().__init__(url, **storage_options)
        self.root = local_path(url)
        self._thread_lock = threading.Lock()
        self._root_fd: int | None = None
        self._counter_fd: int | None = None
        self._known_counter: int | None = None
        self._segments: dict[StreamKey, _OpenSegment] = {}
        self._directories: dict[StreamKey, int] = {}
        self._retired: list[_OpenSegment] = []
        self._unsynced_directories: set[int] = set()
        self._index_written_at = 0.0
        self._index_warned = False
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
        except StorageError:
            raise
        except OSError as exc:
            raise StorageError(f"cannot reconcile trail {self.root} with its data: {exc}") from exc
        finally:
            self._release()

    def begin(self, *, max_segment_bytes: int, hand_out: bool = False) -> CommitSession:
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
        except StorageError:
            self._release()
            raise
        except OSError as exc:
            self._release()
            raise StorageError(f"cannot start a commit on trail {self.root}: {exc}") from exc
        except BaseException:
            self._release()
            raise
        assert self._known_counter is not None
        return _LocalSession(self, self._known_counter, max_segment_bytes, hand_out=hand_out)

    def _acquire(self) -> None:
        """Take the thread lock, then ``flock`` on the root directory, and open the counter
        file (created again if it was deleted: it only ever holds a copy of the counter)."""
        self._thread_lock.acquire()
        try:
            if self._closed:
                raise WriterClosedError(f"trail {self.root} was closed by this writer")
            if self._root_fd is None:
                self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            fcntl.flock(self._root_fd, fcntl.LOCK_EX)
            try:
                if self._counter_fd is not None and os.fstat(self._counter_fd).st_nlink == 0:
                    os.close(self._counter_fd)  # deleted or replaced: its value may be stale
                    self._counter_fd = None
                    self._known_counter = None
                if self._counter_fd is None:
                    self._counter_fd = _open_below(
                        self._root_fd, LOCK_NAME, os.O_RDWR | os.O_CREAT, self.root / LOCK_NAME
                    )
            except BaseException:
                fcntl.flock(self._root_fd, fcntl.LOCK_UN)
                raise
        except BaseException:
            self._thread_lock.release()
            raise

    def _release(self) -> None:
        try:
            if self._root_fd is not None:
                fcntl.flock(self._root_fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def _read_counter(self) -> int | None:
        assert self._counter_fd is not None
        return _parse_counter(os.pread(self._counter_fd, COUNTER_READ_BYTES, 0))

    def _write_counter(self, value: int) -> None:
        assert self._counter_fd is not None
        data = b"%20d\n" % value
        if os.pwrite(self._counter_fd, data, 0) != len(data):
            raise OSError(errno.EIO, "short write to the counter file")

    def _read_index(self) -> int | None:
        """``last_event_id`` of ``index.json``: the IDs written by finished commits."""
        return _index_field(self.root / INDEX_NAME, "last_event_id")

    def _write_index(self, value: int, *, reserved_through: int | None = None) -> None:
        """Replace ``index.json`` atomically; a failure is logged, never raised: the index is a
        checkpoint of the counter, which the data and the counter file already hold.

        ``reserved_through`` records IDs handed out before their commit (``batch``), a copy of
        the counter file's reservation that survives that file's deletion; such a write is not
        synced (batch mode promises nothing on power failure).
        """
        assert self._root_fd is not None
        root_fd = self._root_fd
        temporary = f".{INDEX_NAME}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
        document: dict[str, int] = {"last_event_id": value}
        if reserved_through is not None:
            document["reserved_through"] = reserved_through
        try:
            fd = _open_below(
                root_fd, temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.root / temporary
            )
            try:
                _write_all(fd, json.dumps(document).encode())
                if reserved_through is None:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, INDEX_NAME, src_dir_fd=root_fd, dst_dir_fd=root_fd)
            if reserved_through is None:
                _fsync_directory(root_fd)
            self._index_warned = False
        except OSError as exc:
            if not self._index_warned:
                log.warning("cannot update %s (it lags): %s", self.root / INDEX_NAME, exc)
                self._index_warned = True
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=root_fd)
        self._index_written_at = time.monotonic()

    def _reconcile(self) -> None:
        """Set the counter to the highest of counter file, ``index.json`` (and the IDs it
        records as handed out) and stream tails."""
        self._forget_segments()
        index = self._read_index()
        reserved = _index_field(self.root / INDEX_NAME, "reserved_through")
        highest = max(self._read_counter() or 0, index or 0, reserved or 0)
        for stream in self.list_streams():
            highest = max(highest, self._highest_id_in_tail(stream))
        self._write_counter(highest)
        if index != highest:
            self._write_index(highest)
        self._known_counter = highest

    def _highest_id_in_tail(self, stream: StreamKey) -> int:
        directory = self._stream_directory(stream, create=False)
        if directory is None:
            return 0
        for number in reversed(self.list_segments(stream)):
            name = segment_name(number)
            path = self._segment_path(stream, number)
            repair_torn_tail(directory, name, path)
            fd = _open_below(directory, name, os.O_RDONLY, path)
            with os.fdopen(fd, "rb") as segment:
                found = [line_event_id(line) for line in bounded_lines(segment)]
            ids = [event_id for event_id in found if event_id is not None]
            if ids:
                return max(ids)
        return 0

    def _segment_path(self, stream: StreamKey, number: int) -> Path:
        return self.root / stream.domain / stream.category / segment_name(number)

    def _stream_directory(self, stream: StreamKey, *, create: bool) -> int | None:
        """The descriptor of a stream's directory, opened (and made) without following links;
        ``None`` if it does not exist and ``create`` is false."""
        known = self._directories.get(stream)
        if known is not None:
            return known
        assert self._root_fd is not None
        parent, path = self._root_fd, self.root
        opened: list[int] = []
        try:
            for name in stream:
                path = path / name
                try:
                    fd = _open_below(parent, name, _DIRECTORY, path)
                except FileNotFoundError:
                    if not create:
                        return None
                    os.mkdir(name, 0o755, dir_fd=parent)
                    self._unsynced_directories.add(parent)
                    fd = _open_below(parent, name, _DIRECTORY, path)
                except NotADirectoryError as exc:  # O_DIRECTORY|O_NOFOLLOW on a link says so too
                    found = os.stat(name, dir_fd=parent, follow_symlinks=False)
                    kind = "a symbolic link" if stat.S_ISLNK(found.st_mode) else "not a directory"
                    raise StorageError(
                        f"{path} is {kind}; a stream must be real directories below the root"
                    ) from exc
                opened.append(fd)
                parent = fd
        finally:
            for fd in opened[:-1]:
                if fd in self._unsynced_directories:
                    continue
                os.close(fd)
        self._directories[stream] = parent
        return parent

    def _open_segment(self, stream: StreamKey, number: int) -> _OpenSegment:
        directory = self._stream_directory(stream, create=True)
        assert directory is not None
        name, path = segment_name(number), self._segment_path(stream, number)
        try:
            existing = os.stat(name, dir_fd=directory, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None and stat.S_ISLNK(existing.st_mode):
            raise StorageError(f"{path} is a symbolic link; links below a trail root are refused")
        if existing is not None and not stat.S_ISREG(existing.st_mode):
            raise StorageError(f"{path} is not a regular file")
        if existing is not None:
            repair_torn_tail(directory, name, path)
        fd = _open_below(directory, name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, path)
        if existing is None:
            self._unsynced_directories.add(directory)
        relative = f"{stream.domain}/{stream.category}/{name}"
        held = os.fstat(fd)
        return _OpenSegment(stream, number, fd, held.st_size, relative, (held.st_ino, held.st_dev))

    def _segment_for(self, stream: StreamKey) -> _OpenSegment:
        """The open segment of a stream, checked to still be the file its path names: one
        deleted, renamed or replaced since it was opened is let go and opened afresh."""
        segment = self._segments.get(stream)
        if segment is not None and not self._names_open_file(segment):
            log.warning("%s was replaced under this writer; opening it afresh", segment.relative)
            self._drop_stream(stream)
            segment = None
        if segment is None:
            numbers = self.list_segments(stream)
            segment = self._open_segment(stream, numbers[-1] if numbers else 1)
            self._segments[stream] = segment
        return segment

    def _names_open_file(self, segment: _OpenSegment) -> bool:
        """Whether the segment's path (from the root) still names the file open as ``fd``."""
        try:
            named = os.stat(segment.relative, dir_fd=self._root_fd, follow_symlinks=False)
        except OSError:
            return False
        return (named.st_ino, named.st_dev) == segment.identity

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
        self._sync_directories()

    def _sync_directories(self) -> None:
        for fd in list(self._unsynced_directories):
            _fsync_directory(fd)
            self._unsynced_directories.discard(fd)
            if fd not in self._directories.values() and fd != self._root_fd:
                os.close(fd)

    def _verify_written(self, segments: Sequence[_OpenSegment]) -> None:
        """Refuse to acknowledge as durable data that went to a file no longer in the trail
        (replaced while this commit wrote; one replaced before it began is reopened)."""
        for segment in {id(segment): segment for segment in segments}.values():
            if not self._names_open_file(segment):
                raise OSError(
                    errno.ESTALE, f"{self.root / segment.relative} was replaced while written"
                )

    def _close_retired(self) -> None:
        for segment in self._retired:
            os.close(segment.fd)
        self._retired.clear()

    def _drop_stream(self, stream: StreamKey) -> None:
        segment = self._segments.pop(stream, None)
        if segment is not None:
            os.close(segment.fd)
        directory = self._directories.pop(stream, None)
        if directory is not None and directory not in self._unsynced_directories:
            os.close(directory)

    def _forget_segments(self) -> None:
        self._close_retired()
        for stream in list(self._segments) + list(self._directories):
            self._drop_stream(stream)

    def abandon(self) -> None:
        """Close the inherited descriptors without unlocking: ``flock`` belongs to the open
        file the parent shares, so an unlock here would release the parent's lock."""
        descriptors = {segment.fd for segment in [*self._segments.values(), *self._retired]}
        descriptors |= {*self._directories.values(), *self._unsynced_directories}
        descriptors |= {fd for fd in (self._root_fd, self._counter_fd) if fd is not None}
        for fd in descriptors:
            os.close(fd)
        self._segments.clear()
        self._retired.clear()
        self._directories.clear()
        self._unsynced_directories.clear()
        self._root_fd = self._counter_fd = None
        self._sync_pool = None

    def close(self) -> None:
        """Bring ``index.json`` up to date and release every handle; later commits fail."""
        if self._closed or self._root_fd is None or self._counter_fd is None:
            self._closed = True  # never opened for writing: nothing to bring up to date
            if self._root_fd is not None:
                os.close(self._root_fd)
                self._root_fd = None
            return
        self._acquire()
        self._closed = True
        try:
            counter = self._read_counter()
            if counter is not None and counter != self._read_index():
                self._write_index(counter)
            self._sync_directories()
        except OSError as exc:
            raise StorageError(f"cannot close trail {self.root}: {exc}") from exc
        finally:
            if self._sync_pool is not None:
                self._sync_pool.shutdown()
                self._sync_pool = None
            self._forget_segments()
            root_fd, counter_fd = self._root_fd, self._counter_fd
            self._root_fd = self._counter_fd = None
            if counter_fd is not None:
                os.close(counter_fd)
            fcntl.flock(root_fd, fcntl.LOCK_UN)
            os.close(root_fd)
            self._thread_lock.release()

    # -- reading -----------------------------------------------------------------------------

    def last_event_id(self) -> int:
        """The counter if no commit is under way; during one (its IDs may not be written yet)
        the lagging ``index.json``, which is only ever written after the data. Never waits."""
        try:
            root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return self._read_index() or 0
        try:
            try:
                fcntl.flock(root_fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return self._read_index() or 0
            try:
                fd = os.open(LOCK_NAME, os.O_RDONLY | _NOFOLLOW, dir_fd=root_fd)
                try:
                    counter = _parse_counter(os.pread(fd, COUNTER_READ_BYTES, 0))
                finally:
                    os.close(fd)
            except OSError:  # missing, a link, or not a file
                counter = None
        finally:
            os.close(root_fd)
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
        """Segment numbers of a stream: entries with a segment's exact name that are not
        directories (a link named like a segment is listed, and refused when opened)."""
        directory = self.root / stream.domain / stream.category
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return []
        numbers = (
            parse_segment_name(entry.name)
            for entry in entries
            if not entry.is_dir(follow_symlinks=False)
        )
        return sorted(number for number in numbers if number is not None)

    def read_segment(self, stream: StreamKey, number: int) -> Iterator[bytes]:
        path = self._segment_path(stream, number)
        try:
            fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
        except OSError as exc:
            raise _refusing_links(path, exc) from exc
        with os.fdopen(fd, "rb") as segment:
            yield from bounded_lines(segment)

    def segment_size(self, stream: StreamKey, number: int) -> int:
        return os.stat(self._segment_path(stream, number), follow_symlinks=False).st_size


def _index_field(path: Path, name: str) -> int | None:
    """A counter field of ``index.json`` (not followed if a link); ``None`` if absent, and for
    anything unreadable, with a warning."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
        try:
            data = b"".join(iter(lambda: os.read(fd, 65536), b""))
        finally:
            os.close(fd)
        value = json.loads(data).get(name)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError, RecursionError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return None
    return value if isinstance(value, int) and value >= 0 else None


def _subdirectories(path: Path) -> list[str]:
    """Names of the real directories in ``path`` (links to directories are not followed)."""
    try:
        entries = list(os.scandir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [
        entry.name
        for entry in entries
        if entry.is_dir(follow_symlinks=False) and not entry.name.startswith(".")
    ]


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
                self._backend._write_counter(self._reserved)
                self._backend._write_index(self._start, reserved_through=self._reserved)
            except OSError as exc:
                raise StorageError(
                    f"cannot reserve IDs in trail {self._backend.root}: {exc}"
                ) from exc
        return first

    def commit(self, *, sync: bool) -> int:
        backend = self._backend
        written: list[tuple[_OpenSegment, int]] = []
        try:
            self._write(written, sync=sync)
        except BaseException as exc:
            self._roll_back(written)
            self._finish()
            if isinstance(exc, OSError) and not isinstance(exc, StorageError):
                raise StorageError(f"cannot append to trail {backend.root}: {exc}") from exc
            raise
        try:
            backend._close_retired()
            backend._known_counter = self._end
            reserved_in_index = self._reserved > self._start  # handed-out IDs recorded there
            if reserved_in_index or (
                time.monotonic() - backend._index_written_at >= INDEX_REFRESH_SECONDS
            ):
                backend._write_index(self._end)
        finally:
            self._finish()
        return self._start + 1

    def _write(self, written: list[tuple[_OpenSegment, int]], *, sync: bool) -> None:
        """Advance the counter, then write (rotating as planned), sync, and check that every
        written file is still in the trail; ``written`` collects what to cut back on failure."""
        backend = self._backend
        if self._end != self._start or self._reserved != self._end:
            if not self.hand_out:
                self.reserving(self._start + 1, self._end)
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
        if sync:  # and only then, as it costs a path lookup per stream, check that the files
            segments = [segment for segment, _ in written]  # are still the trail's
            backend._sync(segments)
            backend._verify_written(segments)

    def _roll_back(self, written: list[tuple[_OpenSegment, int]]) -> None:
        """Undo a failed commit: cut the written files back and return the reserved IDs.

        The IDs stay spent (a reported gap) if they were already handed out to callers, or if
        a file cannot be cut back, so that no later event can get the same ID.
        """
        backend = self._backend
        backend._known_counter = None
        cut_back = True
        for segment, size in reversed(written):
            try:
                os.ftruncate(segment.fd, size)
            except OSError:
                cut_back = False
                log.exception("could not roll back a failed append of %s", backend.root)
        if cut_back and not self.hand_out:
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
