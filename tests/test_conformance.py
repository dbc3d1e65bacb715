"""The conformance suite on the two built-in backends."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from trailstore.backend import StreamKey
from trailstore.backends.memory import memory_trail
from trailstore.registry import open_backend
from trailstore.testing import BackendConformance


class TestLocalBackend(BackendConformance):
    @pytest.fixture
    def trail_url(self, tmp_path: Path) -> str:
        return str(tmp_path / "trail")

    def damage_tail(
        self,
        trail_url: str,
        storage_options: dict[str, Any],
        domain: str,
        category: str,
        data: bytes,
    ) -> None:
        newest = sorted((Path(trail_url) / domain / category).glob("audit-*.jsonl"))[-1]
        with open(newest, "ab") as segment:
            segment.write(data)


class TestMemoryBackend(BackendConformance):
    @pytest.fixture
    def trail_url(self) -> str:
        return f"memory://{uuid.uuid4().hex}"

    def damage_tail(
        self,
        trail_url: str,
        storage_options: dict[str, Any],
        domain: str,
        category: str,
        data: bytes,
    ) -> None:
        segments = memory_trail(trail_url).segments[StreamKey(domain, category)]
        segments[max(segments)] += data


def test_file_urls_open_the_local_backend(tmp_path: Path) -> None:
    backend = open_backend(f"file://{tmp_path}")
    assert backend.supports_concurrent_processes
