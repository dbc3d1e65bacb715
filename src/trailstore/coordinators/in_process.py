"""``InProcessCommits``: commits of a trail that lives in one process (``memory://``), one at a
time, under a lock of that process; it needs nothing of the operating system (no ``fcntl``)."""

from __future__ import annotations

import threading
from typing import ClassVar

from trailstore.store.commits import Commit, Lease
from trailstore.store.log import LogStore

from . import Coordinator

_LOCKS: dict[str, threading.Lock] = {}
_MARKERS: dict[str, int] = {}
_REGISTRY_LOCK = threading.Lock()


class InProcessCommits(Coordinator):
    """One commit at a time among the threads of this process, per trail URL."""

    exclusive: ClassVar[bool] = True
    described: ClassVar[str] = "a lock in this process, where the trail lives"

    def __init__(self, url: str) -> None:
        self.url = url
        with _REGISTRY_LOCK:
            self._lock = _LOCKS.setdefault(url, threading.Lock())

    def enter(self) -> int | None:
        self._lock.acquire()
        return _MARKERS.get(self.url)

    def claim(self, store: LogStore, commit: Commit) -> None:
        store.create_commit(commit, create_only=False)  # the lock makes the number ours

    def leave(self, marker: int | None) -> None:
        if marker is not None:
            _MARKERS[self.url] = marker
        self._lock.release()

    def may_take_over(self, lease: Lease, now: float) -> bool:
        return True  # its holder is not committing: this writer holds the lock
