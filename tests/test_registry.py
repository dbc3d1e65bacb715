"""URL schemes map to backends; unknown schemes say what to install."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

from trailstore import AuditTrailWriter, BackendNotFoundError, open_backend, registry
from trailstore.backends.local import LocalBackend
from trailstore.backends.memory import MemoryBackend


def test_plain_paths_and_file_urls_are_local(tmp_path: Path) -> None:
    assert isinstance(open_backend(tmp_path), LocalBackend)
    assert isinstance(open_backend(f"file://{tmp_path}"), LocalBackend)
    assert isinstance(open_backend("memory://x"), MemoryBackend)


def test_unknown_scheme_names_the_package_to_install() -> None:
    with pytest.raises(BackendNotFoundError, match="pip install trailstore-gopher"):
        AuditTrailWriter(root_path="gopher://host/trail")


def test_s3_without_the_plugin_says_pip_install_trailstore_s3(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registry, "entry_points", lambda **_: [])
    with pytest.raises(BackendNotFoundError, match="pip install trailstore-s3"):
        open_backend("s3://bucket/prefix")


def test_plugins_are_found_through_the_entry_point_group(monkeypatch: pytest.MonkeyPatch) -> None:
    (memory_entry,) = entry_points(group=registry.ENTRY_POINT_GROUP, name="memory")

    def fake_entry_points(**selection: Any) -> list[Any]:
        return [memory_entry] if selection.get("name") == "vault" else []

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    assert isinstance(open_backend("vault://anything"), MemoryBackend)
