"""Set-up run in the crash kit's writer processes of the S3 tests (``CrashKit.setup``): a
short lease, optionally a fast botocore backoff (behind the fault proxy), and a stop point.

With ``point`` other than ``none`` the writer stops the ``skip+1``-th time it reaches that
point of the protocol, reports ``K <point>`` and waits there to be killed:

- ``before-claim`` — a commit object is built, not yet created;
- ``after-claim`` — the commit object is created, the writer has not taken it in;
- ``before-seal`` — a complete segment's lines were gathered, its sealed object not written;
- ``after-seal`` — the sealed object is written, the state not told;
- ``mid-checkpoint`` — a checkpoint is written, ``index.json`` and garbage collection not done.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import botocore.retryhandler
from _fault_proxy import scaled_backoff

from trailstore.backends.logged import LogBackend
from trailstore.store.log import LogStore
from trailstore.testing.crash_writer import report

POINTS = ("none", "before-claim", "after-claim", "before-seal", "after-seal", "mid-checkpoint")


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


def _around(owner: type, name: str, before: str | None, after: str | None, stop: Stopper) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    def stopping(*args: Any, **kwargs: Any) -> Any:
        if before:
            stop.reached(before)
        result = original(*args, **kwargs)
        if after:
            stop.reached(after)
        return result

    setattr(owner, name, stopping)


def install(point: str, skip: int, lease: float, backoff_scale: float | None = None) -> None:
    """Configure this writer process; called by the crash kit before the writer opens."""
    assert point in POINTS, point
    if backoff_scale is not None:  # behind the fault proxy: retry quickly
        original = botocore.retryhandler.delay_exponential
        botocore.retryhandler.delay_exponential = scaled_backoff(original, backoff_scale)
    LogBackend.lease_seconds = lease
    stop = Stopper(point, skip)
    _around(LogStore, "create_commit", "before-claim", "after-claim", stop)
    _around(LogStore, "seal", "before-seal", "after-seal", stop)
    original_index = LogStore.write_index

    def stopping_index(self: LogStore, last_event_id: int) -> None:
        stop.reached("mid-checkpoint")
        original_index(self, last_event_id)

    LogStore.write_index = stopping_index  # type: ignore[method-assign]
