"""An archive of a trail: its sealed segments (compressed or not), their seals and its
checkpoints, copied to another root at the same relative paths, each object created once and
checked after the upload. An archive run only adds what is missing, so a run killed at any
point completes when run again, without duplicates and without uploading anything twice.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from trailstore.backend import Backend, Retention, StreamKey
from trailstore.errors import ConfigurationError, EvidenceError, StorageError, TrailNotFoundError
from trailstore.evidence.checkpointer import read_checkpoint
from trailstore.evidence.records import (
    EVIDENCE_DIRECTORY,
    DamagedEvidenceError,
    Seal,
    checkpoint_path,
    parse_checkpoint_name,
    seal_path,
)
from trailstore.lifecycle.chain import Chain, SegmentKey
from trailstore.lifecycle.codecs import Codec, CorruptCopyError, parse_stored_name, stored_name
from trailstore.registry import local_path, open_backend, url_scheme

#: how large a segment read from an archive without its seal may grow when decompressed
UNSEALED_LIMIT = 1 << 30
#: segments archived at once: object stores answer each request after a round trip, and
#: several in flight hide it (each holds a segment in memory, twice when compressed)
UPLOADS = 4


class Archive:
    """The archive at ``url``, opened as any trail is (``storage_options`` go to its backend)."""

    def __init__(
        self, url: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None
    ) -> None:
        self.url = os.fspath(url)
        self.backend: Backend = open_backend(url, **dict(storage_options or {}))
        self._names: dict[StreamKey, list[str]] = {}

    def origin(self) -> str | None:
        """The ``origin`` of the trail archived here (its first checkpoint's), if any."""
        try:
            return read_checkpoint(self.backend, 1).origin
        except (FileNotFoundError, DamagedEvidenceError):
            return None

    def admit(self, trail_url: str, origin: str | None, *, holding: bool) -> None:
        """Refuse to serve as the archive of the trail at ``trail_url`` whose checkpoints have
        ``origin``: an archive overlapping the trail (it would be read as its own copy, and
        prune would remove the only one), one that does not outlive this process, one of
        another trail, and, with ``holding`` (to read or prune with), one holding no archive
        at all (a mistyped URL)."""
        if _overlap(trail_url, self.url):
            raise ConfigurationError(
                f"the archive {self.url} and the trail {trail_url} overlap: an archive must be "
                "a place of its own"
            )
        if not self.backend.persistent:
            raise ConfigurationError(f"{self.url} does not outlive this process: not an archive")
        held = self.origin()
        if held is None and holding:
            raise ConfigurationError(
                f"{self.url} holds no archive (no checkpoint 1): run trailstore archive --to "
                "it first, or check the URL"
            )
        if held is not None and origin is not None and held != origin:
            raise ConfigurationError(
                f"{self.url} is the archive of another trail (origin {held}; {trail_url} has "
                f"origin {origin})"
            )

    def prepare(self) -> None:
        """Make the archive's root, where it is a directory (object stores need none)."""
        if url_scheme(self.url) == "file":
            local_path(self.url).mkdir(parents=True, exist_ok=True)

    def names(self, stream: StreamKey) -> list[str]:
        """The objects of a stream in the archive (listed once: an archive only grows)."""
        if stream not in self._names:
            self._names[stream] = self.backend.list_evidence(f"{stream.domain}/{stream.category}")
        return self._names[stream]

    def segments(self, stream: StreamKey) -> dict[int, Codec]:
        """The archived segments of a stream and how each is stored."""
        found = (parse_stored_name(name) for name in self.names(stream))
        return dict(item for item in found if item is not None)

    def has_seal(self, stream: StreamKey, number: int) -> bool:
        return seal_path(stream, number).rsplit("/", 1)[1] in self.names(stream)

    def checkpoints(self) -> list[int]:
        names = self.backend.list_evidence(EVIDENCE_DIRECTORY)
        return sorted(n for name in names if (n := parse_checkpoint_name(name)) is not None)

    def streams(self) -> list[StreamKey]:
        """The streams the archive's newest checkpoint covers."""
        numbers = self.checkpoints()
        if not numbers:
            return []
        newest = read_checkpoint(self.backend, numbers[-1])
        return sorted(newest.positions)

    def seal(self, stream: StreamKey, number: int) -> Seal | None:
        try:
            return Seal.decode(self.backend.get_evidence(seal_path(stream, number)))
        except (FileNotFoundError, DamagedEvidenceError):
            return None

    def read_segment(self, stream: StreamKey, number: int, seal: Seal | None = None) -> bytes:
        """The bytes of an archived segment, decompressed (``FileNotFoundError`` if it holds
        none; ``CorruptCopyError`` if it does not decompress within the size of its seal)."""
        codec = self.segments(stream).get(number)
        if codec is None:
            raise FileNotFoundError(f"{self.url} holds no {stream} segment {number}")
        data = self.backend.get_evidence(f"{stream.domain}/{stream.category}/"
                                         f"{stored_name(number, codec)}")  # fmt: skip
        seal = seal or self.seal(stream, number)
        return codec.decompress(data, UNSEALED_LIMIT if seal is None else seal.size)

    def holds_copy(self, stream: StreamKey, number: int, seal: Seal) -> bool:
        """Whether the archive holds the segment with exactly the bytes its seal describes."""
        try:
            data = self.read_segment(stream, number, seal)
        except (FileNotFoundError, CorruptCopyError):
            return False
        return len(data) == seal.size and hashlib.sha256(data).hexdigest() == seal.sha256

    def close(self) -> None:
        self.backend.close()


def _overlap(first: str, second: str) -> bool:
    """Whether two roots are the same place, or one lies below the other."""
    scheme = _LOCAL_ALIASES.get(url_scheme(first), url_scheme(first))
    if scheme != _LOCAL_ALIASES.get(url_scheme(second), url_scheme(second)):
        return False
    if scheme == "file":
        here, there = local_path(first).resolve(), local_path(second).resolve()
        return here.is_relative_to(there) or there.is_relative_to(here)
    one, other = first.rstrip("/") + "/", second.rstrip("/") + "/"
    return one.startswith(other) or other.startswith(one)


#: schemes fsspec serves from the local disk
_LOCAL_ALIASES = {"local": "file"}


@dataclass
class ArchiveReport:
    """What an archive run did."""

    segments_archived: int = 0
    segments_present: int = 0
    checkpoints_archived: int = 0
    #: uncompressed bytes of the segments archived, and what they took in the archive
    bytes_read: int = 0
    bytes_stored: int = 0
    problems: list[str] = field(default_factory=list)


class Archiver:
    """Copies what a trail's chain has sealed, and its checkpoints, to an archive."""

    def __init__(
        self,
        trail: Backend,
        archive: Archive,
        *,
        codec: Codec = Codec.ZSTD,
        retention: Retention | None = None,
    ) -> None:
        if not trail.trail_exists():
            raise TrailNotFoundError(f"{trail.url} holds no trail")
        self._trail = trail
        self._archive = archive
        self._codec = codec
        self._retention = retention
        self._chain = Chain.read(trail)
        archive.admit(trail.url, self._chain.origin, holding=False)
        archive.prepare()

    def pending(self) -> list[SegmentKey]:
        """The sealed segments the archive lacks (or lacks the seal of)."""
        return [
            (stream, number)
            for stream, number in self._chain.sealed_segments()
            if not self._archive.has_seal(stream, number)
        ]

    def run(
        self, pending: list[SegmentKey], advance: Callable[[int], None] | None = None
    ) -> ArchiveReport:
        """Archive ``pending`` (see ``pending``), ``UPLOADS`` segments at a time, calling
        ``advance(1)`` after each; then the checkpoints."""
        report = ArchiveReport(segments_present=len(self._chain.seals) - len(pending))
        if self._chain.numbers and self._archive.origin() is None:  # first: whose archive
            self._put(checkpoint_path(1), self._trail.get_evidence(checkpoint_path(1)))
            report.checkpoints_archived += 1
        pool = ThreadPoolExecutor(UPLOADS, "trailstore-archive")
        try:
            for done in as_completed([pool.submit(self._archive_segment, key) for key in pending]):
                try:
                    uploaded = done.result()
                except (EvidenceError, CorruptCopyError) as exc:
                    report.problems.append(str(exc))
                else:
                    if uploaded is not None:
                        report.segments_archived += 1
                        report.bytes_read += uploaded[0]
                        report.bytes_stored += uploaded[1]
                if advance is not None:
                    advance(1)
        finally:
            pool.shutdown(cancel_futures=True)  # after a storage error, start nothing more
        report.problems.sort()
        self._archive_checkpoints(report)
        return report

    def _archive_segment(self, key: SegmentKey) -> tuple[int, int] | None:
        """Archive one segment and then its seal; the sizes read and stored if it had to be
        uploaded, ``None`` if the archive held it already."""
        stream, number = key
        seal, seal_file = self._chain.seal(self._trail, key)
        uploaded = None
        if not self._archive.holds_copy(stream, number, seal):
            if number in self._archive.segments(stream):
                raise EvidenceError(
                    f"{self._archive.url} holds a {stream} segment {number} that differs from "
                    "its seal; archives are write-once, so it is left for you to inspect"
                )
            uploaded = self._upload(stream, number, seal)
        self._put(seal_path(stream, number), seal_file)
        return uploaded

    def _upload(self, stream: StreamKey, number: int, seal: Seal) -> tuple[int, int]:
        try:
            data = self._trail.read_range(stream, number, 0, None)
        except FileNotFoundError:
            gone = "was pruned from" if (stream, number) in self._chain.pruned else "is gone from"
            raise EvidenceError(
                f"{stream} segment {number} {gone} {self._trail.url} before it was archived "
                f"to {self._archive.url}"
            ) from None
        if len(data) != seal.size or hashlib.sha256(data).hexdigest() != seal.sha256:
            raise EvidenceError(
                f"{stream} segment {number} of {self._trail.url} does not match its seal: "
                "not archived (run trailstore verify)"
            )
        stored = self._codec.compress(data)
        name = f"{stream.domain}/{stream.category}/{stored_name(number, self._codec)}"
        self._put(name, stored)
        self._archive.names(stream).append(name.rsplit("/", 1)[1])
        if not self._archive.holds_copy(stream, number, seal):
            raise EvidenceError(f"{self._archive.url}/{name} does not read back as uploaded")
        return len(data), len(stored)

    def _archive_checkpoints(self, report: ArchiveReport) -> None:
        present = set(self._archive.checkpoints())
        for number in self._chain.numbers:
            if number not in present:
                self._put(
                    checkpoint_path(number), self._trail.get_evidence(checkpoint_path(number))
                )
                report.checkpoints_archived += 1

    def _put(self, path: str, data: bytes) -> None:
        """Create ``path`` in the archive holding ``data``, or find it already holding it."""
        try:
            held = self._archive.backend.put_archived(path, data, self._retention)
        except OSError as exc:
            raise StorageError(f"cannot write {path} to {self._archive.url}: {exc}") from exc
        if not held:
            raise EvidenceError(
                f"{self._archive.url} holds a different {path}; archives are write-once, so "
                "it is left for you to inspect"
            )


def archive_trail(
    root_path: str | os.PathLike[str],
    to: str | os.PathLike[str],
    *,
    codec: Codec | str = Codec.ZSTD,
    retention: Retention | None = None,
    storage_options: Mapping[str, Any] | None = None,
    archive_options: Mapping[str, Any] | None = None,
) -> ArchiveReport:
    """Copy the trail's sealed segments (compressed with ``codec``), their seals and its
    checkpoints to the archive at ``to``: what is there already is not uploaded again."""
    trail = open_backend(root_path, **dict(storage_options or {}))
    archive = Archive(to, archive_options)
    try:
        archiver = Archiver(trail, archive, codec=Codec(codec), retention=retention)
        return archiver.run(archiver.pending())
    finally:
        archive.close()
        trail.close()
