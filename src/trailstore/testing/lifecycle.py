"""Conformance tests for a trail's lifecycle with the backend under test as the archive: a
trail on local disk is archived there (compressed with every codec), pruned, and read and
verified across both tiers, also while a writer goes on appending; and a trail on the backend
under test is archived to a directory.
"""

from __future__ import annotations

import hashlib
import random
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from trailstore.backend import StreamKey
from trailstore.evidence import Status, verify_trail
from trailstore.lifecycle import (
    Archive,
    Archiver,
    Codec,
    RetentionRule,
    archive_trail,
    prune_trail,
)
from trailstore.lifecycle.chain import Chain
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

        def append() -> None:  # at most 300 more events, a few ms apart, till told to stop
            with AuditTrailWriter(root_path=root, **TRAIL_SETTINGS) as writer:
                for number in range(30, 330):
                    if stop.wait(0.003):
                        return
                    domain, category = STREAMS[number % len(STREAMS)]
                    event = writer.append_event(
                        **sample_event(number, domain=domain, category=category)
                    )
                    written.append(event.event_id)

        writer = threading.Thread(target=append)
        writer.start()
        pruned, overlapped = 0, 0
        try:
            for budget in (9000, 6000, 3000):
                report = archive_trail(str(root), trail_url, archive_options=storage_options)
                assert not report.problems
                pruned += len(
                    prune_trail(
                        str(root), RetentionRule(keep_bytes=budget), archive=trail_url,
                        archive_options=storage_options,
                    ).pruned
                )  # fmt: skip
                overlapped += writer.is_alive()
        finally:
            stop.set()
            writer.join()
        assert overlapped, "the writer finished before an archive and a prune did"
        assert pruned > 0
        everything = lines_by_id(str(root), trail_url, storage_options)
        assert set(written) <= set(everything) and len(everything) == len(written) + 30
        verified = verify_trail(root, full=True, archive=trail_url, archive_options=storage_options)
        assert verified.status is Status.INTACT, verified.problems

    #: kill rounds per test: each kills an archive and a prune at a random storage write
    kill_rounds = 3

    def test_archive_and_prune_killed_at_any_point_lose_and_duplicate_nothing(
        self, trail_url: str, storage_options: dict[str, Any], tmp_path: Path
    ) -> None:
        self.check_killed_runs(trail_url, storage_options, tmp_path, self.kill_rounds)

    @pytest.mark.slow
    def test_archive_and_prune_killed_at_any_point_in_many_rounds(
        self, trail_url: str, storage_options: dict[str, Any], tmp_path: Path
    ) -> None:
        self.check_killed_runs(trail_url, storage_options, tmp_path, self.kill_rounds * 8)

    def check_killed_runs(
        self, trail_url: str, storage_options: dict[str, Any], tmp_path: Path, rounds: int
    ) -> None:
        """Rounds of: more events; an archive killed at a random write, then run again; a
        prune killed at a random write (nothing it removed may lack a verified copy), then
        run again. The trail then reads and verifies across both tiers, every event once."""
        rng = random.Random(rounds)
        root = tmp_path / "archived-trail"
        written: dict[int, bytes] = {}
        archive: dict[str, Any] = {
            "root_path": str(root), "to": trail_url, "archive_options": storage_options
        }  # fmt: skip
        kills = 0
        for round_ in range(rounds):
            written.update(write_local_trail(root, range(round_ * 60, round_ * 60 + 60)))
            writes = archive_writes(root, trail_url, storage_options)
            kills += run_killed("archive", archive, rng.randint(1, writes), rng.random() < 0.5)
            assert not archive_trail(**archive).problems
            check_archive(str(root), trail_url, storage_options)
            prune: dict[str, Any] = {
                "root_path": str(root), "rule": RetentionRule(before_id=round_ * 60 + 30),
                "archive": trail_url, "archive_options": storage_options,
            }  # fmt: skip
            writes = 1 + len(prune_trail(**prune, dry_run=True).pruned)
            kills += run_killed("prune", prune, rng.randint(1, writes), rng.random() < 0.5)
            nothing_pruned_unverified(root, trail_url, storage_options)
            assert not prune_trail(**prune).problems
        assert kills >= rounds, "most runs must be killed before they finish"
        assert lines_by_id(str(root), trail_url, storage_options) == written
        for archive_given in (None, trail_url):
            report = verify_trail(
                root, full=True, archive=archive_given, archive_options=storage_options
            )
            assert report.status is Status.INTACT, report.problems

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


# -- SIGKILL at any point of archive and prune -------------------------------------------------

#: the storage writes of archive and prune, where a run is killed: before or after the n-th
_KILL_POINTS = (("trailstore.backend", "Backend", "put_archived"),
                ("trailstore.backends.local", "LocalBackend", "put_evidence"),
                ("trailstore.backends.local", "LocalBackend", "remove_sealed_segment"))  # fmt: skip


def _killed_at(step: int, before: bool, action: str, arguments: dict[str, Any]) -> None:
    """In a spawned process: run ``archive_trail`` or ``prune_trail``, SIGKILLing this process
    just before or just after its ``step``-th storage write."""
    import importlib
    import os
    import signal

    taken = 0

    def killing(method: Any) -> Any:
        def write(*args: Any, **kwargs: Any) -> Any:
            nonlocal taken
            taken += 1
            if taken == step and before:
                os.kill(os.getpid(), signal.SIGKILL)
            result = method(*args, **kwargs)
            if taken == step:
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        return write

    for module, name, method in _KILL_POINTS:
        owner = getattr(importlib.import_module(module), name)
        setattr(owner, method, killing(getattr(owner, method)))
    if action == "archive":
        archive_trail(**arguments)
    else:
        prune_trail(**arguments)


def run_killed(action: str, arguments: dict[str, Any], step: int, before: bool) -> bool:
    """Run an archive or prune in a process of its own, SIGKILLed at ``step``; whether the
    kill happened (else the run finished first)."""
    import multiprocessing

    process = multiprocessing.get_context("spawn").Process(
        target=_killed_at, args=(step, before, action, arguments)
    )
    process.start()
    process.join()
    assert process.exitcode in (0, -9), f"the {action} run failed ({process.exitcode})"
    return process.exitcode == -9


def archive_writes(root: Path, archive_url: str, options: dict[str, Any]) -> int:
    """How many objects an archive run would write now: a segment and a seal per pending
    segment, and the checkpoints the archive lacks."""
    trail, archive = open_backend(str(root)), Archive(archive_url, options)
    try:
        pending = Archiver(trail, archive).pending()
        checkpoints = set(Chain.read(trail).numbers) - set(archive.checkpoints())
        return 2 * len(pending) + len(checkpoints)
    finally:
        archive.close()
        trail.close()


def nothing_pruned_unverified(root: Path, archive_url: str, options: dict[str, Any]) -> None:
    """Every segment gone from the trail's disk has a verified copy in the archive."""
    trail = open_backend(str(root))
    archive = Archive(archive_url, options)
    try:
        for domain, category in STREAMS:
            stream = StreamKey(domain, category)
            present = trail.list_segments(stream)
            for number in range(1, present[0]):
                seal = archive.seal(stream, number)
                assert seal is not None and archive.holds_copy(stream, number, seal), (
                    f"{stream} segment {number} was pruned without a verified copy"
                )
    finally:
        archive.close()
        trail.close()
