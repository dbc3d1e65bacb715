"""The benchmark workload: realistic CRUD events from ``trailstore.demo``, generated up front."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trailstore.demo import Workload
from trailstore.encoding import encode_body
from trailstore.events import AuditEvent

POOL_SIZE = 5000


@dataclass(frozen=True)
class WorkloadSpec:
    """What every contestant of one run writes."""

    events: int
    seed: int = 7
    segment_bytes: int = 5 * 1024 * 1024

    def pool(self) -> list[dict[str, Any]]:
        """Distinct events, generated before any timing starts."""
        return list(Workload(self.seed).events(min(self.events, POOL_SIZE)))


def line_bytes(fields: dict[str, Any]) -> int:
    """Size of the line an event becomes (with an ID of typical width)."""
    event = AuditEvent(event_id=1, timestamp=1.7e9, **fields)
    return len(encode_body(event)) + len(b'{"event_id":1000000,') + 1
