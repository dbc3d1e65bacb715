"""A real moto S3 server on 127.0.0.1 for the whole session, a counting proxy in front of it,
and a fresh trail prefix per test."""

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

BUCKET = "audittrail-tests"
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
    """storage_options that reach ``endpoint`` with the fake credentials."""
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
def moto_endpoint() -> Iterator[str]:
    """The endpoint of a moto server in this process.

    moto 5 checks ``If-Match``/``If-None-Match`` and then stores the object in separate steps,
    so two concurrent conditional PUTs can both succeed; S3 decides atomically. The server's
    PutObject handler is serialised here to give it S3's semantics.
    """
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
def proxy(moto_endpoint: str) -> Iterator[CountingProxy]:
    counting = CountingProxy(moto_endpoint)
    counting.start()
    yield counting
    counting.stop()


@pytest.fixture
def s3_options(moto_endpoint: str) -> dict[str, Any]:
    return options_for(moto_endpoint)


@pytest.fixture
def fresh_trail_url(moto_endpoint: str) -> str:
    return f"s3://{BUCKET}/{uuid.uuid4().hex}"


def pytest_configure() -> None:
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
