"""Coordinators: what makes IDs unique and contiguous on a trail, and who may commit next.

- ``LocalLock`` (``local_lock.py``): an OS file lock on the writers' host, held for one commit,
  and a counter beside it, advanced before data is written: writers on one host, any storage;
- ``ConditionalWrites`` (``conditional.py``): no lock at all; a commit is claimed by creating
  the next commit object with a create-only write, which exactly one writer wins: writers on
  any number of hosts, on storage that enforces create-only writes (probed, never assumed).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from trailstore.store.commits import Commit, Lease
from trailstore.store.log import LogStore


class Coordinator(ABC):
    """Decides who commits next on a trail kept as a log of commits (``LogStore``)."""

    #: while entered, no other writer commits (a lock); otherwise claims are optimistic and a
    #: lost one is retried on the newer state
    exclusive: ClassVar[bool]
    #: how writers are coordinated, in words
    described: ClassVar[str]

    @abstractmethod
    def enter(self) -> int | None:
        """Begin a commit; returns the commit number the previous commit of any writer left as
        its marker (``None`` when the coordinator keeps none)."""

    @abstractmethod
    def claim(self, store: LogStore, commit: Commit) -> None:
        """Make ``commit`` the trail's commit of its number, or raise ``CommitTakenError``."""

    @abstractmethod
    def leave(self, marker: int | None) -> None:
        """End the commit, leaving ``marker`` (the newest commit number) for the next one."""

    @abstractmethod
    def may_take_over(self, lease: Lease, now: float) -> bool:
        """Whether another writer's lease may be taken over now."""

    def abandon(self) -> None:  # noqa: B027 - optional hook
        """In a forked child: let go of inherited handles without releasing the parent's."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""
