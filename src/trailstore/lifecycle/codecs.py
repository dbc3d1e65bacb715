"""Compression of sealed segments: the codecs, and the names a compressed segment goes by.

A compressed segment keeps its name and gains the codec's suffix
(``audit-000001.jsonl.zst``). Digests always cover the uncompressed bytes, since the same
bytes may compress differently from one library version to the next.
"""

from __future__ import annotations

import gzip
import zlib
from enum import StrEnum

import zstandard

from trailstore.backend import parse_segment_name, segment_name

#: zstd's default level: several times gzip's speed at a similar ratio on JSON lines
ZSTD_LEVEL = 3
GZIP_LEVEL = 6


class CorruptCopyError(ValueError):
    """A compressed object that does not decompress (or grows past the size it must have)."""


class Codec(StrEnum):
    """How a sealed segment is stored in an archive."""

    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"

    @property
    def suffix(self) -> str:
        return _SUFFIXES[self]

    def compress(self, data: bytes) -> bytes:
        if self is Codec.ZSTD:
            return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(data)
        if self is Codec.GZIP:
            return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)
        return data

    def decompress(self, data: bytes, limit: int) -> bytes:
        """The original bytes; ``CorruptCopyError`` if ``data`` is damaged, cut short, followed
        by anything, or would expand past ``limit`` bytes (a segment's size is known from its
        seal: no decompression bomb)."""
        try:
            if self is Codec.ZSTD:
                declared = zstandard.frame_content_size(data)  # the compressor writes it
                if declared < 0 or declared > limit:
                    raise CorruptCopyError(
                        f"it declares {declared} bytes: it expands past the {limit} it must hold"
                    )
                inflated = zstandard.ZstdDecompressor().decompress(data)
            elif self is Codec.GZIP:
                stream = zlib.decompressobj(wbits=31)  # gzip framing
                inflated = stream.decompress(data, limit + 1)
                if not stream.eof or stream.unused_data:
                    raise CorruptCopyError("the gzip stream is cut short or followed by more")
            else:
                inflated = data
        except (zstandard.ZstdError, zlib.error) as exc:
            raise CorruptCopyError(str(exc)) from exc
        if len(inflated) > limit:
            raise CorruptCopyError(f"it expands past the {limit} bytes it must hold")
        return inflated


_SUFFIXES = {Codec.NONE: "", Codec.GZIP: ".gz", Codec.ZSTD: ".zst"}


def stored_name(number: int, codec: Codec) -> str:
    """The name segment ``number`` is stored under with ``codec``."""
    return segment_name(number) + codec.suffix


def parse_stored_name(name: str) -> tuple[int, Codec] | None:
    """``(segment number, codec)`` of a stored segment's name, ``None`` for other names."""
    for codec in (Codec.ZSTD, Codec.GZIP, Codec.NONE):
        if codec.suffix and not name.endswith(codec.suffix):
            continue
        number = parse_segment_name(name.removesuffix(codec.suffix) if codec.suffix else name)
        if number is not None:
            return number, codec
    return None
