"""Archiving to S3 under Object Lock, on a real moto server: objects are created write-once
in the same PUT, S3 then refuses to delete them, and a bucket without Object Lock is refused
with a clear error before anything is archived. (Archive, prune and reading across tiers on
S3, also with SIGKILLs, are in ``LifecycleConformance``.)"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from trailstore.backend import Retention
from trailstore.cli import main
from trailstore.errors import StorageError
from trailstore.lifecycle import archive_trail
from trailstore.testing.lifecycle import check_archive, write_local_trail


@pytest.fixture
def locked_bucket(s3_endpoint: str) -> str:
    name = f"locked-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def test_archived_objects_are_locked_until_their_retention_date(
    tmp_path: Path, s3_endpoint: str, s3_options: dict[str, Any], locked_bucket: str
) -> None:
    root = tmp_path / "trail"
    write_local_trail(root, range(60))
    until = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    url = f"s3://{locked_bucket}/app"
    report = archive_trail(
        root, url, archive_options=s3_options, retention=Retention("compliance", until)
    )
    assert not report.problems and report.segments_archived > 3
    check_archive(str(root), url, s3_options)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    objects = client.list_objects_v2(Bucket=locked_bucket, Prefix="app/")["Contents"]
    # every segment, seal and checkpoint archived, each under the lock
    assert len(objects) == 2 * report.segments_archived + report.checkpoints_archived
    for listed in objects:
        head = client.head_object(Bucket=locked_bucket, Key=listed["Key"])
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"] == until
    with pytest.raises(ClientError, match="AccessDenied"):
        client.delete_object(Bucket=locked_bucket, Key=listed["Key"], VersionId=head["VersionId"])
    again = archive_trail(
        root, url, archive_options=s3_options, retention=Retention("compliance", until)
    )
    assert again.segments_archived == again.checkpoints_archived == 0


def test_object_lock_on_a_bucket_without_it_is_refused_before_anything_is_archived(
    tmp_path: Path, s3_endpoint: str, s3_options: dict[str, Any], fresh_trail_url: str
) -> None:
    root = tmp_path / "trail"
    write_local_trail(root, range(30))
    until = datetime.now(UTC) + timedelta(days=1)
    with pytest.raises(StorageError, match="Object Lock enabled"):
        archive_trail(
            root, fresh_trail_url, archive_options=s3_options,
            retention=Retention("governance", until),
        )  # fmt: skip
    bucket, prefix = fresh_trail_url.removeprefix("s3://").split("/", 1)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    assert client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/").get("KeyCount") == 0


def test_the_archive_command_locks_objects_for_the_days_asked(
    tmp_path: Path, s3_endpoint: str, locked_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "trail"
    write_local_trail(root, range(30))
    code = main([
        "archive", "--root", str(root), "--to", f"s3://{locked_bucket}/cli",
        "--to-option", f"endpoint_url={s3_endpoint}", "--to-option", "key=testing",
        "--to-option", "secret=testing", "--object-lock", "governance", "--retain-days", "3",
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "archived" in capsys.readouterr().out
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    key = client.list_objects_v2(Bucket=locked_bucket, Prefix="cli/")["Contents"][0]["Key"]
    head = client.head_object(Bucket=locked_bucket, Key=key)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    left = head["ObjectLockRetainUntilDate"] - datetime.now(UTC)
    assert timedelta(days=2, hours=23) < left <= timedelta(days=3)
