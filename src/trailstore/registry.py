"""Map a trail URL to a backend: built-ins first, then plugins of the ``trailstore.backends``
entry-point group (one entry point per URL scheme)."""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from typing import Any

from fsspec.core import split_protocol

from trailstore.backend import Backend
from trailstore.backends.local import LocalBackend
from trailstore.backends.memory import MemoryBackend
from trailstore.errors import BackendNotFoundError

ENTRY_POINT_GROUP = "trailstore.backends"
BUILTIN_BACKENDS: dict[str, type[Backend]] = {"file": LocalBackend, "memory": MemoryBackend}
PLUGIN_DISTRIBUTIONS = {"s3": "trailstore-s3", "s3a": "trailstore-s3"}


def url_scheme(url: str | os.PathLike[str]) -> str:
    """The scheme of a trail URL; plain paths are ``file``."""
    protocol, _ = split_protocol(os.fspath(url))
    return protocol or "file"


def backend_class(scheme: str) -> type[Backend]:
    """The backend class registered for ``scheme``."""
    if scheme in BUILTIN_BACKENDS:
        return BUILTIN_BACKENDS[scheme]
    for entry_point in entry_points(group=ENTRY_POINT_GROUP, name=scheme):
        loaded = entry_point.load()
        if isinstance(loaded, type) and issubclass(loaded, Backend):
            return loaded
        raise BackendNotFoundError(f"entry point {entry_point.value!r} is not a trailstore Backend")
    hint = PLUGIN_DISTRIBUTIONS.get(scheme, f"trailstore-{scheme}")
    raise BackendNotFoundError(
        f"no trailstore backend is installed for {scheme}:// URLs; install it: pip install {hint}"
    )


def open_backend(url: str | os.PathLike[str], **storage_options: Any) -> Backend:
    """Open the backend for a trail URL (``/path``, ``file://``, ``memory://``, ``s3://`` …)."""
    text = os.fspath(url)
    return backend_class(url_scheme(text))(text, **storage_options)
