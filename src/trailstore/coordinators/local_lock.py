"""The local-lock adapter: ``flock`` on a directory of the writers' host, plus a counter file.

``LocalLock`` is the primitive: one commit at a time among the threads (an in-process lock) and
processes (``flock`` on the directory itself, which unlike a lock file cannot be deleted or
replaced under running writers) of one host, and a counter file that a commit advances before
it writes, so that a writer finding it changed knows another writer touched the trail. The
local-disk backend locks the trail's root; a trail on other storage locks a directory of its
own under the system's temporary directory, named after the trail's URL.

``LockedCommits`` is the coordinator built on it for trails kept as a log of commits.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import tempfile
import threading
from pathlib import Path
from typing import ClassVar

from trailstore.errors import StorageError, WriterClosedError
from trailstore.store.commits import Commit, Lease
from trailstore.store.log import LogStore

from . import Coordinator

COUNTER_NAME = ".trailstore.lock"
#: the counter is a padded decimal line; reading this much covers it
COUNTER_READ_BYTES = 64
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


def parse_counter(data: bytes) -> int | None:
    """The counter a counter file holds, ``None`` if it holds anything else."""
    text = data.strip()
    return int(text) if text.isdigit() else None


def lock_directory_for(url: str) -> Path:
    """The directory locked for a trail that is not on the local disk (one per URL)."""
    digest = hashlib.sha256(url.encode()).hexdigest()[:32]
    return Path(tempfile.gettempdir()) / "trailstore-locks" / digest


class LocalLock:
    """``flock`` on ``directory`` plus the counter file ``directory/.trailstore.lock``."""

    described: ClassVar[str] = "a lock on this host: every writer must run on it"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._thread_lock = threading.Lock()
        self.directory_fd: int | None = None
        self._counter_fd: int | None = None
        self.closed = False

    def acquire(self) -> bool:
        """Take the lock; True if the counter file had to be opened (afresh, or again after it
        was deleted or replaced), so its value may not be the one this writer last saw."""
        self._thread_lock.acquire()
        try:
            if self.closed:
                raise WriterClosedError(f"trail lock {self.directory} was closed by this writer")
            if self.directory_fd is None:
                self.directory_fd = os.open(
                    self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
                )
            fcntl.flock(self.directory_fd, fcntl.LOCK_EX)
            try:
                return self._open_counter()
            except BaseException:
                fcntl.flock(self.directory_fd, fcntl.LOCK_UN)
                raise
        except BaseException:
            self._thread_lock.release()
            raise

    def _open_counter(self) -> bool:
        if self._counter_fd is not None and os.fstat(self._counter_fd).st_nlink > 0:
            return False
        if self._counter_fd is not None:
            os.close(self._counter_fd)  # deleted or replaced: its value may be stale
            self._counter_fd = None
        assert self.directory_fd is not None
        try:
            self._counter_fd = os.open(
                COUNTER_NAME, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o644, dir_fd=self.directory_fd
            )
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StorageError(
                    f"{self.directory / COUNTER_NAME} is a symbolic link; links below a trail "
                    "root are refused"
                ) from exc
            raise
        return True

    def release(self) -> None:
        try:
            if self.directory_fd is not None:
                fcntl.flock(self.directory_fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    @property
    def held_counter(self) -> bool:
        """Whether a counter file is open (the lock was taken at least once)."""
        return self._counter_fd is not None

    def read(self) -> int | None:
        """The counter (under the lock)."""
        assert self._counter_fd is not None
        return parse_counter(os.pread(self._counter_fd, COUNTER_READ_BYTES, 0))

    def write(self, value: int) -> None:
        """Set the counter (under the lock)."""
        self._put(b"%20d\n" % value)

    def mark_busy(self) -> None:
        """Make the counter unreadable (``read`` gives ``None``) until the next ``write``."""
        self._put(b"%20s\n" % b"busy")

    def _put(self, data: bytes) -> None:
        assert self._counter_fd is not None
        if os.pwrite(self._counter_fd, data, 0) != len(data):
            raise OSError(errno.EIO, "short write to the counter file")

    def peek(self) -> int | None:
        """The counter if no commit is under way, without waiting; ``None`` during one (its
        IDs may not be written yet) or if there is no readable counter."""
        try:
            fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return None
            try:
                counter = os.open(COUNTER_NAME, os.O_RDONLY | _NOFOLLOW, dir_fd=fd)
                try:
                    return parse_counter(os.pread(counter, COUNTER_READ_BYTES, 0))
                finally:
                    os.close(counter)
            except OSError:  # missing, a link, or not a file
                return None
        finally:
            os.close(fd)

    def abandon(self) -> None:
        """In a forked child: close the inherited descriptors without unlocking (``flock``
        belongs to the open file the parent shares; an unlock here would release its lock)."""
        for fd in (self.directory_fd, self._counter_fd):
            if fd is not None:
                os.close(fd)
        self.directory_fd = self._counter_fd = None

    def close(self) -> None:
        """Unlock and close the descriptors; later use fails. (Closing alone would leave the
        lock held by any forked child that inherited the descriptor.)"""
        self.closed = True
        if self.directory_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self.directory_fd, fcntl.LOCK_UN)
        for fd in (self._counter_fd, self.directory_fd):
            if fd is not None:
                os.close(fd)
        self.directory_fd = self._counter_fd = None


class LockedCommits(Coordinator):
    """Commits of a log taken one at a time under a ``LocalLock``: writers on one host."""

    exclusive: ClassVar[bool] = True
    described: ClassVar[str] = LocalLock.described

    def __init__(self, url: str) -> None:
        directory = lock_directory_for(url)
        directory.mkdir(parents=True, exist_ok=True)
        self.lock = LocalLock(directory)

    def enter(self) -> int | None:
        """The marker, replaced by "busy" until ``leave``: a writer killed in between (a
        ``batch`` writer holding handed-out IDs) leaves no marker, so the next one reads the
        log instead of trusting the state it had cached."""
        self.lock.acquire()
        try:
            marker = self.lock.read()
            self.lock.mark_busy()
            return marker
        except BaseException:
            self.lock.release()
            raise

    def claim(self, store: LogStore, commit: Commit) -> None:
        store.create_commit(commit, create_only=False)  # the lock makes the number ours

    def leave(self, marker: int | None) -> None:
        try:
            if marker is not None:
                self.lock.write(marker)
        finally:
            self.lock.release()

    def may_take_over(self, lease: Lease, now: float) -> bool:
        return True  # the lease's holder is not committing: this writer holds the lock

    def abandon(self) -> None:
        self.lock.abandon()

    def close(self) -> None:
        self.lock.close()
