"""URL schemes map to backends; unknown schemes say what to install or how to write one."""

from __future__ import annotations

import subprocess
import sys
import textwrap
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


def test_schemes_are_case_insensitive(tmp_path: Path) -> None:
    assert isinstance(open_backend(f"FILE://{tmp_path}"), LocalBackend)
    backend = open_backend("Memory://case-test")
    assert isinstance(backend, MemoryBackend) and backend.url == "memory://case-test"


def test_unknown_scheme_says_how_to_write_a_backend_and_names_no_package() -> None:
    with pytest.raises(BackendNotFoundError) as raised:
        AuditTrailWriter(root_path="gopher://host/trail")
    message = str(raised.value)
    assert "pip install" not in message
    assert "trailstore.backends" in message and "'gopher'" in message


@pytest.mark.parametrize("url", ["s3://bucket/prefix", "S3://bucket/prefix", "s3a://b/p"])
def test_s3_without_the_plugin_says_pip_install_trailstore_s3(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setattr(registry, "entry_points", lambda **_: [])
    with pytest.raises(BackendNotFoundError, match=r"pip install trailstore-s3$"):
        open_backend(url)


def test_plugins_are_found_through_the_entry_point_group(monkeypatch: pytest.MonkeyPatch) -> None:
    (memory_entry,) = entry_points(group=registry.ENTRY_POINT_GROUP, name="memory")

    def fake_entry_points(**selection: Any) -> list[Any]:
        return [memory_entry] if selection.get("name") == "vault" else []

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    assert isinstance(open_backend("vault://anything"), MemoryBackend)
    assert isinstance(open_backend("VAULT://anything"), MemoryBackend)


def test_without_fcntl_memory_works_and_the_local_backend_says_why_it_is_missing(
    tmp_path: Path,
) -> None:
    """A platform without ``fcntl`` (Windows), simulated by making the module unimportable."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["fcntl"] = None  # import fcntl now raises ImportError
        import trailstore
        from trailstore import AuditTrailReader, AuditTrailWriter, BackendNotFoundError
        with AuditTrailWriter(root_path="memory://no-fcntl") as writer:
            writer.append_event(domain="d", category="c", model_name="M",
                                operation="create", logical_user_id="u")
        reader = AuditTrailReader(root_path="memory://no-fcntl")
        print([event.event_id for event in reader.iter_events()])
        try:
            AuditTrailWriter(root_path={str(tmp_path / "trail")!r})
        except BackendNotFoundError as exc:
            print("refused:", exc)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    shown, refusal = result.stdout.splitlines()
    assert shown == "[1]"
    assert refusal.startswith("refused: the file:// backend cannot run on this platform")
    assert "fcntl" in refusal
    assert not (tmp_path / "trail").exists()
