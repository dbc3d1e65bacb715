"""A writer process for ``test_aio``: eight tasks append through ``AsyncAuditTrailWriter``
(``fsync``) until the process is killed, each printing ``<event_id> <token>`` for every event
as soon as its append returned; the token is the event's ``logical_user_id``.

Run as ``python _aio_child.py ROOT``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from trailstore.aio import AsyncAuditTrailWriter


def _fields(token: str) -> dict[str, Any]:
    return {
        "domain": "shop",
        "category": ("orders", "refunds")[len(token) % 2],
        "model_name": "Order",
        "operation": "create",
        "logical_user_id": token,
        "payload": {"after": {"token": token}},
    }


async def _append_forever(writer: AsyncAuditTrailWriter, task: int) -> None:
    for number in range(10**9):
        token = f"{os.getpid()}-{task}-{number}"
        if task % 2:
            events = await writer.append_events([_fields(token + "a"), _fields(token + "b")])
        else:
            events = [await writer.append_event(**_fields(token))]
        printed = "".join(f"{event.event_id} {event.logical_user_id}\n" for event in events)
        os.write(sys.stdout.fileno(), printed.encode())  # one write: never interleaved


async def main(root: str) -> None:
    async with AsyncAuditTrailWriter(root_path=root) as writer:
        await asyncio.gather(*(_append_forever(writer, task) for task in range(8)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
