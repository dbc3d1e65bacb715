"""``AppendingStore``: a trail's segments on a local filesystem, which can append in place.

Segments are written with ``O_APPEND`` and made durable with ``fdatasync``; a torn last line
(a writer killed mid-write) is cut off and kept in a ``<segment>.torn`` quarantine file;
``index.json`` is replaced atomically (temp file, fsync, rename, directory fsync).

Nothing below the root is reached through a symbolic link: directories and files are opened
relative to their parent's descriptor with ``O_NOFOLLOW`` (which is why this store works on
descriptors rather than through fsspec's local filesystem, whose ``open`` follows links), and
the path of every segment about to be acknowledged is checked to still name the open file.

Who may write, and which IDs, is not decided here: the store is used under a coordinator
(``trailstore.coordinators.local_lock``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from trailstore.backend import INDEX_NAME, StreamKey, parse_segment_name, segment_name
from trailstore.errors import StorageError
from trailstore.lines import bounded_lines, line_event_id

TORN_SUFFIX = ".torn"
#: segments of different streams written in one commit are synced by up to this many threads
SYNC_THREADS = 8
_COPY_CHUNK = 1024 * 1024
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW

log = logging.getLogger("trailstore")


@dataclass
class AppendSegment:
    """A segment open for appending."""

    stream: StreamKey
    number: int
    fd: int
    size: int
    #: the path relative to the root, to check that it still names this file
    relative: str
    #: ``(st_ino, st_dev)`` of the open file
    identity: tuple[int, int]


def datasync(fd: int) -> None:
    """``fdatasync`` where the platform has it (Linux), ``fsync`` elsewhere (macOS)."""
    getattr(os, "fdatasync", os.fsync)(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` (a short write is continued, not lost)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def refusing_links(path: Path, error: OSError) -> OSError:
    """``ELOOP`` from an ``O_NOFOLLOW`` open means a symbolic link: say so, naming it."""
    if error.errno == errno.ELOOP:
        return StorageError(f"{path} is a symbolic link; links below a trail root are refused")
    return error


def open_below(parent_fd: int, name: str, flags: int, path: Path, mode: int = 0o644) -> int:
    """Open ``name`` in the directory ``parent_fd`` without following a link there."""
    try:
        return os.open(name, flags | _NOFOLLOW, mode, dir_fd=parent_fd)
    except OSError as exc:
        raise refusing_links(path, exc) from exc


def _read_all(fd: int, start: int, stop: int) -> bytes:
    """Bytes ``start`` to ``stop`` of an open file (fewer if it ends first)."""
    parts = []
    while start < stop:
        part = os.pread(fd, min(stop - start, _COPY_CHUNK * 16), start)
        if not part:
            break
        parts.append(part)
        start += len(part)
    return b"".join(parts)


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
    fd = open_below(directory_fd, name, os.O_RDWR, path)
    try:
        size = os.fstat(fd).st_size
        if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
            return 0
        keep = _last_newline_offset(fd, size)
        quarantine = name + TORN_SUFFIX
        out = open_below(
            directory_fd, quarantine, os.O_WRONLY | os.O_APPEND | os.O_CREAT, path.parent
        )
        try:
            for offset in range(keep, size, _COPY_CHUNK):
                write_all(out, os.pread(fd, min(_COPY_CHUNK, size - offset), offset))
            write_all(out, b"\n")
            os.fsync(out)
        finally:
            os.close(out)
        os.ftruncate(fd, keep)
        os.fsync(fd)
        log.warning("repaired torn tail of %s: %d bytes moved to %s", path, size - keep, quarantine)
        return size - keep
    finally:
        os.close(fd)


def read_index_counters(path: Path) -> dict[str, int]:
    """The counter fields of ``index.json`` that hold a non-negative integer (not followed if
    a link); none if it is absent, and none, with a warning, if it is unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
        try:
            data = b"".join(iter(lambda: os.read(fd, 65536), b""))
        finally:
            os.close(fd)
        document = json.loads(data)
        fields = document.items()
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, AttributeError, RecursionError) as exc:
        log.warning("ignoring unreadable %s: %s", path, exc)
        return {}
    return {name: value for name, value in fields if isinstance(value, int) and value >= 0}


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


