"""Where a trail's objects live in a bucket, and how a listing maps back to streams and segments.

```
<prefix>/index.json                                        the counter and the lease (index.py)
<prefix>/<domain>/<category>/audit-000001.jsonl             a sealed segment (compacted chunks)
<prefix>/<domain>/<category>/audit-000002.jsonl.chunks/<first event_id, 20 digits>.jsonl
                                                           the chunks of a segment not yet sealed
<prefix>/<domain>/<category>/audit-000001.jsonl.torn/<chunk>  bytes moved aside by a repair
```
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from trailstore.backend import INDEX_NAME, StreamKey, parse_segment_name, segment_name
from trailstore.errors import ConfigurationError

SCHEMES = ("s3://", "s3a://")
CHUNKS_SUFFIX = ".chunks"
TORN_SUFFIX = ".torn"
_CHUNK_NAME = re.compile(r"(\d{20,})(?:\.[a-z]+)?\.jsonl")


def chunk_name(first_event_id: int, variant: str = "") -> str:
    """Name of a chunk starting at ``first_event_id``; listing order is ID order."""
    return f"{first_event_id:020d}{'.' + variant if variant else ''}.jsonl"


@dataclass
class SegmentObjects:
    """The objects of one segment: the sealed object (its size) and/or chunks (name → size)."""

    sealed_size: int | None = None
    chunks: dict[str, int] = field(default_factory=dict)

    @property
    def chunk_bytes(self) -> int:
        """Total size of the chunks."""
        return sum(self.chunks.values())


TrailListing = dict[StreamKey, dict[int, SegmentObjects]]


@dataclass(frozen=True)
class TrailLocation:
    """The bucket and key prefix of an ``s3://bucket/prefix`` trail URL."""

    url: str
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> TrailLocation:
        """Split a trail URL; the prefix may be empty (the trail is the whole bucket)."""
        scheme = next((s for s in SCHEMES if url.startswith(s)), None)
        if scheme is None:
            raise ConfigurationError(f"not an S3 trail URL: {url!r}")
        bucket, _, prefix = url.removeprefix(scheme).partition("/")
        if not bucket:
            raise ConfigurationError(f"S3 trail URL {url!r} names no bucket")
        return cls(url.rstrip("/"), bucket, prefix.strip("/"))

    def key(self, relative: str) -> str:
        """The object key of a path relative to the trail root."""
        return f"{self.prefix}/{relative}" if self.prefix else relative

    @property
    def root(self) -> str:
        """The key prefix every object of the trail starts with."""
        return self.key("")

    @property
    def index_key(self) -> str:
        """Key of ``index.json``."""
        return self.key(INDEX_NAME)

    def segment_key(self, stream: StreamKey, number: int) -> str:
        """Key of a sealed segment (also the prefix of its chunks and quarantine)."""
        return self.key(f"{stream.domain}/{stream.category}/{segment_name(number)}")

    def chunk_key(self, stream: StreamKey, number: int, name: str) -> str:
        """Key of chunk ``name`` of a segment."""
        return f"{self.segment_key(stream, number)}{CHUNKS_SUFFIX}/{name}"

    def quarantine_key(self, stream: StreamKey, number: int, name: str) -> str:
        """Key of the object that keeps the torn bytes cut from chunk ``name``."""
        return f"{self.segment_key(stream, number)}{TORN_SUFFIX}/{name}"

    def stream_prefix(self, stream: StreamKey) -> str:
        """Key prefix of one stream's objects."""
        return self.key(f"{stream.domain}/{stream.category}/")

    def parse_listing(self, sizes: Mapping[str, int]) -> TrailListing:
        """Group listed keys (key → size) into streams and segments; other keys are ignored."""
        listing: TrailListing = {}
        root = self.root
        for key, size in sizes.items():
            parts = key.removeprefix(root).split("/")
            if not key.startswith(root) or len(parts) not in (3, 4):
                continue
            domain, category, name = parts[:3]
            if domain.startswith(".") or category.startswith("."):
                continue
            if len(parts) == 3:
                number = parse_segment_name(name)
                if number is not None:
                    objects = listing.setdefault(StreamKey(domain, category), {})
                    objects.setdefault(number, SegmentObjects()).sealed_size = size
                continue
            number = parse_segment_name(name.removesuffix(CHUNKS_SUFFIX))
            if (
                name.endswith(CHUNKS_SUFFIX)
                and number is not None
                and _CHUNK_NAME.fullmatch(parts[3])
            ):
                objects = listing.setdefault(StreamKey(domain, category), {})
                objects.setdefault(number, SegmentObjects()).chunks[parts[3]] = size
        for segments in listing.values():
            for found in segments.values():
                found.chunks = dict(sorted(found.chunks.items()))
        return listing
