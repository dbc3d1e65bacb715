"""A writer process for the S3 crash tests: appends to an ``s3://`` trail until it is killed.

Usage: ``python _s3_crash_writer.py URL OPTIONS_JSON SEED DURABILITY LIMIT LEASE POINT SKIP``.

The appending threads and the messages to the parent (``R``, ``A <first> <last>``,
``E <line>``, ``X <error>``) are those of the local harness (``tests/_crash_writer.py``);
``A`` is sent before any ``index.json`` write that reserves IDs under a lease. With ``POINT``
other than ``none`` the writer stops at the ``SKIP+1``-th time it reaches that point, sends
``K <point>`` and waits there to be killed:

- ``after-publish`` — the index compare-and-swap published the commit, no chunk is uploaded;
- ``mid-upload`` — the first chunk of a multi-stream commit is uploaded, the others are not;
- ``before-seal`` — a rotated segment's chunks were read, its sealed object not written;
- ``after-seal`` — the sealed object is written, its chunks not deleted yet;
- ``mid-delete`` — half of the sealed segment's chunks are deleted.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import botocore.retryhandler
from _fault_proxy import scaled_backoff
from trailstore_s3.backend import S3Backend
from trailstore_s3.index import IndexState, IndexStore
from trailstore_s3.store import ObjectStore

from trailstore import AuditTrailWriter

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
import _crash_writer  # the local harness's appending threads and reports

#: environment variable: scale botocore's retry delays by this factor
BACKOFF_VARIABLE = "TRAILSTORE_TEST_BACKOFF_SCALE"
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
            _crash_writer.report(b"K %s\n" % point.encode())
            time.sleep(3600)


def _is_sealed_key(key: str) -> bool:
    return key.endswith(".jsonl") and ".chunks/" not in key and ".torn/" not in key


def install(stopper: Stopper) -> None:
    """Report reservations and wire the stopping points into the S3 backend."""
    write = IndexStore._write

    def reporting_write(self: IndexStore, state: IndexState, etag: str | None) -> str:
        if state.lease is not None and state.lease.reserved_through > state.last_event_id:
            first, last = state.last_event_id + 1, state.lease.reserved_through
            _crash_writer.report(b"A %d %d\n" % (first, last))
        return write(self, state, etag)

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
        (IndexStore, "_write"): reporting_write,
        (S3Backend, "upload"): stopping_upload,
        (ObjectStore, "create_many"): stopping_create_many,
        (ObjectStore, "put"): stopping_put,
        (ObjectStore, "delete"): stopping_delete,
    }
    for (owner, name), function in patches.items():
        setattr(owner, name, function)


def main() -> None:
    url, options, seed, durability, limit, lease, point, skip = sys.argv[1:]
    assert point in POINTS, point
    if BACKOFF_VARIABLE in os.environ:  # behind the fault proxy: retry quickly
        original = botocore.retryhandler.delay_exponential
        botocore.retryhandler.delay_exponential = scaled_backoff(
            original, float(os.environ[BACKOFF_VARIABLE])
        )
    S3Backend.lease_seconds = float(lease)
    S3Backend.seal_grace_seconds = 0.2
    install(Stopper(point, int(skip)))
    writer = AuditTrailWriter(
        root_path=url,
        storage_options=json.loads(options),
        durability=durability,
        max_file_size_bytes=int(limit),
    )
    _crash_writer.report(b"R\n")
    threads = [
        threading.Thread(
            target=_crash_writer.work, args=(writer, int(seed) * 10 + n, int(limit)), daemon=True
        )
        for n in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
