"""Typos in ``operation`` and ``durability`` are type errors, not runtime surprises."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

GOOD = """
from trailstore import AuditOperation, AuditTrailWriter, Durability

writer = AuditTrailWriter(root_path="memory://t", durability="batch")
AuditTrailWriter(root_path="memory://t", durability=Durability.FLUSH).close()
writer.append_event(domain="d", category="c", model_name="M", operation="create",
                    logical_user_id="u")
writer.append_event(domain="d", category="c", model_name="M", operation=AuditOperation.DELETE,
                    logical_user_id="u")
"""

TYPOS = """
from trailstore import AuditTrailWriter

writer = AuditTrailWriter(root_path="memory://t", durability="fsnyc")
writer.append_event(domain="d", category="c", model_name="M", operation="crete",
                    logical_user_id="u")
"""


def _mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    module = tmp_path / "usage.py"
    module.write_text(textwrap.dedent(source))
    command = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(module)]
    return subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)


def test_literal_operation_and_durability_names_type_check(tmp_path: Path) -> None:
    result = _mypy(tmp_path, GOOD)
    assert result.returncode == 0, result.stdout


def test_misspelt_operation_and_durability_are_type_errors(tmp_path: Path) -> None:
    result = _mypy(tmp_path, TYPOS)
    assert result.returncode == 1
    errors = result.stdout.splitlines()
    assert errors[0].startswith(
        'usage.py:4: error: Argument "durability" to "AuditTrailWriter" has incompatible type '
        "\"Literal['fsnyc']\""
    )
    assert errors[1].startswith(
        'usage.py:5: error: Argument "operation" to "append_event" of "AuditTrailWriter" has '
        "incompatible type \"Literal['crete']\""
    )
