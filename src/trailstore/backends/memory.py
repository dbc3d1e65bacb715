"""The in-memory backend (``memory://name``): a trail kept as a log of commits on fsspec's
memory filesystem, for tests and examples; the fastest way to run the object-store path.

Trails live for the life of the process and are shared by every backend opened on the same
name, so reopening a ``memory://`` URL continues the same trail.
"""

from __future__ import annotations

from typing import Any

import fsspec

from trailstore.backends.logged import LogBackend
from trailstore.coordinators.in_process import InProcessCommits


class MemoryBackend(LogBackend):
    """A trail in process memory (fsspec's ``memory`` filesystem), one commit at a time."""

    persistent = False
    follow_poll_interval = 0.1
    supports_concurrent_processes = False

    def __init__(self, url: str, **storage_options: Any) -> None:
        fs = fsspec.filesystem("memory")
        root = "/" + url.split("://", 1)[1].strip("/")
        super().__init__(url, fs, root, InProcessCommits(url), **storage_options)
