"""Backends that each break one guarantee, for proving that the conformance suite and the crash
kit reject them (``test_suite_has_teeth.py``). Each is the local backend with one flaw."""

from __future__ import annotations

import os
from typing import Any

from trailstore.backend import CommitSession, segment_name
from trailstore.backends.local import LocalBackend
from trailstore.coordinators.local_lock import LocalLock
from trailstore.registry import register_backend
from trailstore.store.appending import AppendingStore, AppendSegment


class ForgetfulBackend(LocalBackend):
    """Forgets IDs it handed out before their commit (``batch``): it never reserves them, so
    after an abort or a crash they go to later events."""

    def begin(self, *, max_segment_bytes: int, hand_out: bool = False) -> CommitSession:
        return super().begin(max_segment_bytes=max_segment_bytes, hand_out=False)


class _LinkFollowingStore(AppendingStore):
    def _stream_directory(self, stream: Any, *, create: bool) -> int | None:
        path = self.root / stream.domain / stream.category
        if not path.exists() and not create:
            return None
        path.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY)

    def _open_segment(self, stream: Any, number: int) -> AppendSegment:
        directory = self._stream_directory(stream, create=True)
        name = segment_name(number)
        fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644, dir_fd=directory)
        held = os.fstat(fd)
        relative = f"{stream.domain}/{stream.category}/{name}"
        return AppendSegment(stream, number, fd, held.st_size, relative, (held.st_ino, held.st_dev))

    def names_open_file(self, segment: AppendSegment) -> bool:
        return True


class LinkFollowingBackend(LocalBackend):
    """Opens stream directories and segments through symbolic links (its repair of torn
    tails still refuses them)."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        super().__init__(url, **storage_options)
        self.store = _LinkFollowingStore(self.root)


class _ThreadOnlyLock(LocalLock):
    def acquire(self) -> bool:
        self._thread_lock.acquire()
        if self.directory_fd is None:
            self.directory_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        return self._open_counter()

    def release(self) -> None:
        self._thread_lock.release()


class UnlockedBackend(LocalBackend):
    """Takes no lock between processes or backend instances, only its own thread lock."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        super().__init__(url, **storage_options)
        self.lock = _ThreadOnlyLock(self.root)


class SpendingAbortBackend(LocalBackend):
    """An abort spends the IDs it had allocated (the next session starts above them)."""

    def begin(self, *, max_segment_bytes: int, hand_out: bool = False) -> CommitSession:
        session = super().begin(max_segment_bytes=max_segment_bytes, hand_out=hand_out)
        abort = session.abort

        def spending_abort() -> None:
            self.lock.write(session._end)  # type: ignore[attr-defined]
            self._known_counter = session._end  # type: ignore[attr-defined]
            abort()

        session.abort = spending_abort  # type: ignore[method-assign]
        return session


class OverwritingEvidenceBackend(LocalBackend):
    """Writes evidence files whether or not they exist: two writers checkpointing at once
    would each write "the next" checkpoint, one over the other, forking the chain."""

    def put_evidence(self, path: str, data: bytes) -> bool:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return True


BROKEN = {
    "forgetful": ForgetfulBackend,
    "linkfollowing": LinkFollowingBackend,
    "unlocked": UnlockedBackend,
    "spendingabort": SpendingAbortBackend,
    "overwriting": OverwritingEvidenceBackend,
}


def register() -> None:
    """Serve each broken backend under its own scheme (also run in crash-kit writers)."""
    for scheme, backend in BROKEN.items():
        register_backend(scheme, backend)
