"""The ``trailstore`` command line, run in-process through ``main`` (and once as a script)."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

import trailstore
from trailstore import (
    AuditPayload,
    AuditReplayer,
    AuditTrailReader,
    AuditTrailWriter,
    StreamKey,
)
from trailstore.cli import main, reading
from trailstore.demo import WORKLOAD_STREAMS, Workload
from trailstore.testing import sample_event

DAY = 86_400.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the command line; return (exit code, stdout, stderr)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def lines(out: str) -> list[dict[str, Any]]:
    """Parse every stdout line on its own, as ``jq`` would."""
    return [json.loads(line) for line in out.splitlines()]


def segment_lines(root: Path) -> list[str]:
    return [
        line
        for path in sorted(root.glob("*/*/audit-*.jsonl"))
        for line in path.read_text().splitlines()
    ]


@pytest.fixture
def trail(tmp_path: Path) -> Path:
    """A trail of 9 events, one per day from T0, over three streams and two models."""
    root = tmp_path / "trail"
    plan = [
        ("shop", "orders", "Order"),
        ("shop", "customers", "Customer"),
        ("billing", "invoices", "Invoice"),
    ]
    with AuditTrailWriter(root_path=root) as writer:
        for number in range(9):
            domain, category, model = plan[number % 3]
            writer.append_event(
                domain=domain,
                category=category,
                model_name="Refund" if number == 8 else model,
                operation="create",
                logical_user_id="u-1",
                payload=AuditPayload.from_create({"id": number, "note": "x" * number}),
                timestamp=T0 + number * DAY,
            )
    return root


# -- append ------------------------------------------------------------------------------------


def test_append_from_flags_prints_each_persisted_event(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = str(tmp_path / "t")
    before, after = '{"id": 1, "total": 30}', '{"id": 1, "total": 35, "coupon": "X"}'
    base = ["append", "--domain", "shop", "--category", "orders", "--model-name", "Order"]
    base += ["--user", "u7", "--operation"]
    update = [*base, "update", "--before", before, "--after", after, "--request-id", "r9"]
    outputs = [
        run(capsys, "--root", root, *base, "create", "--after", before),
        run(capsys, *update, "--root", root),
        run(capsys, "--root", root, *base, "delete", "--before", after),
    ]

    assert [code for code, _, _ in outputs] == [0, 0, 0]
    printed = [out for _, out, _ in outputs]
    assert [line for out in printed for line in out.splitlines()] == segment_lines(Path(root))
    created, updated, deleted = (lines(out)[0] for out in printed)
    assert [created["event_id"], updated["event_id"], deleted["event_id"]] == [1, 2, 3]
    assert created["payload"] == {"after": {"id": 1, "total": 30}}
    assert updated["request_id"] == "r9"
    assert updated["payload"]["delta"] == {
        "total": {"old": 30, "new": 35},
        "coupon": {"new": "X"},
    }
    assert deleted["operation"] == "delete"
    assert deleted["payload"] == {"before": {"id": 1, "total": 35, "coupon": "X"}}


def test_append_from_stdin_with_root_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAILSTORE_ROOT", str(tmp_path))
    event = {
        "domain": "hr",
        "category": "employees",
        "model_name": "Employee",
        "operation": "update",
        "logical_user_id": "svc-hr",
        "request_id": "r-1",
        "timestamp": "2026-01-02T00:00:00Z",
        "payload": {"before": {"id": 4, "title": "lead"}, "after": {"id": 4, "title": "cto"}},
    }
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(event)))

    code, out, err = run(capsys, "append", "--stdin", "--durability", "flush")

    assert (code, err) == (0, "")
    [printed] = lines(out)
    assert printed["timestamp"] == T0 + DAY
    assert printed["payload"]["after"] == {"id": 4, "title": "cto"}
    assert out.splitlines() == segment_lines(tmp_path)


def test_append_rotates_at_max_file_size_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--root", str(tmp_path), "append", "--domain", "d", "--category", "c"]
    args += ["--model-name", "M", "--user", "u", "--operation", "create"]
    for number in range(3):
        record = json.dumps({"id": number, "blob": "b" * 300})
        assert run(capsys, *args, "--after", record, "--max-file-size-bytes", "500")[0] == 0

    assert len(list((tmp_path / "d" / "c").glob("audit-*.jsonl"))) == 3


# -- query -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "expected_ids"),
    [
        ([], list(range(1, 10))),
        (["--domain", "shop"], [1, 2, 4, 5, 7, 8]),
        (["--domain", "shop", "--category", "orders"], [1, 4, 7]),
        (["--category", "orders", "--category", "invoices"], [1, 3, 4, 6, 7, 9]),
        (["--model-name", "Invoice"], [3, 6]),
        (["--model-name", "Invoice", "--model-name", "Refund"], [3, 6, 9]),
        (["--min-id", "4", "--max-id", "6"], [4, 5, 6]),
        (["--since", "2026-01-03", "--until", "2026-01-05T00:00:00+00:00"], [3, 4, 5]),
        (["--since", str(T0 + 7 * DAY)], [8, 9]),
        (["--domain", "shop", "--limit", "2"], [1, 2]),
        (["--domain", "nowhere"], []),
    ],
)
def test_query_filters(
    trail: Path, capsys: pytest.CaptureFixture[str], filters: list[str], expected_ids: list[int]
) -> None:
    code, out, err = run(capsys, "--root", str(trail), "query", *filters)

    assert (code, err) == (0, "")
    assert [event["event_id"] for event in lines(out)] == expected_ids


def test_query_prints_segment_lines_verbatim(
    trail: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "query", "--root", str(trail))

    assert code == 0
    assert sorted(out.splitlines()) == sorted(segment_lines(trail))


def test_query_prints_lines_of_the_original_writer_byte_for_byte(
    trail: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = (
        '{"timestamp":1767225600.5,"event_id":10,"domain":"shop","category":"orders",'
        '"model_name":"Order","operation":"update","logical_user_id":"legacy",'
        '"payload":{"delta":{"rate":{"old":1e-05,"new":1E+300}}}}'
    )
    with (trail / "shop" / "orders" / "audit-000001.jsonl").open("a") as segment:
        segment.write(original + "\n")

    code, out, err = run(capsys, "--root", str(trail), "query", "--min-id", "9")

    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == original


def test_query_summarises_damage_on_stderr(trail: Path, capsys: pytest.CaptureFixture[str]) -> None:
    segment = trail / "shop" / "orders" / "audit-000001.jsonl"
    with segment.open("a") as out:
        out.write("this is not json\n")
        out.write('{"event_id": 10, "timest')  # torn: no newline

    code, out, err = run(capsys, "--root", str(trail), "query")

    assert code == 0
    assert len(lines(out)) == 9
    assert "1 malformed line(s), 1 torn line(s), 0 missing segment(s)" in err


def test_query_of_a_missing_trail_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--root", str(tmp_path / "absent"), "query")

    assert (code, out) == (1, "")
    assert err == (
        f"trailstore: error: no trail at {tmp_path / 'absent'}: it holds no index.json and no "
        "segment\n"
    )


def test_commands_on_a_directory_that_is_not_a_trail_fail_and_say_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ssh" / "keys").mkdir(parents=True)  # streams, if it were a trail
    (tmp_path / "ssh" / "keys" / "id.pub").write_text("key")
    (tmp_path / "hosts").write_text("127.0.0.1 localhost")

    for command in (["stats"], ["query"], ["replay", "--domain", "a", "--category", "b"]):
        code, out, err = run(capsys, "--root", str(tmp_path), *command)
        assert (code, out) == (1, "")
        assert err.startswith(f"trailstore: error: no trail at {tmp_path}:")

    code, out, err = run(capsys, "--root", str(tmp_path / "hosts"), "stats")
    assert (code, out) == (1, "")
    assert err == f"trailstore: error: trail root {tmp_path / 'hosts'} is not a directory\n"
    assert sorted(path.name for path in tmp_path.rglob("*")) == ["hosts", "id.pub", "keys", "ssh"]


def test_version_is_the_installed_distribution_version(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "--version")

    assert code == 0
    assert out == f"trailstore {version('trailstore')}\n"
    assert trailstore.__version__ == version("trailstore")


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("trailstore qu", ["plain,query"]),
        ("trailstore query --do", ["plain,--domain"]),
        ("trailstore append --operation ", ["plain,create", "plain,update", "plain,delete"]),
    ],
)
def test_shell_completion_completes_commands_flags_and_choices(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    words: str,
    expected: list[str],
) -> None:
    monkeypatch.setenv("_TRAILSTORE_COMPLETE", "bash_complete")
    monkeypatch.setenv("COMP_WORDS", words)
    monkeypatch.setenv("COMP_CWORD", str(len(words.split(" ")) - 1))

    code, out, _ = run(capsys)

    assert (code, out.splitlines()) == (0, expected)


def test_the_completion_the_help_describes_installs_in_bash(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, out, _ = run(capsys, "--help")
    [line] = [line for line in out.splitlines() if "bash_source" in line]
    enable = line.partition("#")[0].strip()
    assert enable == 'eval "$(_TRAILSTORE_COMPLETE=bash_source trailstore)"'
    script = Path(sys.executable).with_name("trailstore")
    environment = {**os.environ, "PATH": f"{script.parent}{os.pathsep}{os.environ['PATH']}"}

    shown = subprocess.run(
        ["bash", "-c", f"{enable} && complete -p trailstore"],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )

    assert shown.stdout == "complete -o nosort -F _trailstore_completion trailstore\n"


# -- replay ------------------------------------------------------------------------------------


def test_replay_prints_what_the_replayer_computes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workload = Workload(seed=3)
    with AuditTrailWriter(root_path=tmp_path, durability="flush") as writer:
        writer.append_events(workload.events(300))
    replayer = AuditReplayer(reader=AuditTrailReader(root_path=tmp_path))
    expected = replayer.reconstruct_state(domain="billing", category="invoices", max_event_id=250)

    replay = ["replay", "--domain", "billing", "--category", "invoices"]
    replay += ["--max-id", "250", "--indent", "2"]

    code, out, err = run(capsys, "--root", str(tmp_path), *replay)

    assert (code, err) == (0, "")
    assert json.loads(out) == dataclasses.asdict(expected)
    assert expected.applied_events > 20
    assert set(expected.state) == {"Invoice", "CreditNote"}


def test_updates_appended_with_a_key_field_replay_by_that_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = ["--root", str(tmp_path)]
    flags = ["--domain", "shop", "--category", "orders", "--model-name", "Order", "--user", "u"]
    for number in (7, 8):
        run(capsys, *root, "append", *flags, "--operation", "create", "--after",
            json.dumps({"id": number, "total": 30}))  # fmt: skip
    code, _, err = run(
        capsys, *root, "append", *flags, "--operation", "update", "--key-field", "id",
        "--before", '{"id": 7, "total": 30}', "--after", '{"id": 7, "total": 35}',
    )  # fmt: skip
    assert (code, err) == (0, "")

    code, out, err = run(
        capsys, *root, "replay", "--domain", "shop", "--category", "orders", "--key-field", "id"
    )

    assert (code, err) == (0, "")
    assert json.loads(out)["state"] == {
        "Order": {"7": {"id": 7, "total": 35}, "8": {"id": 8, "total": 30}}
    }


def test_replay_of_a_stream_the_trail_does_not_hold_fails(
    trail: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(
        capsys, "--root", str(trail), "replay", "--domain", "shop", "--category", "order"
    )

    assert (code, out) == (1, "")
    assert err == (
        f"trailstore: error: no stream shop/order in {trail} (its streams: billing/invoices, "
        "shop/customers, shop/orders)\n"
    )


def test_replay_model_filter_and_key_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with AuditTrailWriter(root_path=tmp_path) as writer:
        for model, sku in (("Item", "a"), ("Item", "b"), ("Box", "c")):
            writer.append_event(
                domain="shop",
                category="stock",
                model_name=model,
                operation="create",
                logical_user_id="u",
                payload=AuditPayload.from_create({"sku": sku, "n": 1}),
            )

    replay = ["replay", "--domain", "shop", "--category", "stock"]
    replay += ["--model-name", "Item", "--key-field", "sku"]

    code, out, _ = run(capsys, "--root", str(tmp_path), *replay)

    assert code == 0
    assert json.loads(out) == {
        "state": {"Item": {"a": {"sku": "a", "n": 1}, "b": {"sku": "b", "n": 1}}},
        "last_event_id": 2,
        "applied_events": 2,
    }


# -- stats -------------------------------------------------------------------------------------


def test_stats_counts_segments_events_bytes_and_id_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with AuditTrailWriter(root_path=tmp_path, max_file_size_bytes=2048) as writer:
        for number in range(23):
            writer.append_event(
                domain="a" if number < 20 else "b",
                category="c",
                model_name="M",
                operation="create",
                logical_user_id="u",
                payload=AuditPayload.from_create({"id": number, "pad": "p" * 200}),
            )
    segments_a = len(list((tmp_path / "a" / "c").glob("audit-*.jsonl")))
    bytes_b = (tmp_path / "b" / "c" / "audit-000001.jsonl").stat().st_size

    code, out, err = run(capsys, "stats", "--root", str(tmp_path), "--json")

    assert (code, err) == (0, "")
    stats = json.loads(out)
    assert segments_a > 1
    assert stats["streams"] == [
        {
            "stream": "a/c",
            "segments": segments_a,
            "events": 20,
            "bytes": sum(path.stat().st_size for path in (tmp_path / "a" / "c").glob("*.jsonl")),
            "min_event_id": 1,
            "max_event_id": 20,
        },
        {
            "stream": "b/c",
            "segments": 1,
            "events": 3,
            "bytes": bytes_b,
            "min_event_id": 21,
            "max_event_id": 23,
        },
    ]
    assert stats["total"]["events"] == 23
    assert stats["total"]["segments"] == segments_a + 1
    assert (stats["total"]["min_event_id"], stats["total"]["max_event_id"]) == (1, 23)
    assert stats["last_event_id"] == 23
    assert stats["damage"]["gaps"] == []

    code, table, _ = run(capsys, "stats", "--root", str(tmp_path))
    assert code == 0
    rows = [row.split() for row in table.splitlines()]
    assert ["b/c", "1", "3", str(bytes_b), "21", "23"] in rows
    assert ["total", str(segments_a + 1), "23"] in [row[:3] for row in rows]


def test_stats_says_how_writers_are_coordinated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whether writers may run on several hosts is the one thing a deployment must know."""
    with AuditTrailWriter(root_path=tmp_path) as writer:
        writer.append_event(**sample_event(0))

    code, table, _ = run(capsys, "stats", "--root", str(tmp_path))
    assert code == 0
    assert "writers: a lock on this host: every writer must run on it" in table.splitlines()
    code, out, _ = run(capsys, "stats", "--root", str(tmp_path), "--json")
    assert json.loads(out)["coordination"] == "a lock on this host: every writer must run on it"


