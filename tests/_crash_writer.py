"""A writer process for the crash tests: appends until it is killed, reporting on stdout.

Usage: ``python _crash_writer.py ROOT SEED DURABILITY LIMIT SHORT_WRITES``.

Every message is one line, written in a single locked ``os.write`` so threads do not interleave:

- ``R`` — the writer is open;
- ``A <first> <last>`` — a commit session reserved these IDs (sent before the counter moves,
  so the parent knows every ID that can reach the disk);
- ``E <line>`` — an event whose append returned (in ``batch`` mode: and a ``flush()`` after
  it), with the exact line it should have on disk;
- ``X <error>`` — an append raised, which the crash tests treat as a failure.

With ``SHORT_WRITES`` set, ``os.write`` to segments writes at most a few bytes per call (a legal
short write) and takes a moment doing it (a slow disk), so a kill often lands between two parts
of a line and leaves a torn tail.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from typing import Any

from trailstore import AuditTrailWriter
from trailstore.backends import local
from trailstore.encoding import encode_body
from trailstore.lines import render_line

STREAMS = [("shop", "orders"), ("shop", "refunds"), ("billing", "invoices")]
OUT = sys.stdout.fileno()
_real_write = os.write
_report_lock = threading.Lock()


def report(data: bytes) -> None:
    """Send whole messages to the parent."""
    with _report_lock:
        view = memoryview(data)
        while view:
            view = view[_real_write(OUT, view) :]


def _short_write(fd: int, data: Any) -> int:
    if fd == OUT:
        return _real_write(fd, data)
    written = _real_write(fd, bytes(data[: random.randint(1, 48)]))
    time.sleep(0.0002)
    return written


def _reporting_allocate(original: Any) -> Any:
    def allocate(session: Any, count: int) -> int:
        # told before the real allocate, which in batch mode moves the counter at once, by a
        # whole block of IDs
        first = session._end + 1
        block = local.HANDED_OUT_BLOCK if session.ids_handed_out else 0
        report(b"A %d %d\n" % (first, first + count - 1 + block))
        allocated: int = original(session, count)
        assert allocated == first
        return allocated

    return allocate


def _fields(rng: random.Random, limit: int) -> dict[str, Any]:
    domain, category = rng.choice(STREAMS)
    size = limit + 50 if rng.random() < 0.02 else rng.randint(0, limit // 5)
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


def work(writer: AuditTrailWriter, seed: int, limit: int) -> None:
    rng = random.Random(seed)
    while True:
        try:
            if rng.random() < 0.6:
                events = [writer.append_event(**_fields(rng, limit))]
            else:
                events = writer.append_events(
                    [_fields(rng, limit) for _ in range(rng.randint(2, 6))]
                )
            if writer.durability == "batch":
                writer.flush()
        except Exception as exc:
            report(b"X %s\n" % repr(exc).encode("ascii", "backslashreplace"))
            raise
        report(b"".join(b"E " + render_line(e.event_id, encode_body(e)) for e in events))


def main() -> None:
    root, seed, durability, limit, short_writes = sys.argv[1:]
    random.seed(int(seed))
    local._LocalSession.allocate = _reporting_allocate(  # type: ignore[method-assign]
        local._LocalSession.allocate
    )
    if short_writes == "1":
        os.write = _short_write
    writer = AuditTrailWriter(root_path=root, durability=durability, max_file_size_bytes=int(limit))
    report(b"R\n")
    threads = [
        threading.Thread(target=work, args=(writer, int(seed) * 10 + n, int(limit)), daemon=True)
        for n in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
