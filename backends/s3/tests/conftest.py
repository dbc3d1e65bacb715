"""A real moto S3 server on 127.0.0.1 for the whole session, a counting proxy in front of it,
and a fresh trail prefix per test.

To run the same tests against another service (MinIO, R2, Ceph, S3), set
``TRAILSTORE_S3_TEST_ENDPOINT`` (and ``TRAILSTORE_S3_TEST_BUCKET``, an existing bucket, plus the
usual ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_DEFAULT_REGION``); no moto server
is started then.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from _s3_proxy import CountingProxy
from moto.s3.responses import S3Response
from moto.server import ThreadedMotoServer

EXTERNAL_ENDPOINT = os.environ.get("TRAILSTORE_S3_TEST_ENDPOINT")
BUCKET = os.environ.get("TRAILSTORE_S3_TEST_BUCKET", "trailstore-tests")
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def options_for(endpoint: str) -> dict[str, Any]:
    """storage_options that reach ``endpoint`` (with moto's fake credentials unless external)."""
    if EXTERNAL_ENDPOINT:
        return {"endpoint_url": endpoint}
    return {
        "key": "testing",
        "secret": "testing",
        "endpoint_url": endpoint,
        "client_kwargs": {"region_name": "us-east-1"},
    }


def _atomic(method: Callable[..., Any]) -> Callable[..., Any]:
    lock = threading.Lock()

    @functools.wraps(method)
    def serialised(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return method(*args, **kwargs)

    return serialised


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The endpoint of a moto server in this process (or ``TRAILSTORE_S3_TEST_ENDPOINT``).

    moto 5.2 evaluates ``If-Match``/``If-None-Match`` and then stores the object in separate
    steps without a lock, so concurrent conditional PUTs are not guaranteed to be decided
    atomically as S3 decides them (no lost race was observed, but the tests must not depend on
    timing); the server's PutObject handler is serialised here.
    """
    if EXTERNAL_ENDPOINT:
        yield EXTERNAL_ENDPOINT
        return
    with pytest.MonkeyPatch.context() as patch:
        for name, value in CREDENTIALS.items():
            patch.setenv(name, value)
        patch.setattr(S3Response, "put_object", _atomic(S3Response.put_object))
        port = free_port()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield endpoint
        server.stop()


@pytest.fixture(scope="session")
def proxy(s3_endpoint: str) -> Iterator[CountingProxy]:
    counting = CountingProxy(s3_endpoint)
    counting.start()
    yield counting
    counting.stop()


@pytest.fixture
def s3_options(s3_endpoint: str) -> dict[str, Any]:
    return options_for(s3_endpoint)


@pytest.fixture
def fresh_trail_url(s3_endpoint: str) -> str:
    return f"s3://{BUCKET}/{uuid.uuid4().hex}"
