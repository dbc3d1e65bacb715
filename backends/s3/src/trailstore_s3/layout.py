"""The bucket and key prefix of an ``s3://bucket/prefix`` trail URL."""

from __future__ import annotations

from dataclasses import dataclass

from trailstore.errors import ConfigurationError

SCHEMES = ("s3://", "s3a://")


@dataclass(frozen=True)
class TrailLocation:
    """Where a trail lives: a bucket and a key prefix (possibly empty: the whole bucket)."""

    url: str
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> TrailLocation:
        scheme = next((s for s in SCHEMES if url.startswith(s)), None)
        if scheme is None:
            raise ConfigurationError(f"not an S3 trail URL: {url!r}")
        bucket, _, prefix = url.removeprefix(scheme).partition("/")
        if not bucket:
            raise ConfigurationError(f"S3 trail URL {url!r} names no bucket")
        return cls(url.rstrip("/"), bucket, prefix.strip("/"))

    @property
    def root(self) -> str:
        """The trail's root as s3fs names it: ``bucket/prefix``."""
        return f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket
