"""The conditional-write adapter: commits claimed by create-only writes, on any host.

There is no lock: a writer builds the next commit from the newest state it knows and creates
its object with ``pipe_file(..., mode="create")``. Exactly one writer wins each number; the
losers read the commits they missed, renumber their events above them, and try the next
number. An uncontended commit is therefore one request, and a writer that dies blocks nobody.

Writers that hand out IDs before their commit (``batch``) reserve them under a lease in a
commit of their own; while it is valid only its holder commits, and once it has expired the
next writer takes it over, the reserved IDs staying spent. A writer paused past its lease
finds its next commit number taken and the lease gone: ``FencedError``.

Storage must enforce create-only writes atomically, which some S3-compatible services and
emulators do not, and which fsspec's generic fallback (``exists`` then write) does not do:
``create_only_is_enforced`` checks both before this adapter is used.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import ClassVar

from fsspec import AbstractFileSystem
from fsspec.asyn import AsyncFileSystem

from trailstore.store.commits import Commit, Lease
from trailstore.store.layout import CONTROL, Layout
from trailstore.store.log import LogStore

from . import Coordinator


class ConditionalWrites(Coordinator):
    """Commits claimed by creating the next commit object, create-only."""

    exclusive: ClassVar[bool] = False
    described: ClassVar[str] = "conditional writes: writers may run on any number of hosts"

    def enter(self) -> int | None:
        return None

    def claim(self, store: LogStore, commit: Commit) -> None:
        store.create_commit(commit, create_only=True)

    def leave(self, marker: int | None) -> None:
        """Nothing is held."""

    def may_take_over(self, lease: Lease, now: float) -> bool:
        return lease.expires <= now


def implements_create_only(fs: AbstractFileSystem) -> bool:
    """Whether the filesystem's class writes ``mode="create"`` itself rather than through
    fsspec's generic ``exists``-then-write, which two writers can both pass."""
    kind = type(fs)
    if isinstance(fs, AsyncFileSystem):
        return kind._pipe_file is not AsyncFileSystem._pipe_file
    return kind.pipe_file is not AbstractFileSystem.pipe_file


def create_only_is_enforced(fs: AbstractFileSystem, layout: Layout) -> bool:
    """Probe: create one object twice, create-only; the second write must fail, and the
    object keep the first bytes. Some services accept the condition and ignore it."""
    if not implements_create_only(fs):
        return False
    probe = f"{layout.root.rstrip('/')}/{CONTROL}/probe-{uuid.uuid4().hex}"
    try:
        with contextlib.suppress(FileExistsError):  # a retry of a first attempt that landed
            fs.pipe_file(probe, b"first", mode="create")  # (the name is new to everyone else)
        try:
            fs.pipe_file(probe, b"second", mode="create")
        except FileExistsError:
            return bool(fs.cat_file(probe) == b"first")
        return False
    finally:
        with contextlib.suppress(OSError):
            fs.rm_file(probe)