def test_stats_reports_damage(trail: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (trail / "billing" / "invoices" / "audit-000001.jsonl").write_text("garbage\n")

    code, out, _ = run(capsys, "--root", str(trail), "stats", "--json")

    assert code == 0
    stats = json.loads(out)
    assert stats["damage"]["malformed_lines"] == 1
    assert stats["damage"]["gaps"] == [[3, 3], [6, 6], [9, 9]]
    assert stats["total"]["events"] == 6


# -- demo --------------------------------------------------------------------------------------


def test_demo_rotates_replays_and_continues(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "demo"
    argv = ["demo", "--root", str(root), "--events", "400", "--max-file-size-bytes", "16384"]

    code, out, err = run(capsys, *argv, "--progress")

    assert code == 0
    assert "replay matches: yes" in out
    assert "wrote events #1..#400" in out
    assert "400/400" in err
    segments = [len(list((root / str(s)).glob("audit-*.jsonl"))) for s in WORKLOAD_STREAMS]
    assert min(segments) >= 1
    assert max(segments) > 1  # rotated

    code, out, err = run(capsys, *argv, "--no-progress")

    assert (code, err) == (0, "")
    assert "continuing" in out
    assert "wrote events #401..#800" in out
    assert "replay matches: yes" in out
    assert len(list(AuditTrailReader(root_path=root).iter_events())) == 800


def test_demo_refuses_a_directory_that_is_not_a_trail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("mine")

    code, out, err = run(capsys, "demo", "--root", str(tmp_path), "--events", "10")

    assert (code, out) == (2, "")
    assert "refusing to write the demo" in err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]


def test_demo_refuses_a_trail_with_other_streams(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with AuditTrailWriter(root_path=tmp_path) as writer:
        writer.append_event(
            domain="ops",
            category="deploys",
            model_name="Deploy",
            operation="create",
            logical_user_id="u",
            payload=AuditPayload.from_create({"id": 1}),
        )

    code, _, err = run(capsys, "demo", "--root", str(tmp_path), "--events", "10")

    assert code == 2
    assert "streams the demo does not write (ops/deploys)" in err
    assert AuditTrailReader(root_path=tmp_path).streams() == [StreamKey("ops", "deploys")]


def test_workload_is_deterministic_and_realistic() -> None:
    first = [event["payload"].model_dump_json() for event in Workload(seed=5).events(500)]
    again = [event["payload"].model_dump_json() for event in Workload(seed=5).events(500)]
    other = [event["payload"].model_dump_json() for event in Workload(seed=6).events(500)]

    assert first == again
    assert first != other
    operations = [event["operation"].value for event in Workload(seed=5).events(500)]
    assert {"create", "update", "delete"} == set(operations)
    records = sorted(
        len(payload) for payload, op in zip(first, operations, strict=True) if op != "update"
    )
    assert records[len(records) // 20] >= 200  # whole records: creates and deletes
    assert records[-len(records) // 20] <= 2000
    updates = sorted(
        len(payload) for payload, op in zip(first, operations, strict=True) if op == "update"
    )
    assert updates[len(updates) // 2] < records[len(records) // 2] / 1.5  # sparse deltas


# -- errors ------------------------------------------------------------------------------------


STREAM_FLAGS = ["--category", "c", "--model-name", "M", "--user", "u"]


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (
            ["append", "--domain", "..", *STREAM_FLAGS, "--operation", "create", "--after", "{}"],
            None,
            "trailstore: error: domain '..' must not start with '.' (reserved)\n",
        ),
        (
            ["append", "--domain", "d", *STREAM_FLAGS, "--operation", "create", "--after", "{x"],
            None,
            "argument --after: invalid JSON",
        ),
        (
            ["append", "--domain", "d", *STREAM_FLAGS, "--operation", "merge", "--after", "{}"],
            None,
            "argument --operation: invalid choice: 'merge'",
        ),
        (
            ["append", "--domain", "d", *STREAM_FLAGS, "--operation", "update", "--after", "{}"],
            None,
            "trailstore: error: --operation update needs --before JSON_OBJECT\n",
        ),
        (
            ["append", "--domain", "d", "--operation", "create", "--after", "{}"],
            None,
            "trailstore: error: append needs --category, --model-name, --user (or --stdin)\n",
        ),
        (["append", "--stdin"], "{not json", "trailstore: error: stdin is not valid JSON"),
        (
            ["append", "--stdin"],
            '{"domain": "d", "category": "c", "model_name": "M", "operation": "merge", '
            '"logical_user_id": "u"}',
            "trailstore: error: unknown operation 'merge': choose from create, update, delete\n",
        ),
        (
            ["append", "--stdin"],
            '{"domain": "d", "category": "c", "model_name": "M", "operation": "create", '
            '"logical_user_id": "u", "payload": {"after": [1]}}',
            "trailstore: error: invalid audit event: payload.after: Input should be a valid "
            "dictionary\n",
        ),
        (
            ["append", "--stdin"],
            '{"domain": "d", "category": "c", "model_name": "M", "operation": "create", '
            '"logical_user_id": "u", "who": "me"}',
            "trailstore: error: unknown key(s) on stdin: who;",
        ),
        (
            [
                *("append", "--domain", "d", *STREAM_FLAGS),
                *("--operation", "create", "--after", '{"x": NaN}'),
            ],
            None,
            "argument --after: invalid JSON (NaN is not JSON) (see trailstore append --help)\n",
        ),
        (
            ["append", "--stdin"],
            '{"domain": "d", "category": "c", "model_name": "M", "operation": "create", '
            '"logical_user_id": "u", "payload": {"after": {"x": Infinity}}}',
            "trailstore: error: stdin is not valid JSON (Infinity is not JSON)\n",
        ),
        (
            [
                *("append", "--domain", "d", *STREAM_FLAGS, "--operation", "update"),
                *("--before", "{}", "--after", '{"big": 1e999}'),
            ],
            None,
            "argument --after: invalid JSON (number 1e999 is out of range) (see",
        ),
        (
            [
                *("append", "--domain", "d", "--category", "c", "--model-name", ""),
                *("--user", "u", "--operation", "create", "--after", "{}"),
            ],
            None,
            "trailstore: error: model_name must not be empty or blank\n",
        ),
        (["query", "--domain", "a/b"], None, "trailstore: error: domain 'a/b' must not contain"),
        (["query", "--since", "yesterday"], None, "expected Unix seconds or ISO-8601"),
        (["--storage-option", "novalue", "stats"], None, "expected KEY=VALUE, got 'novalue'"),
    ],
)
def test_bad_invocations_exit_2_with_one_clear_message(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    stdin: str | None,
    message: str,
) -> None:
    monkeypatch.setenv("TRAILSTORE_ROOT", str(tmp_path))
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))

    code, out, err = run(capsys, *argv)

    assert (code, out) == (2, "")
    assert message in err
    assert err.count("\n") == 1, err  # one line, not a usage block
    assert "Traceback" not in err
    assert not list(tmp_path.glob("*/*/audit-*.jsonl"))  # nothing written


def test_a_bad_name_leaves_no_trace_and_spends_no_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--root", str(tmp_path), "append", *STREAM_FLAGS, "--operation", "create"]

    assert run(capsys, *argv, "--domain", "a\\b", "--after", "{}")[0] == 2
    assert list(tmp_path.iterdir()) == []
    code, out, _ = run(capsys, *argv, "--domain", "ab", "--after", "{}")
    assert code == 0
    assert lines(out)[0]["event_id"] == 1


def test_missing_root_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TRAILSTORE_ROOT", raising=False)

    code, _, err = run(capsys, "stats")

    assert code == 2
    assert err == (
        "trailstore: error: no trail root: pass --root PATH_OR_URL or set TRAILSTORE_ROOT\n"
    )


def test_storage_failure_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    argv = ["--root", str(not_a_directory), "append", "--domain", "d", *STREAM_FLAGS]

    code, out, err = run(capsys, *argv, "--operation", "create", "--after", "{}")

    assert (code, out) == (1, "")
    assert err == f"trailstore: error: trail root {not_a_directory} exists and is not a directory\n"


def test_storage_options_from_both_positions_reach_the_backend(
    trail: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []

    class RecordingReader(AuditTrailReader):
        def __init__(self, *, root_path: str, storage_options: dict[str, Any], **rest: Any) -> None:
            seen.append(storage_options)
            super().__init__(root_path=root_path, storage_options=storage_options, **rest)

    monkeypatch.setattr(reading, "AuditTrailReader", RecordingReader)

    before = ["--root", str(trail), "--storage-option", "anon=true"]
    after = ["--storage-option", "endpoint_url=http://127.0.0.1:9000", "--storage-option", "n=3"]

    code, _, _ = run(capsys, *before, "stats", *after)

    assert code == 0
    assert seen == [{"anon": True, "endpoint_url": "http://127.0.0.1:9000", "n": 3}]


@pytest.mark.parametrize("command", ["append", "query", "replay", "stats", "demo"])
def test_every_command_has_help_with_examples(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    code, out, _ = run(capsys, command, "--help")

    assert code == 0
    assert f"usage: trailstore {command}" in out
    assert f"examples:\n  trailstore {command}" in out


# -- the installed script ----------------------------------------------------------------------


def test_console_script_streams_and_stops_quietly_when_the_pipe_closes(tmp_path: Path) -> None:
    with AuditTrailWriter(root_path=tmp_path, durability="flush") as writer:
        writer.append_events(Workload(seed=1).events(1500))  # ~1 MB of output
    script = Path(sys.executable).with_name("trailstore")

    process = subprocess.Popen(
        [str(script), "--root", str(tmp_path), "query"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    first = json.loads(process.stdout.readline())
    process.stdout.close()  # like `| head -1`
    stderr = process.stderr.read().decode()
    process.stderr.close()

    assert process.wait(timeout=60) == 0
    assert first["event_id"] == 1
    assert stderr == ""


@pytest.mark.parametrize("started_as", ["on-path", "relative-path", "absolute-path"])
def test_the_commands_the_demo_suggests_work_as_printed(tmp_path: Path, started_as: str) -> None:
    """As after ``make demo`` (``.venv/bin/trailstore demo``), or with the script on PATH."""
    script = Path(sys.executable).with_name("trailstore")
    bin_dir = str(script.parent)
    path = [entry for entry in os.environ.get("PATH", "").split(os.pathsep) if entry != bin_dir]
    if started_as == "on-path":
        path.insert(0, bin_dir)
    environment = {**os.environ, "PATH": os.pathsep.join(path)}
    environment["XDG_STATE_HOME"] = str(tmp_path / "state")  # where verify remembers the trail
    environment.pop("TRAILSTORE_ROOT", None)
    cwd = script.parents[2] if started_as == "relative-path" else tmp_path
    started = {
        "on-path": "trailstore",
        "relative-path": os.path.relpath(script, cwd),
        "absolute-path": str(script),
    }[started_as]

    demo = subprocess.run(
        [started, "demo", "--events", "200", "--root", str(tmp_path / "demo")],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    suggested = [
        line.removeprefix("try:").strip()
        for line in demo.stdout.splitlines()
        if line.startswith(("try:", "     "))
    ]

    assert len(suggested) == 4
    assert all(command.startswith(f"{started} --root ") for command in suggested)
    for command in suggested:
        result = subprocess.run(
            command, shell=True, cwd=cwd, env=environment, capture_output=True, text=True
        )
        assert (result.returncode, result.stderr) == (0, ""), command
        assert result.stdout.strip()
