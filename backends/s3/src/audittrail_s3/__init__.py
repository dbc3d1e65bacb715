"""audittrail-s3: the ``s3://`` backend of audittrail, on S3-compatible object storage."""

from audittrail_s3.backend import S3Backend

__all__ = ["S3Backend"]
