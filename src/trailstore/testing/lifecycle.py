"""Conformance tests for a trail's lifecycle with the backend under test as the archive: a
trail on local disk is archived there (compressed with every codec), pruned, and read and
verified across both tiers, also while a writer goes on appending; and a trail on the backend
under test is archived to a directory.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from trailstore.backend import StreamKey
from trailstore.evidence import Status, verify_trail
from trailstore.lifecycle import (
    Archive,
    Codec,
    RetentionRule,
    archive_trail,
    prune_trail,
)
from trailstore.lifecycle.codecs import parse_stored_name
from trailstore.reader import AuditTrailReader
from trailstore.registry import open_backend
from trailstore.writer import AuditTrailWriter

from .conformance import sample_event
from .evidence import STREAMS, EvidenceConformance

#: small segments and frequent checkpoints, so that a short trail has many sealed segments
TRAIL_SETTINGS: dict[str, Any] = {"max_file_size_bytes": 1500, "checkpoint_every": 5}


def write_local_trail(root: Path, numbers: range) -> dict[int, bytes]:
    """Append sample events ``numbers`` to the trail at ``root``; their lines by ID."""
    with AuditTrailWriter(root_path=root, **TRAIL_SETTINGS) as writer:
        for number in numbers:
            domain, category = STREAMS[number % len(STREAMS)]
            writer.append_event(**sample_event(number, domain=domain, category=category))
    return lines_by_id(str(root))


def lines_by_id(
    root: str, archive: str | None = None, archive_options: dict[str, Any] | None = None
) -> dict[int, bytes]:
    """Every line of a trail by ID, asserting that none is read twice and none is damaged."""
    reader = AuditTrailReader(root_path=root, archive=archive, archive_options=archive_options)
    found: dict[int, bytes] = {}
    for line in reader.iter_lines():
        event_id = int(line.split(b",", 1)[0].removeprefix(b'{"event_id":'))
        assert event_id not in found, f"event {event_id} read twice"
        found[event_id] = line
    assert list(found) == sorted(found), "events not in event_id order"
    assert reader.report.clean, reader.report
    return found


def check_archive(root: str, archive_url: str, options: dict[str, Any]) -> set[tuple[str, int]]:
    """Each segment in the archive is stored once, reads back as its seal describes, and has
    its seal beside it; returns the archived segments."""
    archive = Archive(archive_url, options)
    archived: set[tuple[str, int]] = set()
    try:
        for domain, category in STREAMS:
            stream = StreamKey(domain, category)
            stored = [parse_stored_name(name) for name in archive.names(stream)]
            numbers = [item[0] for item in stored if item is not None]
            assert len(numbers) == len(set(numbers)), f"{stream}: a segment stored twice"
            for number in numbers:
                seal = archive.seal(stream, number)
                assert seal is not None, f"{stream} segment {number} archived without its seal"
                assert archive.holds_copy(stream, number, seal), f"{stream} {number} differs"
                archived.add((str(stream), number))
    finally:
        archive.close()
    return archived


class LifecycleConformance(EvidenceConformance):
    """The backend under test as an archive (``trail_url``/``storage_options``), and as a
    trail archived to a directory."""

    @pytest.mark.parametrize("codec", [codec.value for codec in Codec])
    def test_an_archived_and_pruned_trail_reads_and_verifies_across_tiers(
        self, trail_url: str, storage_options: dict[str, Any], tmp_path: Path, codec: str
    ) -> None:
        root = tmp_path / "archived-trail"
        written = write_local_trail(root, range(150))
        report = archive_trail(str(root), trail_url, codec=codec, archive_options=storage_options)
        assert not report.problems
        assert report.segments_archived > 10 and report.checkpoints_archived > 0
        pruned = prune_trail(
            str(root), RetentionRule(before_id=100), archive=trail_url,
            archive_options=storage_options,
        )  # fmt: skip
        assert not pruned.problems and len(pruned.pruned) > 5
        assert {(str(s), n) for s, n in pruned.pruned} <= check_archive(
            str(root), trail_url, storage_options
        )
        local = lines_by_id(str(root))
        assert min(local) > 1 and set(local) < set(written)
        assert lines_by_id(str(root), trail_url, storage_options) == written
        alone = verify_trail(root, full=True)
        assert alone.status is Status.INTACT and alone.pruned_segments == len(pruned.pruned)
        tiers = verify_trail(root, full=True, archive=trail_url, archive_options=storage_options)
        assert tiers.status is Status.INTACT and tiers.pruned_segments == 0, tiers.problems
        assert tiers.bytes_checked > alone.bytes_checked

    def test_archiving_again_uploads_nothing_and_a_differing_copy_is_kept_not_pruned(
        self, trail_url: str, storage_options: dict[str, Any], tmp_path: Path
    ) -> None:
        root = tmp_path / "archived-trail"
        write_local_trail(root, range(90))
        first = archive_trail(str(root), trail_url, archive_options=storage_options)
        again = archive_trail(str(root), trail_url, archive_options=storage_options)
        assert again.segments_archived == again.checkpoints_archived == 0
        assert again.segments_present == first.segments_archived and not again.problems
        fs, archive_root = self.raw_storage(trail_url, storage_options)
        stream = StreamKey(*STREAMS[0])
        victim = f"{archive_root}/{stream.domain}/{stream.category}/audit-000001.jsonl.zst"
        fs.pipe_file(victim, Codec.ZSTD.compress(b'{"event_id":1}\n'))
        report = prune_trail(
            str(root), RetentionRule(keep_bytes=0), archive=trail_url,
            archive_options=storage_options,
        )  # fmt: skip
        assert any(f"{stream} segment 1:" in problem for problem in report.problems)
        assert all(key[0] != stream for key in report.pruned), "pruned behind a bad copy"
        assert 1 in open_backend(str(root)).list_segments(stream)
        assert report.pruned, "the other streams' verified copies are pruned"

    def test_writers_append_while_the_trail_is_archived_and_pruned(
        self, trail_url: str, storage_options: dict[str, Any], tmp_path: Path
    ) -> None:
        root = tmp_path / "archived-trail"
        write_local_trail(root, range(30))
        stop = threading.Event()
        written: list[int] = []

        def append() -> None:
            with AuditTrailWriter(root_path=root, **TRAIL_SETTINGS) as writer:
                number = 30
                while not stop.is_set() or number < 120:
                    domain, category = STREAMS[number % len(STREAMS)]
                    event = writer.append_event(
                        **sample_event(number, domain=domain, category=category)
                    )
                    written.append(event.event_id)
                    number += 1

        writer = threading.Thread(target=append)
        writer.start()
        pruned = 0
        try:
            for round_ in range(4):
                report = archive_trail(str(root), trail_url, archive_options=storage_options)
                assert not report.problems
                pruned += len(
                    prune_trail(
                        str(root), RetentionRule(keep_bytes=3000 * (4 - round_)),
                        archive=trail_url, archive_options=storage_options,
                    ).pruned
                )  # fmt: skip
        finally:
            stop.set()
            writer.join()
        assert pruned > 0
        everything = lines_by_id(str(root), trail_url, storage_options)
        assert set(written) <= set(everything) and len(everything) == len(written) + 30
        verified = verify_trail(root, full=True, archive=trail_url, archive_options=storage_options)
        assert verified.status is Status.INTACT, verified.problems

    def test_a_trail_kept_here_is_archived_to_a_directory_and_read_across_both(
        self, trail_url: str, storage_options: dict[str, Any], tmp_path: Path
    ) -> None:
        self.write_trail(trail_url, storage_options, 60)
        target = str(tmp_path / f"archive-{uuid.uuid4().hex[:8]}")
        report = archive_trail(trail_url, target, codec="gzip", storage_options=storage_options)
        assert not report.problems and report.segments_archived > 0
        archived = sorted(Path(target).rglob("*.jsonl.gz"))
        assert len(archived) == report.segments_archived
        digest = hashlib.sha256(archived[0].read_bytes()).hexdigest()
        reader = AuditTrailReader(
            root_path=trail_url, storage_options=storage_options, archive=target
        )
        assert [event.event_id for event in reader.iter_events()] == list(range(1, 61))
        assert hashlib.sha256(archived[0].read_bytes()).hexdigest() == digest
