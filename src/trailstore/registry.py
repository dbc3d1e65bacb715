"""Map a trail URL to a backend: backends registered in this process, the built-ins, plugins of
the ``trailstore.backends`` entry-point group (one entry point per URL scheme), and for any other
scheme fsspec knows, a trail on that filesystem (``backends/fsspec_url.py``).

Backends are imported only when a URL needs one, so ``import trailstore`` works where one of
them cannot load (the local-disk backend needs POSIX ``fcntl``, absent on Windows).
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from fsspec.core import split_protocol
from fsspec.registry import known_implementations
from fsspec.registry import registry as registered_implementations

from trailstore.backend import Backend
from trailstore.errors import BackendNotFoundError

ENTRY_POINT_GROUP = "trailstore.backends"
#: the backends of this distribution, as ``module:class``
BUILTIN_BACKENDS = {
    "file": "trailstore.backends.local:LocalBackend",
    "memory": "trailstore.backends.memory:MemoryBackend",
}
#: schemes served by plugin distributions that exist, and the distribution to install
KNOWN_PLUGINS = {"s3": "trailstore-s3", "s3a": "trailstore-s3"}
#: any other scheme fsspec knows: a trail kept as a log of commits on that filesystem
FSSPEC_BACKEND = "trailstore.backends.fsspec_url:FsspecBackend"
_REGISTERED: dict[str, type[Backend] | str] = {}


def register_backend(scheme: str, backend: type[Backend] | str) -> None:
    """Serve ``scheme://`` URLs with ``backend`` (a class, or ``"module:Class"`` imported when
    first needed) in this process, before any plugin: for a backend without a distribution
    of its own, or to replace one in tests."""
    _REGISTERED[scheme.lower()] = backend


def url_scheme(url: str | os.PathLike[str]) -> str:
    """The scheme of a trail URL, lower-cased (schemes are case-insensitive); plain paths are
    ``file``."""
    protocol, _ = split_protocol(os.fspath(url))
    return protocol.lower() if protocol else "file"


def local_path(url: str) -> Path:
    """The directory of a ``file://`` URL (or one of a backend built on the local backend) or
    of a plain path."""
    return Path(split_protocol(url)[1]).expanduser()


def backend_class(scheme: str) -> type[Backend]:
    """The backend class registered for ``scheme``."""
    scheme = scheme.lower()
    registered = _REGISTERED.get(scheme)
    if isinstance(registered, type):
        return registered
    if registered is not None:
        return _load(scheme, registered)
    if scheme in BUILTIN_BACKENDS:
        return _load(scheme, BUILTIN_BACKENDS[scheme])
    for entry_point in entry_points(group=ENTRY_POINT_GROUP, name=scheme):
        loaded = entry_point.load()
        if isinstance(loaded, type) and issubclass(loaded, Backend):
            return loaded
        raise BackendNotFoundError(f"entry point {entry_point.value!r} is not a trailstore Backend")
    if scheme in KNOWN_PLUGINS:
        raise BackendNotFoundError(
            f"no trailstore backend is installed for {scheme}:// URLs; install it: "
            f"pip install {KNOWN_PLUGINS[scheme]}"
        )
    if scheme in known_implementations or scheme in registered_implementations:
        return _load(scheme, FSSPEC_BACKEND)
    raise BackendNotFoundError(
        f"no trailstore backend and no fsspec filesystem serve {scheme}:// URLs; to add one, "
        f"subclass trailstore.Backend and register the class under the entry-point group "
        f"{ENTRY_POINT_GROUP!r} with the name {scheme!r}"
    )


def _load(scheme: str, path: str) -> type[Backend]:
    module_name, _, class_name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        advice = ""
        if exc.name == "fcntl":
            advice = "; it needs POSIX file locks (fcntl): use memory:// or an object store instead"
        raise BackendNotFoundError(
            f"the {scheme}:// backend cannot run on this platform ({exc}){advice}"
        ) from exc
    loaded: type[Backend] = getattr(module, class_name)
    return loaded


def open_backend(url: str | os.PathLike[str], **storage_options: Any) -> Backend:
    """Open the backend for a trail URL (``/path``, ``file://``, ``memory://``, ``s3://`` …)."""
    text = os.fspath(url)
    scheme = url_scheme(text)
    if text[: len(scheme)].lower() == scheme and text[len(scheme) : len(scheme) + 3] == "://":
        text = scheme + text[len(scheme) :]  # S3://b/p is s3://b/p
    return backend_class(scheme)(text, **storage_options)
