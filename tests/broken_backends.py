"""Backends that each break one guarantee, for proving that the conformance suite and the crash
kit reject them (``test_suite_has_teeth.py``). Each is the local backend with one flaw."""

from __future__ import annotations

import os
from typing import Any

from trailstore.backend import CommitSession
from trailstore.backends import local
from trailstore.backends.local import LocalBackend
from trailstore.registry import register_backend


class ForgetfulBackend(LocalBackend):
    """Forgets IDs it handed out before their commit (``batch``): it never reserves them, so
    after an abort or a crash they go to later events."""

    def begin(self, *, max_segment_bytes: int, hand_out: bool = False) -> CommitSession:
        return super().begin(max_segment_bytes=max_segment_bytes, hand_out=False)


class LinkFollowingBackend(LocalBackend):
    """Opens stream directories and segments through symbolic links (its repair of torn
    tails still refuses them)."""

    def _stream_directory(self, stream: Any, *, create: bool) -> int | None:
        path = self.root / stream.domain / stream.category
        if not path.exists() and not create:
            return None
        path.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY)

    def _open_segment(self, stream: Any, number: int) -> Any:
        directory = self._stream_directory(stream, create=True)
        name = local.segment_name(number)
        fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644, dir_fd=directory)
        held = os.fstat(fd)
        relative = f"{stream.domain}/{stream.category}/{name}"
        return local._OpenSegment(
            stream, number, fd, held.st_size, relative, (held.st_ino, held.st_dev)
        )

    def _names_open_file(self, segment: Any) -> bool:
        return True


class UnlockedBackend(LocalBackend):
    """Takes no lock between processes or backend instances, only its own thread lock."""

    def _acquire(self) -> None:
        self._thread_lock.acquire()
        if self._root_fd is None:
            self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        if self._counter_fd is None:
            self._counter_fd = os.open(self.root / local.LOCK_NAME, os.O_RDWR | os.O_CREAT)

    def _release(self) -> None:
        self._thread_lock.release()


class SpendingAbortBackend(LocalBackend):
    """An abort spends the IDs it had allocated (the next session starts above them)."""

    def begin(self, *, max_segment_bytes: int, hand_out: bool = False) -> CommitSession:
        session = super().begin(max_segment_bytes=max_segment_bytes, hand_out=hand_out)
        abort = session.abort

        def spending_abort() -> None:
            self._write_counter(session._end)  # type: ignore[attr-defined]
            self._known_counter = session._end  # type: ignore[attr-defined]
            abort()

        session.abort = spending_abort  # type: ignore[method-assign]
        return session


BROKEN = {
    "forgetful": ForgetfulBackend,
    "linkfollowing": LinkFollowingBackend,
    "unlocked": UnlockedBackend,
    "spendingabort": SpendingAbortBackend,
}


def register() -> None:
    """Serve each broken backend under its own scheme (also run in crash-kit writers)."""
    for scheme, backend in BROKEN.items():
        register_backend(scheme, backend)
