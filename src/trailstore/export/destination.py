"""Where an export goes: the caller's binary file as is, or a path written atomically."""

from __future__ import annotations

import contextlib
import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from trailstore.errors import DestinationExistsError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

Destination = str | os.PathLike[str] | BinaryIO


class CountingSink(io.RawIOBase):
    """The destination file as the format writers see it: counts the bytes passed on.

    A raw stream, so that pyarrow takes it for a file; closing it leaves the file open.
    """

    def __init__(self, file: BinaryIO) -> None:
        super().__init__()
        self._file = file
        self.written = 0

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer, /) -> int:
        self._file.write(data)
        size = memoryview(data).nbytes
        self.written += size
        return size


def check_destination(destination: Destination, *, overwrite: bool) -> None:
    """Refuse an existing path unless ``overwrite``, before anything is read or written."""
    path = destination if isinstance(destination, str | os.PathLike) else None
    if path is not None and not overwrite and os.path.lexists(path):
        shown = os.fspath(path)
        raise DestinationExistsError(f"{shown} exists; pass overwrite=True to replace it")


@contextlib.contextmanager
def opened(destination: Destination, *, overwrite: bool) -> Iterator[CountingSink]:
    """Yield a sink onto ``destination``. A path gets a temporary file beside it, synced and
    renamed to the path when the export completes and removed if it fails, so the path never
    holds half an export; without ``overwrite`` it is linked there instead, which fails if the
    path appeared meanwhile."""
    if isinstance(destination, str | os.PathLike):
        path = Path(destination)
    else:
        yield CountingSink(destination)
        return
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with temporary.open("xb") as file:
            yield CountingSink(file)
            file.flush()
            os.fsync(file.fileno())
        if overwrite:
            os.replace(temporary, path)
        else:
            _link(temporary, path)
        _sync_directory(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _link(temporary: Path, path: Path) -> None:
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise DestinationExistsError(f"{path} appeared during the export; it was kept") from None


def _sync_directory(directory: Path) -> None:
    """Make the new name durable, as the trail's own files are."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
