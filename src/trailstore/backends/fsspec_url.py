"""``FsspecBackend``: a trail on any filesystem fsspec reaches (``gs://``, ``az://``, ``sftp://``
…) that no plugin claims, kept as a log of commits (``trailstore.backends.logged``).

Writers are coordinated by conditional writes where the filesystem enforces create-only
writes — probed when the first writer opens, never assumed — and otherwise by a lock on this
host, with a warning that every writer must then run on it. ``storage_options`` go to the
filesystem untouched.
"""

from __future__ import annotations

from typing import Any

import fsspec
from fsspec.core import split_protocol

from trailstore.backends.logged import LogBackend
from trailstore.errors import BackendNotFoundError


class FsspecBackend(LogBackend):
    """A trail at any fsspec URL."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        protocol, path = split_protocol(url)
        try:
            fs = fsspec.filesystem(protocol, **storage_options)
        except ImportError as exc:
            raise BackendNotFoundError(f"{url} needs a package fsspec names: {exc}") from exc
        root = str(fs._strip_protocol(url)).rstrip("/") or str(path)
        super().__init__(url, fs, root, None, **storage_options)
