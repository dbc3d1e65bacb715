"""A real moto S3 server on 127.0.0.1 for the whole session, a counting proxy in front of it,
and a fresh trail prefix per test."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from _s3_proxy import CountingProxy
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


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in CREDENTIALS.items():
            patch.setenv(name, value)
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
