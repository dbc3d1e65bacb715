"""Every command the S3 docs and programs print works as printed, against a real moto server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from trailstore.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "moto_example.py"


def _suggested(output: str) -> list[str]:
    """The commands a program printed after its ``try:`` line, one per line."""
    lines = output.splitlines()
    start = next(n for n, line in enumerate(lines) if "try:" in line)
    first = lines[start].partition("try:")[2].strip()
    return [
        command for command in [first, *(line.strip() for line in lines[start + 1 :])] if command
    ]


def _run_all(commands: list[str], cwd: Path) -> list[str]:
    outputs = []
    for command in commands:
        result = subprocess.run(command, shell=True, cwd=cwd, capture_output=True, text=True)
        assert (result.returncode, result.stderr) == (0, ""), command
        outputs.append(result.stdout)
    return outputs


def test_the_moto_example_serves_and_its_printed_commands_work(tmp_path: Path) -> None:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLE), "--serve"],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        output = ""
        while "replay --domain" not in output:
            line = process.stdout.readline()
            assert line, f"the example ended early: {output}"
            output += line
        stats, query, replay = _run_all(_suggested(output), tmp_path)
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    assert "replayed: {'Order': {'id': 7, 'status': 'paid', 'total': 30}}" in output
    assert "shop/orders" in stats
    assert [json.loads(line)["event_id"] for line in query.splitlines()] == [1, 2]
    assert json.loads(replay)["state"] == {"Order": {"id": 7, "status": "paid", "total": 30}}


def test_an_s3_demo_suggests_commands_that_reach_the_same_trail(
    fresh_trail_url: str,
    s3_options: dict[str, Any],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    flags = [f"--storage-option={key}={json.dumps(value)}" for key, value in s3_options.items()]
    code = main(["--root", fresh_trail_url, *flags, "demo", "--events", "60"])
    out = capsys.readouterr().out
    assert code == 0 and "replay matches: yes" in out

    environment = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    environment["XDG_STATE_HOME"] = str(tmp_path / "state")  # where verify remembers the trail
    for command in _suggested(out):
        result = subprocess.run(
            command, shell=True, cwd=Path.cwd(), env=environment, capture_output=True, text=True
        )
        assert (result.returncode, result.stderr) == (0, ""), command
        assert result.stdout.strip()


def test_commands_on_an_empty_prefix_fail_like_a_missing_directory(
    fresh_trail_url: str, s3_options: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    flags = [f"--storage-option={key}={json.dumps(value)}" for key, value in s3_options.items()]
    code = main(["--root", fresh_trail_url, *flags, "stats"])
    captured = capsys.readouterr()
    assert (code, captured.out) == (1, "")
    assert captured.err == (
        f"trailstore: error: no trail at {fresh_trail_url}: it holds no index.json and no segment\n"
    )
