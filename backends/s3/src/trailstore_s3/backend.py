"""``S3Backend``: a trail in an S3-compatible bucket (``s3://bucket/prefix``), through s3fs.

The protocol is the core's log of commits (``trailstore.backends.logged``) coordinated by
create-only writes (``trailstore.coordinators.conditional``): what this plugin adds is the
s3fs filesystem built from ``storage_options``, the check that the installed client sends
conditional PUTs at all, and error messages in S3's terms.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import s3fs

from trailstore.backend import Retention
from trailstore.backends.logged import LogBackend
from trailstore.errors import StorageError
from trailstore_s3.client import require_conditional_puts
from trailstore_s3.layout import TrailLocation


class S3Backend(LogBackend):
    """A trail under ``s3://bucket/prefix``; ``storage_options`` go to ``s3fs.S3FileSystem``."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        require_conditional_puts()
        self.location = TrailLocation.parse(url)
        fs = s3fs.S3FileSystem(**storage_options)
        super().__init__(self.location.url, fs, self.location.root, None, **storage_options)

    def open_for_writing(self) -> None:
        self._require_bucket()
        super().open_for_writing()

    def trail_exists(self) -> bool:
        self._require_bucket()
        return super().trail_exists()

    def put_archived(self, path: str, data: bytes, retention: Retention | None = None) -> bool:
        """With ``retention``, the object is created under S3 Object Lock in the same PUT (no
        moment exists when it is there but unlocked); the bucket must have Object Lock on."""
        if retention is None:
            return super().put_archived(path, data)
        full = self.store.layout.path(path)
        lock = {
            "ObjectLockMode": retention.mode.upper(),
            "ObjectLockRetainUntilDate": retention.until,
            # S3 requires an integrity header on a PUT with Object Lock parameters
            "ContentMD5": base64.b64encode(hashlib.md5(data).digest()).decode(),
        }
        try:
            self.fs.pipe_file(full, data, mode="create", **lock)
            return True
        except FileExistsError:
            return bytes(self.fs.cat_file(full)) == data
        except (OSError, ValueError) as exc:
            raise StorageError(
                f"cannot create {full} under Object Lock ({exc}): the bucket must have "
                "Object Lock enabled (it can only be turned on when the bucket is created)"
            ) from exc

    def _require_bucket(self) -> None:
        """Refuse, in S3's terms, a bucket that is missing, denied or out of reach."""
        bucket = self.location.bucket
        try:
            self.fs.call_s3("head_bucket", Bucket=bucket)
        except FileNotFoundError as exc:
            raise StorageError(f"bucket {bucket!r} of trail {self.url} does not exist") from exc
        except PermissionError as exc:
            raise StorageError(
                f"access to {self.url} denied ({exc}): check the credentials and permissions "
                "in storage_options"
            ) from exc
        except Exception as exc:  # botocore's connection errors are not OSErrors
            raise StorageError(
                f"cannot reach {self.url}: the endpoint is unreachable or refused the "
                f"connection ({exc})"
            ) from exc
