"""Write, read and replay a trail on a local moto S3 server (no AWS account needed).

    pip install trailstore-s3 "moto[server]" boto3
    python moto_example.py            # the whole cycle, then the server stops
    python moto_example.py --serve    # ... then keeps serving: try the printed commands

With ``--serve`` the server stays up until Ctrl-C, and the example prints ``trailstore``
commands (with the endpoint, bucket and credentials of this server) to run in another terminal.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import socket
import sys
import threading
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

from trailstore import AuditPayload, AuditReplayer, AuditTrailReader, AuditTrailWriter

BUCKET = "audit"
TRAIL = f"s3://{BUCKET}/trails/prod"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _trailstore_command() -> str:
    """``trailstore`` if it is on PATH, else the script beside this Python (a virtualenv's)."""
    if shutil.which("trailstore"):
        return "trailstore"
    return shlex.quote(os.path.relpath(Path(sys.executable).with_name("trailstore")))


def _write_read_replay(options: dict[str, object]) -> None:
    with AuditTrailWriter(root_path=TRAIL, storage_options=options) as writer:
        order = {"id": 7, "status": "new", "total": 30}
        writer.append_event(
            domain="shop",
            category="orders",
            model_name="Order",
            operation="create",
            logical_user_id="alice",
            payload=AuditPayload.from_create(order),
        )
        paid = {**order, "status": "paid"}
        writer.append_event(
            domain="shop",
            category="orders",
            model_name="Order",
            operation="update",
            logical_user_id="bob",
            payload=AuditPayload.from_update(order, paid, key_field="id"),
        )
    reader = AuditTrailReader(root_path=TRAIL, storage_options=options)
    for event in reader.iter_events():
        print(event.event_id, event.operation.value, event.logical_user_id)
    state = AuditReplayer(reader=reader).reconstruct_state(domain="shop", category="orders")
    print("replayed:", state.state)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", action="store_true", help="keep the server up until Ctrl-C")
    parser.add_argument("--port", type=int, default=0, help="server port (default: a free one)")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = args.port or _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    options: dict[str, object] = {"key": "testing", "secret": "testing", "endpoint_url": endpoint}
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=BUCKET)
    try:
        _write_read_replay(options)
        if args.serve:
            flags = " ".join(
                f"--storage-option {shlex.quote(f'{key}={value}')}"
                for key, value in options.items()
            )
            prefix = f"{_trailstore_command()} --root {TRAIL} {flags}"
            print(
                f"serving {endpoint} until Ctrl-C; in another terminal try:\n"
                f"  {prefix} stats\n"
                f"  {prefix} query --limit 5\n"
                f"  {prefix} replay --domain shop --category orders",
                flush=True,
            )
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
