"""The conformance suite and the crash kit on the two built-in backends."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from trailstore.coordinators.local_lock import COUNTER_NAME
from trailstore.registry import local_path, open_backend
from trailstore.store import appending
from trailstore.testing import (
    BackendConformance,
    CrashConformance,
    CrashKit,
    EvidenceConformance,
    LifecycleConformance,
)


def _disk_full(*_: Any) -> NoReturn:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class TestLocalBackend(BackendConformance, CrashConformance, LifecycleConformance):
    @pytest.fixture
    def trail_url(self, tmp_path: Path) -> str:
        return str(tmp_path / "trail")

    def raw_storage(
        self, trail_url: str, storage_options: dict[str, Any]
    ) -> tuple[AbstractFileSystem, str]:
        return LocalFileSystem(), str(local_path(trail_url))

    def damage_tail(
        self,
        trail_url: str,
        storage_options: dict[str, Any],
        domain: str,
        category: str,
        data: bytes,
    ) -> None:
        newest = sorted((local_path(trail_url) / domain / category).glob("audit-*.jsonl"))[-1]
        with open(newest, "ab") as segment:
            segment.write(data)

    def plant_symlink(
        self, trail_url: str, storage_options: dict[str, Any], relative: str, target: str
    ) -> None:
        link = local_path(trail_url) / relative
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)

    @contextlib.contextmanager
    def failing_writes(self, trail_url: str, storage_options: dict[str, Any]) -> Iterator[None]:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(appending, "write_all", _disk_full)
            yield

    @pytest.fixture
    def crash_kit(self, trail_url: str, storage_options: dict[str, Any]) -> CrashKit:
        """Writers whose segment writes are short and slow (kills land mid-line)."""
        kit = CrashKit(trail_url, storage_options, random.Random(4))
        kit.setup = "_crash_setup:short_writes"
        return kit

    def between_rounds(self, kit: CrashKit) -> None:
        """Leave ``index.json`` or the counter file as a crash or an operator might. The
        counter is kept in both, so that either alone may be lost, lag or hold garbage."""
        root = local_path(kit.url)
        index, counter = root / "index.json", root / COUNTER_NAME
        highest = max(kit.acknowledged, default=0)
        match kit.rng.choice(["keep", "lagging", "missing", "empty", "garbage", "counter"]):
            case "lagging":
                index.write_text(json.dumps({"last_event_id": highest // 2}))
            case "missing":
                index.unlink(missing_ok=True)
            case "empty":
                index.write_text("")
            case "garbage":
                index.write_bytes(b"\x00{garbage")
            case "counter":
                if kit.rng.random() < 0.5:
                    counter.unlink(missing_ok=True)
                else:
                    counter.write_bytes(b"not a number\n")


class TestMemoryBackend(BackendConformance, EvidenceConformance):
    @pytest.fixture
    def trail_url(self) -> str:
        return f"memory://{uuid.uuid4().hex}"


def test_file_urls_open_the_local_backend(tmp_path: Path) -> None:
    backend = open_backend(f"file://{tmp_path}")
    assert backend.supports_concurrent_processes
