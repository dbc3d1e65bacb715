"""Map a trail URL to a backend: built-ins first, then plugins of the ``audittrail.backends``
entry-point group (one entry point per URL scheme)."""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from typing import Any

from fsspec.core import split_protocol

from audittrail.backend import Backend
from audittrail.backends.local import LocalBackend
from audittrail.backends.memory import MemoryBackend
from audittrail.errors import BackendNotFoundError

ENTRY_POINT_GROUP = "audittrail.backends"
BUILTIN_BACKENDS: dict[str, type[Backend]] = {"file": LocalBackend, "memory": MemoryBackend}
PLUGIN_DISTRIBUTIONS = {"s3": "audittrail-s3", "s3a": "audittrail-s3"}


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
        raise BackendNotFoundError(
            f"entry point {entry_point.value!r} is not an audittrail Backend"
        )
    hint = PLUGIN_DISTRIBUTIONS.get(scheme, f"audittrail-{scheme}")
    raise BackendNotFoundError(
        f"no audittrail backend is installed for {scheme}:// URLs; install it: pip install {hint}"
    )


def open_backend(url: str | os.PathLike[str], **storage_options: Any) -> Backend:
    """Open the backend for a trail URL (``/path``, ``file://``, ``memory://``, ``s3://`` …)."""
    text = os.fspath(url)
    return backend_class(url_scheme(text))(text, **storage_options)
