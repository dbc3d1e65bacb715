"""The counter's persisted forms (the counter file and ``index.json``) damaged between or
under writers. The SIGKILL runs themselves are the crash kit's, in the conformance suite
(``tests/test_conformance.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trailstore import AuditTrailReader, AuditTrailWriter
from trailstore.coordinators.local_lock import COUNTER_NAME
from trailstore.testing import sample_event

# -- the counter's persisted forms, damaged between writers ------------------------------------


def _write(root: Path, count: int) -> None:
    with AuditTrailWriter(root_path=root, max_file_size_bytes=600) as writer:
        for i in range(count):
            writer.append_event(**sample_event(i, category=("a", "b")[i % 2]))


def _ids(root: Path) -> list[int]:
    return [event.event_id for event in AuditTrailReader(root_path=root).iter_events()]


@pytest.mark.parametrize("counter", [b"", b"garbage\n", b"-5\n", b"\x00" * 30, None])
def test_garbage_or_missing_counter_file_is_rebuilt_from_the_data(
    tmp_path: Path, counter: bytes | None
) -> None:
    _write(tmp_path, 12)
    lock = tmp_path / COUNTER_NAME
    if counter is None:
        lock.unlink()
    else:
        lock.write_bytes(counter)
    (tmp_path / "index.json").write_text(json.dumps({"last_event_id": 3}))
    _write(tmp_path, 3)
    assert _ids(tmp_path) == list(range(1, 16))


def test_index_ahead_of_the_data_is_kept_and_reported_as_a_gap(tmp_path: Path) -> None:
    _write(tmp_path, 4)
    (tmp_path / COUNTER_NAME).unlink()
    (tmp_path / "index.json").write_text(json.dumps({"last_event_id": 9}))
    _write(tmp_path, 1)
    reader = AuditTrailReader(root_path=tmp_path)
    assert [event.event_id for event in reader.iter_events()] == [1, 2, 3, 4, 10]
    assert reader.report.gaps == [(5, 9)]


def test_counter_file_garbled_while_a_writer_is_open_is_rebuilt(tmp_path: Path) -> None:
    with AuditTrailWriter(root_path=tmp_path) as writer:
        writer.append_event(**sample_event(0))
        (tmp_path / COUNTER_NAME).write_bytes(b"garbage")
        assert writer.append_event(**sample_event(1)).event_id == 2
    assert _ids(tmp_path) == [1, 2]


def test_counter_file_deleted_while_writers_are_open_keeps_ids_unique(tmp_path: Path) -> None:
    first = AuditTrailWriter(root_path=tmp_path)
    first.append_event(**sample_event(0))
    (tmp_path / COUNTER_NAME).unlink()
    second = AuditTrailWriter(root_path=tmp_path)
    returned = [second.append_event(**sample_event(1)).event_id]
    returned.append(first.append_event(**sample_event(2)).event_id)
    returned.append(second.append_event(**sample_event(3)).event_id)
    first.close()
    second.close()
    assert returned == [2, 3, 4]
    assert _ids(tmp_path) == [1, 2, 3, 4]
