"""Errors are typed and name the trail; URLs, the registry and trails of the original format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import BUCKET, free_port, options_for
from trailstore_s3 import client
from trailstore_s3.backend import S3Backend
from trailstore_s3.layout import TrailLocation

from trailstore import (
    AuditTrailReader,
    AuditTrailWriter,
    BackendNotFoundError,
    ConfigurationError,
    StorageError,
    registry,
)
from trailstore.registry import open_backend
from trailstore.testing import sample_event


def test_a_missing_bucket_is_a_storage_error_naming_the_url(s3_options: dict[str, Any]) -> None:
    url = "s3://no-such-audit-bucket/trail"
    with pytest.raises(StorageError, match=r"no-such-audit-bucket.*does not exist"):
        AuditTrailWriter(root_path=url, storage_options=s3_options)
    with pytest.raises(StorageError, match="s3://no-such-audit-bucket"):
        AuditTrailReader(root_path=url, storage_options=s3_options).streams()


def test_an_unreachable_endpoint_is_a_storage_error_naming_the_url() -> None:
    options = options_for(f"http://127.0.0.1:{free_port()}")
    options["config_kwargs"] = {"retries": {"max_attempts": 1}, "connect_timeout": 2}
    url = f"s3://{BUCKET}/unreachable"
    with pytest.raises(StorageError, match=rf"cannot reach {url}: the endpoint is unreachable"):
        AuditTrailWriter(root_path=url, storage_options=options)


def test_urls_and_schemes() -> None:
    assert isinstance(open_backend(f"s3a://{BUCKET}/x"), S3Backend)
    assert isinstance(open_backend(f"S3://{BUCKET}/x"), S3Backend)
    assert TrailLocation.parse("s3://bucket").root == "bucket"
    assert TrailLocation.parse("s3://bucket/a/b/").root == "bucket/a/b"
    with pytest.raises(ConfigurationError):
        TrailLocation.parse("s3:///prefix")


def test_without_the_plugin_s3_urls_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "entry_points", lambda **_: [])
    with pytest.raises(BackendNotFoundError, match="pip install trailstore-s3"):
        open_backend("s3://bucket/trail")


def test_a_trail_of_the_original_format_opens_reads_and_continues(
    tmp_path: Path, fresh_trail_url: str, s3_options: dict[str, Any]
) -> None:
    with AuditTrailWriter(root_path=tmp_path) as local:
        for i in range(3):
            local.append_event(**sample_event(i))
    backend = S3Backend(fresh_trail_url, **s3_options)
    root = backend.location.root
    backend.fs.pipe_file(f"{root}/index.json", b'{"last_event_id": 3}')
    segment = "shop/orders/audit-000001.jsonl"
    backend.fs.pipe_file(f"{root}/{segment}", (tmp_path / segment).read_bytes())

    with AuditTrailWriter(root_path=fresh_trail_url, storage_options=s3_options) as writer:
        assert writer.append_event(**sample_event(3)).event_id == 4
    reader = AuditTrailReader(root_path=fresh_trail_url, storage_options=s3_options)
    assert [event.event_id for event in reader.iter_events()] == [1, 2, 3, 4]
    assert reader.report.clean
    (stream,) = reader.streams()
    assert backend.list_segments(stream) == [1, 2]


def test_storage_options_reach_s3fs_untouched(s3_endpoint: str, fresh_trail_url: str) -> None:
    options = options_for(s3_endpoint)
    client_kwargs = {**options.get("client_kwargs", {}), "endpoint_url": options["endpoint_url"]}
    options = {**options, "client_kwargs": client_kwargs}
    del options["endpoint_url"]
    with AuditTrailWriter(root_path=fresh_trail_url, storage_options=options) as writer:
        assert writer.append_event(**sample_event(0)).event_id == 1
    reader = AuditTrailReader(root_path=fresh_trail_url, storage_options=options)
    assert [event.event_id for event in reader.iter_events()] == [1]


def test_a_client_too_old_for_create_only_writes_is_reported_as_such(
    monkeypatch: pytest.MonkeyPatch, fresh_trail_url: str
) -> None:
    """The PutObject model of a botocore before 1.35.2, which would refuse (raw client) or
    silently drop (s3fs API) ``If-None-Match``, is refused before any request."""
    older = client.put_object_parameters() - {"IfMatch", "IfNoneMatch"}
    monkeypatch.setattr(client, "put_object_parameters", lambda: older)
    with pytest.raises(ConfigurationError, match=r"too old for trailstore-s3.*lacks IfNoneMatch"):
        AuditTrailWriter(root_path=fresh_trail_url, storage_options={"anon": True})
    with pytest.raises(ConfigurationError, match=r"upgrade to botocore>=1\.35\.74"):
        AuditTrailReader(root_path=fresh_trail_url, storage_options={"anon": True})


def test_the_installed_client_knows_create_only_puts() -> None:
    assert client.put_object_parameters() >= client.CONDITIONAL_PUT_PARAMETERS
