"""Tamper evidence on local trails: the ``verify``, ``checkpoint`` and ``keygen`` commands,
events cut off behind a published checkpoint, trails of the original writer, and writers
meeting a tampered trail. (Every backend's attack suite is ``EvidenceConformance``.)"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trailstore import AuditTrailWriter
from trailstore.cli import main
from trailstore.evidence import Finding, Status, verify_trail
from trailstore.evidence.scan import scan
from trailstore.testing import sample_event


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write(root: Path, events: int, **settings: object) -> None:
    with AuditTrailWriter(root_path=root, max_file_size_bytes=2000, **settings) as writer:  # type: ignore[arg-type]
        for number in range(events):
            writer.append_event(**sample_event(number))


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where ``verify`` remembers checkpoints in these tests."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


def test_verify_says_intact_then_checks_only_what_is_new(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], state: Path
) -> None:
    root = tmp_path / "trail"
    write(root, 30)

    code, out, err = run(capsys, "verify", "--root", str(root))

    assert (code, err) == (0, "")
    assert out.startswith(f"trail {root}: intact\n")
    assert "checked from the first" in out and "cover events 1-30" in out
    write(root, 5)
    code, out, _ = run(capsys, "verify", "--root", str(root))
    assert code == 0
    assert "checked from trusted #" in out and "cover events 1-35" in out
    assert list((state / "trailstore" / "verified").iterdir())


def test_verify_names_the_tampered_event_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], state: Path
) -> None:
    root = tmp_path / "trail"
    write(root, 30)
    segment = root / "shop" / "orders" / "audit-000001.jsonl"
    lines = segment.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"user-1"', b'"mallory"')
    segment.write_bytes(b"".join(lines))

    code, out, _ = run(capsys, "verify", "--root", str(root), "--json")

    assert code == 1
    report = json.loads(out)
    assert report["status"] == "tampered"
    assert report["problems"][0]["kind"] == "changed"
    assert report["problems"][0]["stream"] == "shop/orders"
    assert report["problems"][0]["segment"] == 1
    assert report["problems"][0]["event_ids"] == [[3, 3]]
    assert not (state / "trailstore" / "verified").exists(), "nothing is trusted after a failure"


def test_a_trail_without_checkpoints_exits_3_until_checkpointed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], state: Path
) -> None:
    root = tmp_path / "trail"
    write(root, 12, checkpoints=False)

    code, out, _ = run(capsys, "verify", "--root", str(root))
    assert code == 3
    assert out.startswith(f"trail {root}: unverifiable")

    code, out, _ = run(capsys, "checkpoint", "--root", str(root))
    assert (code, out) == (0, "checkpoint 1: events 1-12\n")
    code, out, _ = run(capsys, "checkpoint", "--root", str(root))
    assert (code, out) == (0, "nothing new to checkpoint\n")
    assert run(capsys, "verify", "--root", str(root))[0] == 0


def test_keygen_signs_and_verify_checks_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], state: Path
) -> None:
    key, public = tmp_path / "trail.key", tmp_path / "trail.pub"
    code, out, _ = run(capsys, "keygen", "--private", str(key), "--public", str(public))
    assert code == 0 and f"trailstore verify --public-key {public}" in out
    assert key.stat().st_mode & 0o777 == 0o600
    assert run(capsys, "keygen", "--private", str(key), "--public", str(public))[0] == 2
    root = tmp_path / "trail"
    write(root, 10, signing_key=key)
    run(capsys, "keygen", "--private", str(tmp_path / "b.key"), "--public", str(tmp_path / "b.pub"))

    good = run(capsys, "verify", "--root", str(root), "--no-state", "--public-key", str(public))
    bad = run(
        capsys, "verify", "--root", str(root), "--no-state", "--public-key", str(tmp_path / "b.pub")
    )

    assert good[0] == 0 and "signed by key" in good[1]
    assert bad[0] == 1 and "bad-signature" in bad[1]


def test_a_bad_signing_key_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    (tmp_path / "not-a-key").write_text("hello")
    with pytest.raises(ValueError, match="not an unencrypted PEM private key"):
        AuditTrailWriter(root_path=tmp_path / "trail", signing_key=tmp_path / "not-a-key")
    assert not (tmp_path / "trail").exists()


def test_newest_events_cut_off_behind_a_checkpoint_are_caught(tmp_path: Path) -> None:
    root = tmp_path / "trail"
    write(root, 8)  # one segment, still open: the checkpoint at close covers all of it
    segment = root / "shop" / "orders" / "audit-000001.jsonl"
    lines = segment.read_bytes().splitlines(keepends=True)
    segment.write_bytes(b"".join(lines[:5]))

    report = verify_trail(root)

    assert report.status is Status.TAMPERED
    missing = [problem for problem in report.problems if problem.kind is Finding.MISSING]
    assert missing and missing[0].event_ids == ((6, 8),)


def test_a_trail_of_the_original_writer_continued_here_verifies_from_its_first_checkpoint(
    tmp_path: Path,
) -> None:
    root = tmp_path / "trail"
    stream = root / "shop" / "orders"
    stream.mkdir(parents=True)
    original = [
        json.dumps(
            {
                "event_id": n,
                "timestamp": 1.7e9 + n,
                "domain": "shop",
                "category": "orders",
                "model_name": "Order",
                "operation": "create",
                "logical_user_id": "legacy",
                "payload": {"after": {"id": n}},
            },
            separators=(",", ":"),
        )
        for n in range(1, 6)
    ]
    (stream / "audit-000001.jsonl").write_text("\n".join(original) + "\n")
    (root / "index.json").write_text('{"last_event_id": 5}')
    assert verify_trail(root).status is Status.UNVERIFIABLE

    write(root, 3)
    report = verify_trail(root, full=True)

    assert (report.status, report.problems, report.covered_events) == (Status.INTACT, [], 8)
    assert any("verification begins at checkpoint 1" in note for note in report.notes)


def test_a_writer_on_a_tampered_trail_keeps_appending_and_stops_checkpointing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "trail"
    write(root, 8)  # one open segment, covered by the checkpoint at close
    segment = root / "shop" / "orders" / "audit-000001.jsonl"
    lines = segment.read_bytes().splitlines(keepends=True)
    segment.write_bytes(b"".join(lines[:1] + lines[2:]))  # event 2 removed
    checkpoints = sorted((root / ".trailstore" / "evidence").iterdir())

    with caplog.at_level(logging.ERROR, logger="trailstore"):
        write(root, 30, checkpoint_every=5)

    assert sorted((root / ".trailstore" / "evidence").iterdir()) == checkpoints
    assert "could not checkpoint" in caplog.text
    report = verify_trail(root, full=True)
    assert report.status is Status.TAMPERED
    assert report.problems[0].event_ids == ((2, 2),)


@given(
    st.lists(
        st.tuples(
            st.integers(1, 10**18),
            st.floats(allow_nan=False, allow_infinity=False),
            st.sampled_from(["ours", "reordered", "nested", "junk"]),
        ),
        max_size=30,
    )
)
def test_scanning_lines_fast_agrees_with_parsing_each(
    lines: list[tuple[int, float, str]],
) -> None:
    rendered = []
    for event_id, moment, shape in lines:
        document: dict[str, object] = {"event_id": event_id, "timestamp": moment, "domain": "d"}
        if shape == "reordered":
            document = {"timestamp": moment, "event_id": event_id}
        elif shape == "nested":
            document["payload"] = {"after": {"event_id": 1, "timestamp": 2}}
        text = "not json" if shape == "junk" else json.dumps(document, separators=(",", ":"))
        rendered.append(text.encode() + b"\n")
    data = b"".join(rendered)

    found = scan(data, len(data))

    expected = [json_fields(line) for line in rendered]
    assert list(zip(found.ids, found.timestamps, strict=True)) == expected
    assert found.starts == [sum(map(len, rendered[:n])) for n in range(len(rendered))]


def json_fields(line: bytes) -> tuple[int | None, float | None]:
    try:
        document = json.loads(line)
    except ValueError:
        return None, None
    return document["event_id"], float(document["timestamp"])


def test_a_byte_changed_in_a_field_name_is_placed_at_its_event(tmp_path: Path) -> None:
    """A line whose ``timestamp`` name lost a quote is no longer an event, but it still stands
    where event 2 stood: verify names that event as changed, not as missing plus junk."""
    root = tmp_path / "trail"
    write(root, 4)
    segment = root / "shop" / "orders" / "audit-000001.jsonl"
    lines = segment.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"timestamp"', b'"timestampx', 1)  # and not JSON
    segment.write_bytes(b"".join(lines))

    report = verify_trail(root, full=True)

    assert [(p.kind, p.event_ids) for p in report.problems] == [(Finding.CHANGED, ((2, 2),))]
