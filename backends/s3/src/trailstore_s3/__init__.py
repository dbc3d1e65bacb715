"""trailstore-s3: the ``s3://`` backend of trailstore, on S3-compatible object storage."""

from trailstore_s3.backend import S3Backend

__all__ = ["S3Backend"]
