"""Write, read and replay a trail on a local moto S3 server (no AWS account needed).

pip install trailstore-s3 "moto[server]" boto3
python moto_example.py
"""

from __future__ import annotations

import logging
import socket

import boto3
from moto.server import ThreadedMotoServer

from trailstore import AuditPayload, AuditReplayer, AuditTrailReader, AuditTrailWriter


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    options = {
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
    ).create_bucket(Bucket="audit")
    try:
        url = "s3://audit/trails/prod"
        with AuditTrailWriter(root_path=url, storage_options=options) as writer:
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
                payload=AuditPayload.from_update(order, paid),
            )
        reader = AuditTrailReader(root_path=url, storage_options=options)
        for event in reader.iter_events():
            print(event.event_id, event.operation.value, event.logical_user_id)
        state = AuditReplayer(reader=reader).reconstruct_state(domain="shop", category="orders")
        print("replayed:", state.state)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
