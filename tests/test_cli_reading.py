"""The reading commands a user reaches for: ``query --last`` and ``--follow``, ``replay --at``,
``history`` and ``export``, through ``main`` and (for follow) the installed script."""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _workers import append_and_report

from trailstore import AuditPayload, AuditReplayer, AuditTrailReader, AuditTrailWriter
from trailstore.cli import main
from trailstore.history import record_history

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
HOUR = 3600.0


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def segment_lines(root: Path) -> list[str]:
    lines = [
        line for path in root.glob("*/*/audit-*.jsonl") for line in path.read_text().splitlines()
    ]
    return sorted(lines, key=lambda line: json.loads(line)["event_id"])


@pytest.fixture
def trail(tmp_path: Path) -> Path:
    """Twelve events an hour apart: orders A-1 and A-2 created, updated, one deleted, and
    invoices between them."""
    root = tmp_path / "trail"
    with AuditTrailWriter(root_path=root, max_file_size_bytes=900) as writer:
        for number in range(12):
            key = f"A-{number % 2 + 1}"
            if number % 3 == 2:
                fields = {
                    "category": "invoices",
                    "model_name": "Invoice",
                    "operation": "create",
                    "payload": AuditPayload.from_create({"id": f"I-{number}", "total": number}),
                }
            elif number < 2:
                fields = {
                    "category": "orders",
                    "model_name": "Order",
                    "operation": "create",
                    "payload": AuditPayload.from_create({"id": key, "status": "new", "n": 0}),
                }
            elif number == 10:
                fields = {
                    "category": "orders",
                    "model_name": "Order",
                    "operation": "delete",
                    "payload": AuditPayload.from_delete({"id": key}),
                }
            else:
                fields = {
                    "category": "orders",
                    "model_name": "Order",
                    "operation": "update",
                    "payload": AuditPayload.from_update(
                        {"id": key, "n": number - 1}, {"id": key, "n": number}, key_field="id"
                    ),
                }
            writer.append_event(
                domain="shop",
                logical_user_id=f"user-{number % 3}",
                timestamp=T0 + number * HOUR,
                **fields,
            )
    return root


