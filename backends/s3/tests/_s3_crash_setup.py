"""Set-up run in the crash kit's writer processes of the S3 tests (``CrashKit.setup``): a
short lease, optionally a fast botocore backoff (behind the fault proxy), and a stop point.

With ``point`` other than ``none`` the writer stops the ``skip+1``-th time it reaches that
point of the protocol, reports ``K <point>`` and waits there to be killed:

- ``after-publish`` — the index compare-and-swap published the commit, no chunk is uploaded;
- ``mid-upload`` — the first chunk of a multi-stream commit is uploaded, the others are not;
- ``before-seal`` — a rotated segment's chunks were read, its sealed object not written;
- ``after-seal`` — the sealed object is written, its chunks not deleted yet;
- ``mid-delete`` — half of the sealed segment's chunks are deleted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import botocore.retryhandler
from _fault_proxy import scaled_backoff
from trailstore_s3.backend import S3Backend
from trailstore_s3.store import ObjectStore

from trailstore.testing.crash_writer import report

POINTS = ("none", "after-publish", "mid-upload", "before-seal", "after-seal", "mid-delete")


class Stopper:
    """Stops the process at the ``skip+1``-th arrival at ``point`` until it is killed."""

    def __init__(self, point: str, skip: int) -> None:
        self.point = point
        self.remaining = skip
        self._lock = threading.Lock()

    def reached(self, point: str) -> None:
        if point != self.point:
            return
        with self._lock:
            self.remaining -= 1
            stop = self.remaining < 0
        if stop:
            report(b"K %s\n" % point.encode())
            time.sleep(3600)


def _is_sealed_key(key: str) -> bool:
    return key.endswith(".jsonl") and ".chunks/" not in key and ".torn/" not in key


def _install_stops(stopper: Stopper) -> None:
    upload = S3Backend.upload

    def stopping_upload(self: S3Backend, *args: Any, **kwargs: Any) -> None:
        stopper.reached("after-publish")
        upload(self, *args, **kwargs)

    create_many = ObjectStore.create_many

    def stopping_create_many(self: ObjectStore, objects: Sequence[tuple[str, bytes]]) -> None:
        if len(objects) > 1 and stopper.point == "mid-upload":
            create_many(self, objects[:1])
            stopper.reached("mid-upload")
        create_many(self, objects)

    put = ObjectStore.put

    def stopping_put(self: ObjectStore, key: str, data: bytes, **kwargs: Any) -> str:
        if _is_sealed_key(key):
            stopper.reached("before-seal")
        etag = put(self, key, data, **kwargs)
        if _is_sealed_key(key):
            stopper.reached("after-seal")
        return etag

    delete = ObjectStore.delete

    def stopping_delete(self: ObjectStore, keys: Any) -> None:
        pending = list(keys)
        if len(pending) > 1 and stopper.point == "mid-delete":
            delete(self, pending[: len(pending) // 2])
            stopper.reached("mid-delete")
        delete(self, pending)

    patches: dict[tuple[type, str], Callable[..., Any]] = {
        (S3Backend, "upload"): stopping_upload,
        (ObjectStore, "create_many"): stopping_create_many,
        (ObjectStore, "put"): stopping_put,
        (ObjectStore, "delete"): stopping_delete,
    }
    for (owner, name), function in patches.items():
        setattr(owner, name, function)


def install(point: str, skip: int, lease: float, backoff_scale: float | None = None) -> None:
    """Configure this writer process; called by the crash kit before the writer opens."""
    assert point in POINTS, point
    if backoff_scale is not None:  # behind the fault proxy: retry quickly
        original = botocore.retryhandler.delay_exponential
        botocore.retryhandler.delay_exponential = scaled_backoff(original, backoff_scale)
    S3Backend.lease_seconds = lease
    S3Backend.seal_grace_seconds = 0.2
    _install_stops(Stopper(point, skip))
