"""The core conformance suite and crash kit against a real moto server, plus the endpoint's own
conformance: create-only writes must be enforced (run this file against MinIO/R2/S3 to check a
service)."""

from __future__ import annotations

import contextlib
import random
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from _s3_crash_setup import POINTS
from conftest import BUCKET
from s3fs import S3FileSystem
from trailstore_s3.backend import S3Backend

from trailstore.coordinators.conditional import ConditionalWrites
from trailstore.testing import BackendConformance, CrashConformance, CrashKit, LifecycleConformance

LEASE_SECONDS = 3.0


class TestS3Conformance(BackendConformance, CrashConformance, LifecycleConformance):
    tamper_examples = 25

    @pytest.fixture
    def trail_url(self, fresh_trail_url: str) -> str:
        return fresh_trail_url

    @pytest.fixture
    def storage_options(self, s3_options: dict[str, Any]) -> dict[str, Any]:
        return s3_options

    @contextlib.contextmanager
    def failing_writes(self, trail_url: str, storage_options: dict[str, Any]) -> Iterator[None]:
        def refused(*_: Any, **__: Any) -> None:
            raise PermissionError("Access Denied")

        fs = S3FileSystem(**storage_options)  # the instance writers share (fsspec caches it)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(fs, "pipe_file", refused)
            yield

    @pytest.fixture
    def crash_kit(
        self, trail_url: str, storage_options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
    ) -> CrashKit:
        """Writers with a short lease, every other one stopping at a protocol point."""
        monkeypatch.setattr(S3Backend, "lease_seconds", LEASE_SECONDS)
        kit = CrashKit(trail_url, storage_options, random.Random(7), segment_bytes=2000)
        kit.setup = "_s3_crash_setup:install"
        kit.setup_arguments = lambda spawned: {  # type: ignore[method-assign]
            "point": POINTS[spawned // 2 % len(POINTS)] if spawned % 2 else "none",
            "skip": spawned % 3,
            "lease": LEASE_SECONDS,
        }
        kit.kill_window = lambda arguments: 4.0 if arguments["point"] != "none" else 0.8  # type: ignore[method-assign]
        return kit

    def test_the_endpoint_gets_conditional_writes(self, trail_url: str, s3_options: Any) -> None:
        backend = S3Backend(trail_url, **s3_options)
        assert isinstance(backend.coordinator, ConditionalWrites)


class TestCreateOnlyWrites:
    """What the protocol needs from the endpoint; a service failing these is not safe for
    writers on several hosts (the plugin then falls back to a lock on one host)."""

    @pytest.fixture
    def fs(self, s3_options: dict[str, Any]) -> S3FileSystem:
        return S3FileSystem(**s3_options)

    @pytest.fixture
    def key(self) -> str:
        return f"{BUCKET}/{uuid.uuid4().hex}/probe"

    def test_a_second_create_only_write_of_the_same_key_fails(
        self, fs: S3FileSystem, key: str
    ) -> None:
        fs.pipe_file(key, b"first", mode="create")
        with pytest.raises(FileExistsError):
            fs.pipe_file(key, b"second", mode="create")
        assert fs.cat_file(key) == b"first"

    def test_concurrent_create_only_writes_of_one_key_have_one_winner(
        self, fs: S3FileSystem, key: str
    ) -> None:
        start = threading.Barrier(8)
        winners: list[int] = []

        def race(writer: int) -> None:
            start.wait()
            with contextlib.suppress(FileExistsError):
                fs.pipe_file(key, b"%d" % writer, mode="create")
                winners.append(writer)

        threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(winners) == 1
        assert fs.cat_file(key) == b"%d" % winners[0]
