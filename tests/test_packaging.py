"""What a user sees of the distributions: metadata, version, docs, and a clean install."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from importlib.metadata import metadata, requires, version
from pathlib import Path

import pytest

import trailstore

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("distribution", ["trailstore", "trailstore-s3"])
def test_distributions_carry_license_classifiers_and_urls(distribution: str) -> None:
    found = metadata(distribution)
    assert found["License-Expression"] == "MIT"
    assert "LICENSE" in (found.get_all("License-File") or [])
    assert "Typing :: Typed" in (found.get_all("Classifier") or [])
    assert found.get_all("Project-URL")


def test_the_plugin_depends_on_a_compatible_release_of_the_core() -> None:
    major, minor, _ = version("trailstore").split(".")
    assert f"trailstore~={major}.{minor}.0" in (requires("trailstore-s3") or [])


def test_the_package_docstring_introduces_the_library() -> None:
    assert trailstore.__doc__ is not None
    first, _, rest = trailstore.__doc__.partition("\n")
    assert first == "trailstore: append-only audit trails for Python applications."
    for name in ("AuditTrailWriter", "AuditTrailReader", "AuditReplayer", "AuditPayload"):
        assert name in rest


@pytest.mark.slow
def test_built_wheels_install_and_work_in_a_clean_virtualenv(tmp_path: Path) -> None:
    """Both wheels, in a virtualenv that has nothing else: the plugin resolves our core."""
    wheels, source = tmp_path / "wheels", tmp_path / "source"
    shutil.copytree(  # built from a copy, so the checkout gets no build/ directories
        REPOSITORY,
        source,
        ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "results"),
    )
    for project in (source, source / "backends" / "s3"):
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", wheels, project],
            check=True,
        )
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--find-links", wheels, "trailstore-s3"],
        check=True,
    )
    check = (
        "import trailstore, trailstore_s3; from trailstore.registry import backend_class; "
        "print(trailstore.__version__, backend_class('s3').__name__)"
    )
    shown = subprocess.run([python, "-c", check], capture_output=True, text=True, check=True)
    assert shown.stdout.split() == [version("trailstore"), "S3Backend"]
    script = subprocess.run(
        [environment / "bin" / "trailstore", "--version"], capture_output=True, text=True
    )
    assert script.stdout == f"trailstore {version('trailstore')}\n"
