"""Functions run in child processes by the multi-writer test (importable under spawn)."""

from __future__ import annotations

from typing import Any

from trailstore.testing import sample_event
from trailstore.writer import AuditTrailWriter


def append_events(url: str, options: dict[str, Any], count: int, limit: int) -> list[int]:
    """Append ``count`` events to two streams one at a time; return the acknowledged IDs."""
    with AuditTrailWriter(
        root_path=url, storage_options=options, max_file_size_bytes=limit
    ) as writer:
        return [
            writer.append_event(**sample_event(i, category=("orders", "refunds")[i % 2])).event_id
            for i in range(count)
        ]
