"""The reader against damaged trails: it yields every intact event, reports the rest, never raises.

A template trail (three streams, many segments) is copied and damaged at random (hypothesis):
flipped bytes, truncations, zeroed ranges, garbage lines, foreign files and directories, a
directory named like a segment. An *intact* line is one still byte-equal to a line the writer
wrote, in the same file. Every intact line's event must be yielded, and every line must be
either yielded or counted in ``ReadReport``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trailstore import AuditTrailReader, AuditTrailWriter
from trailstore.backend import StreamKey, parse_segment_name
from trailstore.backends.local import LocalBackend
from trailstore.coordinators.local_lock import COUNTER_NAME
from trailstore.encoding import decode_line
from trailstore.events import AuditEvent
from trailstore.testing import sample_event

FAST = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
DEEP = settings(FAST, max_examples=1000)
STREAMS = ["orders", "refunds", "carts"]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("template")
    with AuditTrailWriter(root_path=root, max_file_size_bytes=900) as writer:
        for i in range(60):
            writer.append_event(**sample_event(i, category=STREAMS[i % 3]))
    return root


def _segments(root: Path) -> list[Path]:
    """The files the reader takes for segments: regular files named like one, in stream dirs."""
    return sorted(
        path
        for path in root.glob("*/*/*")
        if not path.parent.name.startswith(".")
        and not path.parent.parent.name.startswith(".")
        and path.is_file()
        and not path.is_symlink()
        and parse_segment_name(path.name) is not None
    )


def _lines(data: bytes) -> list[bytes]:
    """Lines as a file iterator splits them: on ``\\n`` only, the last one maybe unterminated."""
    parts = data.split(b"\n")
    lines = [part + b"\n" for part in parts[:-1]]
    return lines + ([parts[-1]] if parts[-1] else [])


GARBAGE = st.binary(min_size=1, max_size=40).filter(
    lambda b: b"event_id" not in b
) | st.sampled_from(
    [b"[" * 50_000, b"{" * 50_000, b"\xff\xfe\x00", b"null", b"[]", b"{}", b'"text"', b"1e999"]
)
#: damage that leaves every ID alone or makes its line unreadable
SAFE_DAMAGE = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0), st.integers(0)),
    st.tuples(st.just("zero"), st.integers(0), st.integers(0), st.integers(1, 64)),
    st.tuples(st.just("insert"), st.integers(0), st.integers(0), GARBAGE),
    st.tuples(st.just("delete"), st.integers(0)),
    st.tuples(st.just("foreign"), st.sampled_from(["", "shop", "shop/orders"]), GARBAGE),
    st.tuples(st.just("segment_dir"), st.sampled_from(STREAMS), st.integers(1, 40)),
)
FLIP = st.tuples(st.just("flip"), st.integers(0), st.integers(0), st.integers(1, 255))
DAMAGE = SAFE_DAMAGE | FLIP
#: for bounded reads: any damage, but at most one flipped byte (two can forge a whole order)
BOUNDED_DAMAGE = st.builds(
    list.__add__, st.lists(SAFE_DAMAGE, max_size=5), st.lists(FLIP, max_size=1)
)


def _damage(root: Path, damage: tuple[Any, ...]) -> None:
    kind, *args = damage
    segments = _segments(root)
    if kind in {"flip", "truncate", "zero", "insert", "delete"}:
        if not segments:
            return
        path = segments[args[0] % len(segments)]
        data = bytearray(path.read_bytes())
        offset = args[1] % (len(data) + 1) if kind != "delete" else 0
        if kind == "flip" and data:
            data[offset % len(data)] ^= args[2]
        elif kind == "truncate":
            del data[offset:]
        elif kind == "zero":
            data[offset : offset + args[2]] = bytes(len(data[offset : offset + args[2]]))
        elif kind == "insert":
            data[offset:offset] = args[2]
        if kind == "delete":
            path.unlink()
        else:
            path.write_bytes(bytes(data))
    elif kind == "foreign":
        directory = root / args[0]
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"foreign-{len(os.listdir(directory))}.txt").write_bytes(args[1])
    else:
        path = root / "shop" / args[0] / f"audit-{args[1]:06d}.jsonl"
        if not path.exists():
            path.mkdir()


def _intact(template: Path, damaged: Path) -> tuple[list[AuditEvent], int]:
    """Events of the lines that survived unchanged, and the number of lines of all segments."""
    original: dict[Path, set[bytes]] = {}
    for path in _segments(template):
        original[path.relative_to(template)] = set(_lines(path.read_bytes()))
    intact: list[AuditEvent] = []
    total = 0
    for path in _segments(damaged):
        lines = _lines(path.read_bytes())
        total += len(lines)
        kept = original.get(path.relative_to(damaged), set())
        intact.extend(decode_line(line) for line in lines if line in kept)
    return intact, total


@pytest.fixture
def copy_of(template: Path) -> Iterator[Any]:
    directories: list[str] = []

    def copy() -> Path:
        directory = tempfile.mkdtemp()
        directories.append(directory)
        root = Path(directory) / "trail"
        shutil.copytree(template, root)
        return root

    yield copy
    for directory in directories:
        shutil.rmtree(directory)


def _check_full_read(template: Path, root: Path) -> None:
    reader = AuditTrailReader(root_path=root)
    events = list(reader.iter_events())
    intact, total = _intact(template, root)
    for event in intact:
        assert event in events
    report = reader.report
    assert len(events) + report.malformed_lines + report.torn_lines == total
    assert report.missing_segments == 0
    bounded = AuditTrailReader(root_path=root)  # several damaged IDs may hide events from
    list(bounded.iter_events(min_event_id=20, max_event_id=40))  # it, but it never raises


def _check_bounded_read(template: Path, root: Path, low: int, high: int) -> None:
    reader = AuditTrailReader(root_path=root)
    events = list(reader.iter_events(min_event_id=low, max_event_id=high))
    intact, _ = _intact(template, root)
    for event in intact:
        if low <= event.event_id <= high:
            assert event in events


@FAST
@given(damages=st.lists(DAMAGE, min_size=1, max_size=6))
def test_reader_yields_every_intact_event_and_counts_the_rest(
    template: Path, copy_of: Any, damages: list[tuple[Any, ...]]
) -> None:
    root = copy_of()
    for damage in damages:
        _damage(root, damage)
    _check_full_read(template, root)


@FAST
@given(
    damages=BOUNDED_DAMAGE,
    low=st.integers(1, 60),
    span=st.integers(0, 60),
)
def test_bounded_read_yields_every_intact_event_in_range(
    template: Path, copy_of: Any, damages: list[tuple[Any, ...]], low: int, span: int
) -> None:
    """Bounded reads trust ID order to skip segments and stop early; one damaged ID must not
    hide intact events from them."""
    root = copy_of()
    for damage in damages:
        _damage(root, damage)
    _check_bounded_read(template, root, low, low + span)


@pytest.mark.slow
@DEEP
@given(damages=st.lists(DAMAGE, min_size=1, max_size=12))
def test_reader_against_random_damage_deep(
    template: Path, copy_of: Any, damages: list[tuple[Any, ...]]
) -> None:
    root = copy_of()
    for damage in damages:
        _damage(root, damage)
    _check_full_read(template, root)


@pytest.mark.slow
@DEEP
@given(
    damages=BOUNDED_DAMAGE,
    low=st.integers(1, 60),
    span=st.integers(0, 60),
)
def test_bounded_read_against_random_damage_deep(
    template: Path, copy_of: Any, damages: list[tuple[Any, ...]], low: int, span: int
) -> None:
    root = copy_of()
    for damage in damages:
        _damage(root, damage)
    _check_bounded_read(template, root, low, low + span)


# -- the trail changing under the reader ------------------------------------------------------


def _vanishing(root: Path, replace_with_directory: bool) -> Any:
    """``list_segments`` that removes the second segment of ``orders`` right after listing it."""
    real = LocalBackend.list_segments

    def list_segments(backend: LocalBackend, stream: StreamKey) -> list[int]:
        numbers = real(backend, stream)
        if stream.category == "orders":
            path = root / stream.domain / stream.category / f"audit-{numbers[1]:06d}.jsonl"
            path.unlink()
            if replace_with_directory:
                path.mkdir()
        return numbers

    return list_segments


@pytest.mark.parametrize("replace_with_directory", [False, True])
@pytest.mark.parametrize("bounded", [False, True])
def test_segment_gone_between_listing_and_reading_is_reported(
    template: Path,
    copy_of: Any,
    monkeypatch: pytest.MonkeyPatch,
    replace_with_directory: bool,
    bounded: bool,
) -> None:
    root = copy_of()
    second = sorted((root / "shop" / "orders").glob("audit-*.jsonl"))[1]
    lost = {decode_line(line).event_id for line in _lines(second.read_bytes())}
    monkeypatch.setattr(LocalBackend, "list_segments", _vanishing(root, replace_with_directory))
    reader = AuditTrailReader(root_path=root)
    filters: dict[str, Any] = {"min_event_id": 1, "max_event_id": 60} if bounded else {}
    ids = [event.event_id for event in reader.iter_events(**filters)]
    assert ids == sorted(set(range(1, 61)) - lost)
    assert reader.report.missing_segments == 1


@pytest.mark.parametrize("name", ["index.json", COUNTER_NAME])
@pytest.mark.parametrize("kind", ["directory", "nested", "huge", "binary"])
def test_hostile_counter_files_do_not_stop_the_reader(
    template: Path, copy_of: Any, name: str, kind: str
) -> None:
    root = copy_of()
    path = root / name
    path.unlink()
    if kind == "directory":
        path.mkdir()
    else:
        contents = {
            "nested": b"[" * 100_000,
            "huge": json.dumps({"last_event_id": 10**40}).encode(),
            "binary": os.urandom(64),
        }
        path.write_bytes(contents[kind])
    reader = AuditTrailReader(root_path=root)
    assert [event.event_id for event in reader.iter_events()] == list(range(1, 61))


@pytest.mark.parametrize(
    "garbage",
    [b"[" * 100_000, b'{"event_id":' + b"9" * 5000 + b',"timestamp":1}'],
    ids=["deeply-nested", "5000-digit-id"],
)
def test_hostile_last_line_does_not_stop_reader_or_writer(
    template: Path, copy_of: Any, garbage: bytes
) -> None:
    root = copy_of()
    last = sorted((root / "shop" / "orders").glob("audit-*.jsonl"))[-1]
    with open(last, "ab") as out:
        out.write(garbage + b"\n")
    reader = AuditTrailReader(root_path=root)
    assert len(list(reader.iter_events(min_event_id=2))) == 59
    assert reader.report.malformed_lines == 1
    with AuditTrailWriter(root_path=root) as writer:
        assert writer.append_event(**sample_event(0)).event_id == 61


def _set_id(path: Path, line_number: int, event_id: int) -> int:
    """Rewrite the ``event_id`` of one line (a damaged ID that still parses); return the old."""
    lines = _lines(path.read_bytes())
    old = decode_line(lines[line_number]).event_id
    lines[line_number] = lines[line_number].replace(b":%d," % old, b":%d," % event_id, 1)
    path.write_bytes(b"".join(lines))
    return old


@pytest.mark.parametrize("line_number", [0, 1])
def test_one_id_damaged_upwards_hides_nothing_from_a_max_event_id_read(
    template: Path, copy_of: Any, line_number: int
) -> None:
    root = copy_of()
    second = sorted((root / "shop" / "orders").glob("audit-*.jsonl"))[1]
    damaged = _set_id(second, line_number, 999)
    reader = AuditTrailReader(root_path=root)
    ids = [event.event_id for event in reader.iter_events(max_event_id=45)]
    assert ids == [i for i in range(1, 46) if i != damaged]


def test_first_id_of_a_segment_damaged_downwards_hides_nothing_from_a_min_event_id_read(
    template: Path, copy_of: Any
) -> None:
    root = copy_of()
    segments = sorted((root / "shop" / "orders").glob("audit-*.jsonl"))
    damaged = _set_id(segments[2], 0, 2)
    low = damaged - 4  # held by the segment before the damaged one
    reader = AuditTrailReader(root_path=root)
    ids = [event.event_id for event in reader.iter_events(min_event_id=low)]
    assert ids == [i for i in range(low, 61) if i != damaged]
