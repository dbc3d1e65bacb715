"""A writer process for the crash kit: appends to a trail until it is killed, telling the
parent on stdout what it reserved, handed out and acknowledged.

Run as ``python -m trailstore.testing.crash_writer CONFIG_JSON`` with the keys ``url``,
``storage_options``, ``seed``, ``durability``, ``segment_bytes`` and optionally ``setup``
(``"module:function"``, called with ``setup_arguments`` before the writer opens: how a
backend's tests add faults or stop points).

Every message is one line, written in a single locked ``os.write`` so threads do not
interleave:

- ``R`` — the writer is open;
- ``A <first> <last>`` — a session is about to make these IDs spent (``CommitSession.reserving``);
- ``H <line>`` — ``batch``: an event whose append returned its ID, not yet flushed;
- ``E <line>`` — an event whose append returned (``batch``: and a ``flush()`` since), with the
  exact line it must have in the trail;
- ``X <error>`` — an append raised, which the kit treats as a failure;
- anything else a setup function sends with ``report`` (``K <point>``: stopped, kill me).
"""

from __future__ import annotations

import importlib
import json
import os
import random
import sys
import threading
from typing import Any

from trailstore.backend import CommitSession
from trailstore.encoding import encode_body
from trailstore.events import AuditEvent
from trailstore.lines import render_line
from trailstore.writer import AuditTrailWriter

STREAMS = [("shop", "orders"), ("shop", "refunds"), ("billing", "invoices")]
_OUT = sys.stdout.fileno()
_write = os.write
_report_lock = threading.Lock()


def report(data: bytes) -> None:
    """Send whole messages to the parent."""
    with _report_lock:
        view = memoryview(data)
        while view:
            view = view[_write(_OUT, view) :]


def _line(event: AuditEvent) -> bytes:
    return render_line(event.event_id, encode_body(event))


def _announce(session: CommitSession, first: int, last: int) -> None:
    report(b"A %d %d\n" % (first, last))


def event_fields(rng: random.Random, segment_bytes: int) -> dict[str, Any]:
    """One event of the workload: three streams, every operation, now and then an event
    larger than a segment."""
    domain, category = rng.choice(STREAMS)
    size = segment_bytes + 50 if rng.random() < 0.02 else rng.randint(0, segment_bytes // 5)
    operation = rng.choice(["create", "update", "delete"])
    record = {"n": rng.randint(0, 10**9), "pad": "x" * size}
    return {
        "domain": domain,
        "category": category,
        "model_name": "Order",
        "operation": operation,
        "logical_user_id": f"pid-{os.getpid()}",
        "payload": {"before" if operation == "delete" else "after": record},
    }


def work(writer: AuditTrailWriter, seed: int, segment_bytes: int) -> None:
    """Append single events and batches until the process dies. In ``batch`` mode the events
    are handed out at once and acknowledged at the next ``flush()``, called now and then, so a
    kill usually finds IDs handed out and not yet flushed."""
    rng = random.Random(seed)
    unflushed: list[AuditEvent] = []
    while True:
        try:
            if rng.random() < 0.6:
                events = [writer.append_event(**event_fields(rng, segment_bytes))]
            else:
                batch = [event_fields(rng, segment_bytes) for _ in range(rng.randint(2, 6))]
                events = writer.append_events(batch)
            if writer.durability == "batch":
                report(b"".join(b"H " + _line(event) for event in events))
                unflushed += events
                if rng.random() > 0.3:
                    continue
                writer.flush()
                events, unflushed = unflushed, []
        except Exception as exc:
            report(b"X %s\n" % repr(exc).encode("ascii", "backslashreplace"))
            raise
        report(b"".join(b"E " + _line(event) for event in events))


def main() -> None:
    config = json.loads(sys.argv[1])
    random.seed(config["seed"])
    CommitSession.reserving = _announce  # type: ignore[method-assign,assignment]
    if config.get("setup"):
        module, _, function = config["setup"].partition(":")
        getattr(importlib.import_module(module), function)(**config.get("setup_arguments", {}))
    writer = AuditTrailWriter(
        root_path=config["url"],
        storage_options=config["storage_options"],
        durability=config["durability"],
        max_file_size_bytes=config["segment_bytes"],
    )
    report(b"R\n")
    threads = [
        threading.Thread(
            target=work,
            args=(writer, config["seed"] * 10 + n, config["segment_bytes"]),
            daemon=True,
        )
        for n in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