def test_query_last_prints_the_newest_lines_byte_for_byte(
    trail: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stored = segment_lines(trail)
    code, out, _ = run(capsys, "--root", str(trail), "query", "--last", "3")
    assert code == 0
    assert out.splitlines() == stored[-3:]
    code, out, _ = run(
        capsys, "--root", str(trail), "query", "--last", "2", "--model-name", "Invoice"
    )
    assert [json.loads(line)["event_id"] for line in out.splitlines()] == [9, 12]
    code, out, err = run(capsys, "--root", str(trail), "query", "--last", "2", "--limit", "1")
    assert code == 2 and out == "" and "--last" in err and "--limit" in err


def test_query_since_uses_the_seals_and_prints_what_a_scan_would(
    trail: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "--root", str(trail), "query", "--since", str(T0 + 8.5 * HOUR))
    assert code == 0
    assert out.splitlines() == segment_lines(trail)[9:]


def test_replay_at_a_time_is_the_state_then(
    trail: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    moment = "2026-01-01T05:30:00Z"
    code, out, _ = run(
        capsys, "--root", str(trail), "replay", "--domain", "shop", "--category", "orders",
        "--key-field", "id", "--at", moment,
    )  # fmt: skip
    assert code == 0
    expected = AuditReplayer(reader=AuditTrailReader(root_path=trail), key_field="id")
    result = expected.reconstruct_state(domain="shop", category="orders", as_of=T0 + 5.5 * HOUR)
    assert json.loads(out) == {
        "state": result.state,
        "last_event_id": result.last_event_id,
        "applied_events": result.applied_events,
    }
    assert {key: record["n"] for key, record in json.loads(out)["state"]["Order"].items()} == {
        "A-1": 4,
        "A-2": 3,
    }
    code, _, err = run(
        capsys, "--root", str(trail), "replay", "--domain", "shop", "--category", "orders",
        "--at", "yesterday",
    )  # fmt: skip
    assert code == 2 and "--at" in err


def test_history_for_a_person_and_as_json(trail: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record = ["--domain", "shop", "--category", "orders", "--model-name", "Order"]
    keyed = [*record, "--key-field", "id", "--key", "A-1"]
    code, out, _ = run(capsys, "--root", str(trail), "history", *keyed)
    assert code == 0
    blocks = out.strip().split("\n\n")
    assert [block.split()[0] for block in blocks] == ["#1", "#5", "#7", "#11"]
    assert blocks[0].splitlines()[0] == "#1  2026-01-01T00:00:00Z  create  by user-0"
    assert '  + status: "new"' in blocks[0]
    assert "  ~ n: 0 -> 4" in blocks[1]
    assert '  - status (was "new")' in blocks[3]
    code, out, _ = run(capsys, "--root", str(trail), "history", *keyed, "--json")
    entries = [json.loads(line) for line in out.splitlines()]
    expected = record_history(
        AuditTrailReader(root_path=trail), domain="shop", category="orders",
        model_name="Order", key_field="id", key="A-1",
    )  # fmt: skip
    assert entries == [entry.to_json() for entry in expected]
    code, out, err = run(capsys, "--root", str(trail), "history", *record, "--key", "A-1")
    assert code == 2 and "--key-field" in err
    code, out, err = run(
        capsys, "--root", str(trail), "history", *record[:4], "--model-name", "Nothing"
    )
    assert code == 1 and "no event" in err


def test_export_formats_and_filters(
    trail: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "--root", str(trail), "export", "--format", "jsonl")
    assert code == 0 and out.splitlines() == segment_lines(trail)
    target = tmp_path / "orders.csv"
    code, _, err = run(
        capsys, "--root", str(trail), "export", "--format", "csv", "--output", str(target),
        "--category", "orders", "--since", str(T0 + 3 * HOUR),
    )  # fmt: skip
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [int(row["event_id"]) for row in rows] == [4, 5, 7, 8, 10, 11]
    code, _, err = run(
        capsys, "--root", str(trail), "export", "--format", "csv", "--output", str(target)
    )
    assert code == 2 and "exists" in err
    pyarrow = pytest.importorskip("pyarrow.parquet")
    parquet = tmp_path / "all.parquet"
    code, _, err = run(
        capsys, "--root", str(trail), "export", "--format", "parquet", "--output", str(parquet)
    )
    assert code == 0, err
    assert pyarrow.read_table(parquet).column("event_id").to_pylist() == list(range(1, 13))


def test_query_follow_prints_new_events_until_interrupted(tmp_path: Path) -> None:
    root = tmp_path / "trail"
    with AuditTrailWriter(root_path=root) as writer:
        writer.append_event(
            domain="shop", category="orders", model_name="Order", operation="create",
            logical_user_id="u",
        )  # fmt: skip
    script = Path(sys.executable).with_name("trailstore")
    follower = subprocess.Popen(
        [str(script), "--root", str(root), "query", "--last", "1", "--follow"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    context = multiprocessing.get_context("spawn")
    reported = context.Queue()
    writers = [
        context.Process(target=append_and_report, args=(str(root), category, 40, reported))
        for category in ("orders", "invoices")
    ]
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=120)
    acknowledged = sorted(reported.get(timeout=10) for _ in range(80))
    assert follower.stdout is not None
    printed: list[int] = []

    def read_stdout() -> None:
        assert follower.stdout is not None
        for line in follower.stdout:
            printed.append(json.loads(line)["event_id"])

    reading = threading.Thread(target=read_stdout)
    reading.start()
    deadline = time.monotonic() + 30
    while len(printed) < 81 and time.monotonic() < deadline:
        time.sleep(0.05)
    follower.send_signal(signal.SIGINT)
    _, err = follower.communicate(timeout=30)
    reading.join(timeout=30)
    assert follower.returncode == 130
    assert b"Traceback" not in err
    assert printed == [1, *acknowledged]


@pytest.mark.parametrize("command", ["history", "export"])
def test_the_new_commands_have_help_with_examples(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    assert f"usage: trailstore {command}" in out
    assert f"examples:\n  trailstore {command}" in out
