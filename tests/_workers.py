"""Functions run in child processes by the multi-process tests (importable by spawn)."""

from __future__ import annotations

import itertools
import threading
from typing import Any

from trailstore.testing import sample_event
from trailstore.writer import AuditTrailWriter


def append_from_threads(root: str, threads: int, events_per_thread: int, limit: int) -> list[int]:
    """Append from several threads of one writer; return the IDs the writer acknowledged."""
    acknowledged: list[int] = []
    lock = threading.Lock()
    categories = ["orders", "customers", "invoices"]

    with AuditTrailWriter(root_path=root, max_file_size_bytes=limit) as writer:

        def work(worker: int) -> None:
            for i in range(events_per_thread):
                category = categories[(worker + i) % len(categories)]
                event_id = writer.append_event(**sample_event(i, category=category)).event_id
                with lock:
                    acknowledged.append(event_id)

        pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    return acknowledged


def append_and_report(root: str, category: str, count: int | None, reported: Any) -> None:
    """Append ``count`` events (forever when ``None``) to one stream, putting each
    acknowledged ID on ``reported``: a parent can SIGKILL this writer at any point and know
    which events it was promised."""
    with AuditTrailWriter(root_path=root, max_file_size_bytes=2048, durability="fsync") as writer:
        for i in itertools.count() if count is None else range(count):
            event_id = writer.append_event(**sample_event(i, category=category)).event_id
            reported.put(event_id)
