"""Appends per second in ``fsync`` mode against a local moto server, for 1 and 8 threads.

    python fsync_throughput.py [events per run]

Every ``append_event`` returns only after S3 acknowledged its chunk; concurrent threads share
one lease, one index update and one chunk upload per group commit.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
import uuid

import boto3
from moto.server import ThreadedMotoServer

from trailstore import AuditPayload, AuditTrailWriter


def run(url: str, options: dict[str, object], threads: int, events: int) -> float:
    """Append ``events`` ~500-byte events from ``threads`` threads; return events per second."""
    payload = AuditPayload.from_create({"id": 1, "note": "x" * 310})
    with AuditTrailWriter(root_path=url, storage_options=options) as writer:

        def work(count: int) -> None:
            for _ in range(count):
                writer.append_event(
                    domain="shop",
                    category="orders",
                    model_name="Order",
                    operation="create",
                    logical_user_id="bench",
                    payload=payload,
                )

        pool = [threading.Thread(target=work, args=(events // threads,)) for _ in range(threads)]
        started = time.perf_counter()
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        elapsed = time.perf_counter() - started
    return events / elapsed


def main() -> None:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 800
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    options: dict[str, object] = {
        "key": "testing",
        "secret": "testing",
        "endpoint_url": endpoint,
        "client_kwargs": {"region_name": "us-east-1"},
    }
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket="bench")
    try:
        for threads in (1, 8):
            rate = run(f"s3://bench/{uuid.uuid4().hex}", options, threads, events)
            print(f"fsync, {threads} thread(s): {rate:.0f} events/s ({events} events)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