class AppendingStore:
    """The segments of the trail in ``root``: listing and reading for anyone; open segments,
    writing, syncing and repair for a writer (which must hold the trail's coordinator)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        #: the root's descriptor, owned by the coordinator (``attach``)
        self._root_fd: int | None = None
        self._segments: dict[StreamKey, AppendSegment] = {}
        self._directories: dict[StreamKey, int] = {}
        self._retired: list[AppendSegment] = []
        self._unsynced_directories: set[int] = set()
        self._sync_pool: ThreadPoolExecutor | None = None

    def attach(self, root_fd: int) -> None:
        """Write below the directory open as ``root_fd`` (the one the writer locks, so that a
        root renamed and made again cannot have this writer lock one and write the other)."""
        self._root_fd = root_fd

    @property
    def root_fd(self) -> int:
        assert self._root_fd is not None, "the store is written only when attached"
        return self._root_fd

    # -- reading -------------------------------------------------------------------------------

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

    def segment_path(self, stream: StreamKey, number: int) -> Path:
        return self.root / stream.domain / stream.category / segment_name(number)

    def read_segment(self, stream: StreamKey, number: int) -> Iterator[bytes]:
        path = self.segment_path(stream, number)
        try:
            fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
        except OSError as exc:
            raise refusing_links(path, exc) from exc
        with os.fdopen(fd, "rb") as segment:
            yield from bounded_lines(segment)

    def segment_size(self, stream: StreamKey, number: int) -> int:
        return os.stat(self.segment_path(stream, number), follow_symlinks=False).st_size

    def read_range(self, stream: StreamKey, number: int, start: int, end: int | None) -> bytes:
        path = self.segment_path(stream, number)
        try:
            fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
        except OSError as exc:
            raise refusing_links(path, exc) from exc
        try:
            stop = os.fstat(fd).st_size if end is None else end
            return _read_all(fd, start, stop)
        finally:
            os.close(fd)

    # -- files beside the segments (evidence) ---------------------------------------------------

    def read_file(self, relative: str) -> bytes:
        """A file below the root, reached without following a link."""
        *directories, name = relative.split("/")
        parent = self._directory_below(directories, create=False)
        try:
            fd = open_below(parent, name, os.O_RDONLY, self.root / relative)
            try:
                return _read_all(fd, 0, os.fstat(fd).st_size)
            finally:
                os.close(fd)
        finally:
            os.close(parent)

    def list_files(self, relative: str) -> list[str]:
        """Names of the regular files in a directory below the root (none if it is absent)."""
        try:
            parent = self._directory_below(relative.split("/"), create=False)
        except (FileNotFoundError, NotADirectoryError):
            return []
        try:
            with os.scandir(parent) as entries:
                files = [entry.name for entry in entries if entry.is_file(follow_symlinks=False)]
            return sorted(files)
        finally:
            os.close(parent)

    def create_file_once(self, relative: str, data: bytes) -> bool:
        """Create a file below the root durably and at once (a synced temporary file, linked
        to its name, which fails if the name exists); True if the file holds ``data`` now."""
        *directories, name = relative.split("/")
        parent = self._directory_below(directories, create=True)
        temporary = f".{name}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
        try:
            fd = open_below(parent, temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.root)
            try:
                write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)
            except FileExistsError:
                return self.read_file(relative) == data
            os.fsync(parent)
            return True
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=parent)
            os.close(parent)

    def remove_file(self, relative: str) -> None:
        """Delete a file below the root durably (its directory synced); an absent one is
        already removed."""
        *directories, name = relative.split("/")
        parent = self._directory_below(directories, create=False)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=parent)
            os.fsync(parent)
        finally:
            os.close(parent)

    def _directory_below(self, names: Sequence[str], *, create: bool) -> int:
        """A descriptor of the directory ``names`` below the root, opened (and, with
        ``create``, made) without following links."""
        fd = os.open(self.root, _DIRECTORY)
        path = self.root
        try:
            for name in names:
                path = path / name
                try:
                    child = open_below(fd, name, _DIRECTORY, path)
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o755, dir_fd=fd)
                    os.fsync(fd)
                    child = open_below(fd, name, _DIRECTORY, path)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def read_index(self) -> dict[str, int]:
        """The counter fields of ``index.json`` (``last_event_id``, ``reserved_through``)."""
        return read_index_counters(self.root / INDEX_NAME)

    def highest_id_in_tail(self, stream: StreamKey) -> int:
        """The highest ID in the stream's newest segment that holds any (torn tails repaired
        first, empty segments walked past)."""
        directory = self._stream_directory(stream, create=False)
        if directory is None:
            return 0
        for number in reversed(self.list_segments(stream)):
            name = segment_name(number)
            path = self.segment_path(stream, number)
            repair_torn_tail(directory, name, path)
            fd = open_below(directory, name, os.O_RDONLY, path)
            with os.fdopen(fd, "rb") as segment:
                found = [line_event_id(line) for line in bounded_lines(segment)]
            ids = [event_id for event_id in found if event_id is not None]
            if ids:
                return max(ids)
        return 0

    # -- writing -------------------------------------------------------------------------------

    def write_index(self, document: dict[str, int], *, sync: bool) -> None:
        """Replace ``index.json`` atomically (synced, with its directory, if ``sync``)."""
        root_fd = self.root_fd
        temporary = f".{INDEX_NAME}.{os.getpid()}.{uuid.uuid4().hex}.tmp"
        try:
            fd = open_below(
                root_fd, temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.root / temporary
            )
            try:
                write_all(fd, json.dumps(document).encode())
                if sync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, INDEX_NAME, src_dir_fd=root_fd, dst_dir_fd=root_fd)
            if sync:
                os.fsync(root_fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=root_fd)
            raise

    def segment_for(self, stream: StreamKey) -> AppendSegment:
        """The open segment of a stream, checked to still be the file its path names: one
        deleted, renamed or replaced since it was opened is let go and opened afresh."""
        segment = self._segments.get(stream)
        if segment is not None and not self.names_open_file(segment):
            log.warning("%s was replaced under this writer; opening it afresh", segment.relative)
            self._drop_stream(stream)
            segment = None
        if segment is None:
            numbers = self.list_segments(stream)
            segment = self._open_segment(stream, numbers[-1] if numbers else 1)
            self._segments[stream] = segment
        return segment

    def rotate(self, stream: StreamKey) -> AppendSegment:
        """Open the stream's next segment; the current one is closed after the commit."""
        old = self._segments.pop(stream)
        self._retired.append(old)
        segment = self._open_segment(stream, old.number + 1)
        self._segments[stream] = segment
        return segment

    def append(self, segment: AppendSegment, data: bytes) -> None:
        write_all(segment.fd, data)
        segment.size += len(data)

    def cut_back(self, segment: AppendSegment, size: int) -> None:
        """Truncate a segment to ``size`` bytes (undoing a failed commit)."""
        os.ftruncate(segment.fd, size)

    def sync(self, segments: Sequence[AppendSegment]) -> None:
        """Make the written segments and new directories durable; several segments are
        synced at once (one thread each), so their flushes overlap instead of queueing."""
        descriptors = list(dict.fromkeys(segment.fd for segment in segments))
        if len(descriptors) == 1:
            datasync(descriptors[0])
        elif descriptors:
            if self._sync_pool is None:
                self._sync_pool = ThreadPoolExecutor(SYNC_THREADS, "trailstore-sync")
            syncs = [self._sync_pool.submit(datasync, fd) for fd in descriptors]
            wait(syncs)  # all of them, before a failure can lead to closing descriptors
            for done in syncs:
                done.result()
        self.sync_directories()

    def sync_directories(self) -> None:
        for fd in list(self._unsynced_directories):
            os.fsync(fd)
            self._unsynced_directories.discard(fd)
            if fd not in self._directories.values() and fd != self._root_fd:
                os.close(fd)

    def verify_written(self, segments: Sequence[AppendSegment]) -> None:
        """Refuse to acknowledge as durable data that went to a file no longer in the trail
        (replaced while this commit wrote; one replaced before it began is reopened)."""
        for segment in {id(segment): segment for segment in segments}.values():
            if not self.names_open_file(segment):
                raise OSError(
                    errno.ESTALE, f"{self.root / segment.relative} was replaced while written"
                )

    def names_open_file(self, segment: AppendSegment) -> bool:
        """Whether the segment's path (from the root) still names the file open as ``fd``."""
        try:
            named = os.stat(segment.relative, dir_fd=self.root_fd, follow_symlinks=False)
        except OSError:
            return False
        return (named.st_ino, named.st_dev) == segment.identity

    def close_retired(self) -> None:
        for segment in self._retired:
            os.close(segment.fd)
        self._retired.clear()

    def forget(self) -> None:
        """Close every open segment and directory: another writer may have changed them."""
        self.close_retired()
        for stream in list(self._segments) + list(self._directories):
            self._drop_stream(stream)

    def abandon(self) -> None:
        """In a forked child: close the inherited descriptors, touching nothing else."""
        descriptors = {segment.fd for segment in [*self._segments.values(), *self._retired]}
        descriptors |= {*self._directories.values(), *self._unsynced_directories}
        descriptors.discard(self._root_fd)
        for fd in descriptors:
            os.close(fd)
        self._segments.clear()
        self._retired.clear()
        self._directories.clear()
        self._unsynced_directories.clear()
        self._root_fd = None
        self._sync_pool = None

    def close(self) -> None:
        """Sync new directories, then close everything (also if the sync fails)."""
        try:
            self.sync_directories()
        finally:
            if self._sync_pool is not None:
                self._sync_pool.shutdown()
                self._sync_pool = None
            self.forget()
            for fd in self._unsynced_directories - {self._root_fd}:
                os.close(fd)
            self._unsynced_directories.clear()
            self._root_fd = None

    def _stream_directory(self, stream: StreamKey, *, create: bool) -> int | None:
        """The descriptor of a stream's directory, opened (and made) without following links;
        ``None`` if it does not exist and ``create`` is false."""
        known = self._directories.get(stream)
        if known is not None:
            return known
        parent, path = self.root_fd, self.root
        opened: list[int] = []
        try:
            for name in stream:
                path = path / name
                try:
                    fd = open_below(parent, name, _DIRECTORY, path)
                except FileNotFoundError:
                    if not create:
                        return None
                    os.mkdir(name, 0o755, dir_fd=parent)
                    self._unsynced_directories.add(parent)
                    fd = open_below(parent, name, _DIRECTORY, path)
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

    def _open_segment(self, stream: StreamKey, number: int) -> AppendSegment:
        directory = self._stream_directory(stream, create=True)
        assert directory is not None
        name, path = segment_name(number), self.segment_path(stream, number)
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
        fd = open_below(directory, name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, path)
        if existing is None:
            self._unsynced_directories.add(directory)
        relative = f"{stream.domain}/{stream.category}/{name}"
        held = os.fstat(fd)
        return AppendSegment(stream, number, fd, held.st_size, relative, (held.st_ino, held.st_dev))

    def _drop_stream(self, stream: StreamKey) -> None:
        segment = self._segments.pop(stream, None)
        if segment is not None:
            os.close(segment.fd)
        directory = self._directories.pop(stream, None)
        if directory is not None and directory not in self._unsynced_directories:
            os.close(directory)
