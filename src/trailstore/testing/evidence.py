"""Conformance tests for tamper evidence: every backend's trails verify when intact, and
``verify`` catches and places every kind of tampering.

Attacks go straight to the storage, past the library, through ``raw_storage``: an fsspec
filesystem and the trail's root on it (served here for trails kept as a log of commits, and
by the local backend's tests for a directory).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fsspec import AbstractFileSystem
from hypothesis import given, settings
from hypothesis import strategies as st

from trailstore.backend import StreamKey, segment_name
from trailstore.backends.logged import LogBackend
from trailstore.evidence import (
    Finding,
    Status,
    VerificationReport,
    checkpoint_trail,
    generate_key_pair,
    verify_trail,
)
from trailstore.evidence.records import (
    EVIDENCE_DIRECTORY,
    Checkpoint,
    checkpoint_path,
    parse_checkpoint_name,
    seal_path,
)
from trailstore.lines import line_event_id
from trailstore.registry import open_backend
from trailstore.store.commits import Commit
from trailstore.writer import AuditTrailWriter

from .conformance import sample_event

STREAMS = (("shop", "orders"), ("shop", "refunds"), ("billing", "invoices"))


@dataclass
class Tampered:
    """What an attack did: the findings ``verify`` must report, at which place."""

    kinds: set[Finding]
    stream: StreamKey | None = None
    segment: int | None = None
    event_id: int | None = None
    checkpoint: int | None = None


class EvidenceConformance:
    """Tamper evidence on one backend; needs ``trail_url`` and ``storage_options``."""

    def raw_storage(
        self, trail_url: str, storage_options: dict[str, Any]
    ) -> tuple[AbstractFileSystem, str]:
        """The filesystem holding the trail's files and the trail's root on it."""
        backend = open_backend(trail_url, **storage_options)
        if not isinstance(backend, LogBackend):
            raise NotImplementedError("this backend's tests must say where its files are")
        return backend.fs, backend.store.layout.root

    def write_trail(
        self,
        trail_url: str,
        storage_options: dict[str, Any],
        events: int,
        processes: int = 1,
        **settings: Any,
    ) -> int:
        """Write ``events`` events over three streams with small, rotating segments and
        frequent checkpoints, from ``processes`` writer processes at once where the backend
        allows several; returns the last ID."""
        settings.setdefault("max_file_size_bytes", 1500)
        settings.setdefault("checkpoint_every", 7)
        backend = open_backend(trail_url, **storage_options)
        if processes == 1 or not (backend.persistent and backend.supports_concurrent_processes):
            write_events(trail_url, storage_options, range(events), settings)
            return backend.last_event_id()
        context = multiprocessing.get_context("spawn")
        workers = [
            context.Process(
                target=write_events,
                args=(trail_url, storage_options, range(first, events, processes), settings),
            )
            for first in range(processes)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert all(worker.exitcode == 0 for worker in workers), "a writer process failed"
        return backend.last_event_id()

    def verify(
        self, trail_url: str, storage_options: dict[str, Any], **options: Any
    ) -> VerificationReport:
        return verify_trail(trail_url, storage_options=storage_options, **options)

    # -- no false alarms ---------------------------------------------------------------------

    @pytest.mark.parametrize("durability", ["fsync", "flush", "batch"])
    def test_a_trail_written_in_each_durability_mode_verifies_fully_and_then_incrementally(
        self, trail_url: str, storage_options: dict[str, Any], durability: str
    ) -> None:
        last = self.write_trail(trail_url, storage_options, 60, durability=durability)

        report = self.verify(trail_url, storage_options, full=True)

        assert (report.status, report.problems) == (Status.INTACT, [])
        assert report.covered_events == last and report.uncovered_events == 0
        assert report.latest is not None and report.checked_from == 0
        trusted = report.latest
        last = self.write_trail(trail_url, storage_options, 20, durability=durability)
        again = self.verify(trail_url, storage_options, trusted=trusted)
        assert (again.status, again.problems) == (Status.INTACT, [])
        assert again.checked_from == trusted.number
        assert again.checkpoints_checked >= 1
        assert again.latest is not None and again.covered_events == last

    def test_a_batch_writer_checkpoints_while_its_own_session_holds_the_trail(
        self, trail_url: str, storage_options: dict[str, Any]
    ) -> None:
        done = threading.Event()

        def write() -> None:
            self.write_trail(
                trail_url,
                storage_options,
                60,
                durability="batch",
                flush_max_events=5,
                checkpoint_every=3,
            )
            done.set()

        threading.Thread(target=write, daemon=True).start()

        assert done.wait(60), "appending deadlocked on a checkpoint"
        report = self.verify(trail_url, storage_options, full=True)
        assert (report.status, report.problems, report.covered_events) == (Status.INTACT, [], 60)

    def test_evidence_files_are_created_once(
        self, trail_url: str, storage_options: dict[str, Any]
    ) -> None:
        self.write_trail(trail_url, storage_options, 3)
        path = f"{EVIDENCE_DIRECTORY}/created-once-probe"
        first = open_backend(trail_url, **storage_options)
        second = open_backend(trail_url, **storage_options)

        assert first.put_evidence(path, b"first") is True
        assert first.put_evidence(path, b"first") is True  # a retry of the same write
        assert second.put_evidence(path, b"second") is False

        assert second.get_evidence(path) == b"first"
        assert "created-once-probe" in first.list_evidence(EVIDENCE_DIRECTORY)

    def test_events_after_the_newest_checkpoint_are_counted_as_not_yet_covered(
        self, trail_url: str, storage_options: dict[str, Any]
    ) -> None:
        self.write_trail(trail_url, storage_options, 10)
        with AuditTrailWriter(
            root_path=trail_url, storage_options=storage_options, checkpoint_every=None
        ) as writer:
            for number in range(5):
                writer.append_event(**sample_event(number))
            report = self.verify(trail_url, storage_options, full=True)

        assert (report.status, report.problems) == (Status.INTACT, [])
        assert (report.covered_events, report.uncovered_events) == (10, 5)

    def test_a_trail_without_checkpoints_is_unverifiable_until_it_is_checkpointed(
        self, trail_url: str, storage_options: dict[str, Any]
    ) -> None:
        self.write_trail(trail_url, storage_options, 12, checkpoints=False)

        report = self.verify(trail_url, storage_options)

        assert (report.status, report.problems) == (Status.UNVERIFIABLE, [])
        assert report.uncovered_events == 12
        made = checkpoint_trail(trail_url, storage_options=storage_options)
        assert made is not None and made.size == 12
        assert self.verify(trail_url, storage_options).status is Status.INTACT

    # -- signatures --------------------------------------------------------------------------

    def test_signed_checkpoints_verify_with_their_key_only(
        self, trail_url: str, storage_options: dict[str, Any], tmp_path: Path
    ) -> None:
        generate_key_pair(tmp_path / "a.key", tmp_path / "a.pub")
        generate_key_pair(tmp_path / "b.key", tmp_path / "b.pub")
        self.write_trail(trail_url, storage_options, 30, signing_key=tmp_path / "a.key")

        good = self.verify(trail_url, storage_options, public_key=tmp_path / "a.pub")
        other = self.verify(trail_url, storage_options, public_key=tmp_path / "b.pub")

        assert (good.status, good.problems) == (Status.INTACT, [])
        assert good.signed_by is not None
        assert other.status is Status.TAMPERED
        assert {problem.kind for problem in other.problems} == {Finding.BAD_SIGNATURE}
        assert len(other.problems) == good.checkpoints_checked

    def test_a_rewritten_checkpoint_fails_its_signature_even_as_the_newest(
        self, trail_url: str, storage_options: dict[str, Any], tmp_path: Path
    ) -> None:
        generate_key_pair(tmp_path / "a.key", tmp_path / "a.pub")
        self.write_trail(trail_url, storage_options, 20, signing_key=tmp_path / "a.key")
        fs, root = self.raw_storage(trail_url, storage_options)
        newest = sorted(fs.ls(f"{root}/{EVIDENCE_DIRECTORY}", detail=False))[-1]
        body, newline, signature = bytes(fs.cat_file(newest)).partition(b"\n")
        document = json.loads(body)
        document["written"] += 1  # a field no data check looks at
        fs.pipe_file(newest, json.dumps(document).encode() + newline + signature)

        report = self.verify(trail_url, storage_options, public_key=tmp_path / "a.pub")

        assert report.status is Status.TAMPERED
        assert [problem.kind for problem in report.problems] == [Finding.BAD_SIGNATURE]
        assert report.problems[0].checkpoint == document["number"]

    # -- trusted state -----------------------------------------------------------------------

    def test_a_trail_rolled_back_behind_a_trusted_checkpoint_is_caught(
        self, trail_url: str, storage_options: dict[str, Any]
    ) -> None:
        self.write_trail(trail_url, storage_options, 15)
        fs, root = self.raw_storage(trail_url, storage_options)
        before = {path: fs.cat_file(path) for path in fs.find(root)}
        self.write_trail(trail_url, storage_options, 15)
        trusted = self.verify(trail_url, storage_options).latest
        assert trusted is not None
        for path in set(fs.find(root)) - set(before):
            fs.rm_file(path)
        fs.pipe(before)  # everything as it was: a consistent, older trail

        report = self.verify(trail_url, storage_options, trusted=trusted)

        assert report.status is Status.TAMPERED
        assert report.problems[0].kind is Finding.ROLLED_BACK
        assert self.verify(trail_url, storage_options).status is Status.INTACT  # without trust

    def test_a_rewritten_history_is_caught_given_a_trusted_checkpoint(
        self, trail_url: str, storage_options: dict[str, Any]
    ) -> None:
        self.write_trail(trail_url, storage_options, 15)
        trusted = self.verify(trail_url, storage_options).latest
        assert trusted is not None
        fs, root = self.raw_storage(trail_url, storage_options)
        path = f"{root}/{checkpoint_path(trusted.number)}"
        forged = Checkpoint.decode(fs.cat_file(path))
        forged = dataclasses.replace(forged, written=forged.written + 1, stored_body=b"")
        fs.pipe_file(path, forged.encode())

        report = self.verify(trail_url, storage_options, trusted=trusted)

        assert [problem.kind for problem in report.problems] == [Finding.CHECKPOINT_ALTERED]

    # -- the tamper suite ----------------------------------------------------------------------

    #: random attacks the tamper suite tries (fewer where each verify is a network round)
    tamper_examples = 40

    def test_every_attack_is_caught_and_placed(
        self, trail_url: str, storage_options: dict[str, Any]
    ) -> None:
        fs, root = self.raw_storage(trail_url, storage_options)
        self.write_trail(trail_url, storage_options, 88, processes=3)
        # two writers of one event each, whose close() checkpoints: the chain has checkpoints
        # before its newest to attack, however few a loaded machine's checkpoint threads wrote
        for number in (88, 89):
            write_events(trail_url, storage_options, range(number, number + 1), {})
        written = self.verify(trail_url, storage_options, full=True)
        assert (written.status, written.uncovered_events) == (Status.INTACT, 0), (
            "once its writers closed, every event is covered (by one checkpoint or another)"
        )

        @settings(max_examples=self.tamper_examples, deadline=None, database=None)
        @given(attack=st.sampled_from(sorted(ATTACKS)), seed=st.integers(0, 2**32))
        def attack_and_verify(attack: str, seed: int) -> None:
            recording = Recording(fs)
            try:
                expected = ATTACKS[attack](recording, root, random.Random(seed))
                report = self.verify(trail_url, storage_options, full=True)
            finally:
                recording.undo()
            assert report.status is Status.TAMPERED, f"{attack} went unnoticed"
            found = [problem for problem in report.problems if problem.kind in expected.kinds]
            assert found, (attack, report.problems)
            assert any(places(problem, expected) for problem in found), (expected, found)

        attack_and_verify()
        assert self.verify(trail_url, storage_options, full=True).status is Status.INTACT


def write_events(
    trail_url: str, storage_options: dict[str, Any], numbers: range, settings: dict[str, Any]
) -> None:
    """Append sample events ``numbers`` over ``STREAMS`` with one writer."""
    with AuditTrailWriter(
        root_path=trail_url, storage_options=storage_options, **settings
    ) as writer:
        for number in numbers:
            domain, category = STREAMS[number % len(STREAMS)]
            writer.append_event(**sample_event(number, domain=domain, category=category))


class Recording:
    """A filesystem that remembers the files it changes, and can put them back."""

    def __init__(self, fs: AbstractFileSystem) -> None:
        self._fs = fs
        self._before: dict[str, bytes | None] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fs, name)

    def _touch(self, *paths: str) -> None:
        for path in paths:
            if path not in self._before:
                self._before[path] = self._fs.cat_file(path) if self._fs.exists(path) else None

    def pipe_file(self, path: str, data: bytes) -> None:
        self._touch(path)
        self._fs.pipe_file(path, data)

    def pipe(self, files: dict[str, bytes]) -> None:
        self._touch(*files)
        self._fs.pipe(files)

    def rm_file(self, path: str) -> None:
        self._touch(path)
        self._fs.rm_file(path)

    def mv(self, source: str, target: str) -> None:
        self._touch(source, target)
        self._fs.mv(source, target)

    def undo(self) -> None:
        for path, data in self._before.items():
            if data is not None:
                self._fs.pipe_file(path, data)
            elif self._fs.exists(path):
                self._fs.rm_file(path)


def places(problem: Any, expected: Tampered) -> bool:
    if expected.checkpoint is not None:
        return bool(problem.checkpoint == expected.checkpoint)
    if expected.stream is not None and (problem.stream, problem.segment) != (
        expected.stream,
        expected.segment,
    ):
        return False
    if expected.event_id is None:
        return True
    return any(first <= expected.event_id <= last for first, last in problem.event_ids)


# -- attacks: each changes the stored trail and says what verify must find ---------------------


def _sealed_segment(
    fs: AbstractFileSystem, root: str, chooser: random.Random
) -> tuple[StreamKey, int, str]:
    """A random segment with a seal (complete, so a plain file or object on every backend)."""
    seals = sorted(path for path in fs.find(root) if path.endswith(".seal.json"))
    seal = chooser.choice(seals)
    domain, category, name = seal[len(root) :].strip("/").split("/")
    number = int(name.removeprefix("audit-").removesuffix(".seal.json"))
    stream = StreamKey(domain, category)
    return stream, number, f"{root}/{domain}/{category}/{segment_name(number)}"


def _lines(fs: AbstractFileSystem, path: str) -> list[bytes]:
    return bytes(fs.cat_file(path)).splitlines(keepends=True)


def _change_a_byte(fs: AbstractFileSystem, root: str, chooser: random.Random) -> Tampered:
    stream, number, path = _sealed_segment(fs, root, chooser)
    lines = _lines(fs, path)
    index = chooser.randrange(len(lines))
    line = lines[index]
    position = chooser.randrange(line.index(b",") + 1, len(line) - 1)  # past the ID, before \n
    replacement = chooser.choice([c for c in b"abcxyz0123" if c != line[position]])
    lines[index] = line[:position] + bytes([replacement]) + line[position + 1 :]
    fs.pipe_file(path, b"".join(lines))
    return Tampered({Finding.CHANGED}, stream, number, line_event_id(line))


def _edit_a_field(fs: AbstractFileSystem, root: str, chooser: random.Random) -> Tampered:
    stream, number, path = _sealed_segment(fs, root, chooser)
    lines = _lines(fs, path)
    index = chooser.randrange(len(lines))
    original = lines[index]
    lines[index] = original.replace(b'"user-1"', b'"mallory"')
    fs.pipe_file(path, b"".join(lines))
    return Tampered({Finding.CHANGED}, stream, number, line_event_id(original))


def _delete_an_event(fs: AbstractFileSystem, root: str, chooser: random.Random) -> Tampered:
    stream, number, path = _sealed_segment(fs, root, chooser)
    lines = _lines(fs, path)
    gone = lines.pop(chooser.randrange(len(lines)))
    fs.pipe_file(path, b"".join(lines))
    return Tampered({Finding.MISSING}, stream, number, line_event_id(gone))


def _duplicate_an_event(fs: AbstractFileSystem, root: str, chooser: random.Random) -> Tampered:
    stream, number, path = _sealed_segment(fs, root, chooser)
    lines = _lines(fs, path)
    index = chooser.randrange(len(lines))
    lines.insert(index, lines[index])
    fs.pipe_file(path, b"".join(lines))
    return Tampered({Finding.INSERTED}, stream, number, line_event_id(lines[index]))


def _insert_a_forged_event(fs: AbstractFileSystem, root: str, chooser: random.Random) -> Tampered:
    stream, number, path = _sealed_segment(fs, root, chooser)
    lines = _lines(fs, path)
    index = chooser.randrange(len(lines) + 1)
    model = lines[min(index, len(lines) - 1)]
    forged = model.replace(b'"user-1"', b'"mallory"')
    lines.insert(index, forged)
    fs.pipe_file(path, b"".join(lines))
    return Tampered({Finding.INSERTED}, stream, number, line_event_id(forged))


def _swap_two_events(fs: AbstractFileSystem, root: str, chooser: random.Random) -> Tampered:
    stream, number, path = _sealed_segment(fs, root, chooser)
    lines = _lines(fs, path)
    if len(lines) < 2:
        return _delete_an_event(fs, root, chooser)
    index = chooser.randrange(len(lines) - 1)
    lines[index], lines[index + 1] = lines[index + 1], lines[index]
    fs.pipe_file(path, b"".join(lines))
    return Tampered({Finding.MOVED}, stream, number)


def _truncate_a_segment(fs: AbstractFileSystem, root: str, chooser: random.Random) -> Tampered:
    stream, number, path = _sealed_segment(fs, root, chooser)
    lines = _lines(fs, path)
    keep = chooser.randrange(len(lines))
    fs.pipe_file(path, b"".join(lines[:keep]))
    return Tampered({Finding.MISSING}, stream, number, line_event_id(lines[-1]))


def _append_to_a_sealed_segment(
    fs: AbstractFileSystem, root: str, chooser: random.Random
) -> Tampered:
    stream, number, path = _sealed_segment(fs, root, chooser)
    lines = _lines(fs, path)
    extra = chooser.choice(lines)
    fs.pipe_file(path, b"".join(lines) + extra)
    return Tampered({Finding.INSERTED}, stream, number, line_event_id(extra))


def _delete_a_segment(fs: AbstractFileSystem, root: str, chooser: random.Random) -> Tampered:
    stream, number, path = _sealed_segment(fs, root, chooser)
    first = line_event_id(_lines(fs, path)[0])
    fs.rm_file(path)
    return Tampered({Finding.SEGMENT_MISSING}, stream, number, first)


def _rename_a_segment(fs: AbstractFileSystem, root: str, chooser: random.Random) -> Tampered:
    stream, number, path = _sealed_segment(fs, root, chooser)
    first = line_event_id(_lines(fs, path)[0])
    fs.mv(path, path.replace(segment_name(number), segment_name(number + 1000)))
    return Tampered({Finding.SEGMENT_MISSING}, stream, number, first)


def _swap_two_segments(fs: AbstractFileSystem, root: str, chooser: random.Random) -> Tampered:
    stream, number, path = _sealed_segment(fs, root, chooser)
    *_, other = _sealed_segment(fs, root, chooser)
    if other == path:
        return _delete_a_segment(fs, root, chooser)
    mine, theirs = fs.cat_file(path), fs.cat_file(other)
    fs.pipe({path: theirs, other: mine})
    return Tampered({Finding.MISSING, Finding.INSERTED, Finding.SEGMENT_ALTERED}, stream, number)


def _cut_off_the_newest_events(
    fs: AbstractFileSystem, root: str, chooser: random.Random
) -> Tampered:
    """Remove the newest events, which the checkpoint written at close covers: the end of an
    open segment file, or (where storage cannot append) the newest commit objects."""
    log = f"{root}/.trailstore/log"
    if fs.exists(log):
        newest = sorted(fs.ls(log, detail=False))[-1]
        commit = Commit.decode(bytes(fs.cat_file(newest)))
        fs.rm_file(newest)
        if not commit.lines:  # a commit of no events (a reservation): cut the one before
            return _cut_off_the_newest_events(fs, root, chooser)
        stream, number = commit.entries[0][0], commit.entries[0][1]
        first = line_event_id(commit.lines[0])
        return Tampered({Finding.MISSING, Finding.SEGMENT_MISSING}, stream, number, first)
    sealed = {path.removesuffix(".seal.json") + ".jsonl" for path in fs.find(root)}
    open_segments = sorted(
        path
        for path in fs.find(root)
        if path.endswith(".jsonl") and "/audit-" in path and path not in sealed
    )
    path = chooser.choice(open_segments)
    lines = _lines(fs, path)
    keep = chooser.randrange(len(lines))
    fs.pipe_file(path, b"".join(lines[:keep]))
    domain, category, name = path[len(root) :].strip("/").split("/")
    number = int(name.removeprefix("audit-").removesuffix(".jsonl"))
    return Tampered(
        {Finding.MISSING}, StreamKey(domain, category), number, line_event_id(lines[-1])
    )


def _alter_a_seal(fs: AbstractFileSystem, root: str, chooser: random.Random) -> Tampered:
    stream, number, _ = _sealed_segment(fs, root, chooser)
    path = f"{root}/{seal_path(stream, number)}"
    document = json.loads(fs.cat_file(path))
    document["max_timestamp"] += 3600
    fs.pipe_file(path, json.dumps(document).encode())
    return Tampered({Finding.SEAL_ALTERED}, stream, number)


def _checkpoints(fs: AbstractFileSystem, root: str) -> list[str]:
    return sorted(fs.ls(f"{root}/{EVIDENCE_DIRECTORY}", detail=False))


def _remove_a_checkpoint(fs: AbstractFileSystem, root: str, chooser: random.Random) -> Tampered:
    path = chooser.choice(_checkpoints(fs, root)[:-1])  # the newest goes unnoticed without trust
    fs.rm_file(path)
    return Tampered({Finding.CHECKPOINT_MISSING}, checkpoint=_checkpoint_number(path))


def _checkpoint_number(path: str) -> int:
    number = parse_checkpoint_name(path.rsplit("/", 1)[-1])
    assert number is not None
    return number


def _alter_a_checkpoint(fs: AbstractFileSystem, root: str, chooser: random.Random) -> Tampered:
    paths = _checkpoints(fs, root)[:-1]
    path = chooser.choice(paths)
    body, newline, signature = bytes(fs.cat_file(path)).partition(b"\n")
    document = json.loads(body)
    document["gaps"].append([10**9, 10**9])
    fs.pipe_file(path, json.dumps(document).encode() + newline + signature)
    return Tampered({Finding.CHECKPOINT_ALTERED}, checkpoint=document["number"] + 1)


ATTACKS: dict[str, Callable[[AbstractFileSystem, str, random.Random], Tampered]] = {
    "change a byte": _change_a_byte,
    "edit a field": _edit_a_field,
    "delete an event": _delete_an_event,
    "duplicate an event": _duplicate_an_event,
    "insert a forged event": _insert_a_forged_event,
    "swap two events": _swap_two_events,
    "truncate a segment": _truncate_a_segment,
    "append to a sealed segment": _append_to_a_sealed_segment,
    "delete a segment": _delete_a_segment,
    "rename a segment": _rename_a_segment,
    "swap two segments": _swap_two_segments,
    "alter a seal": _alter_a_seal,
    "cut off the newest events": _cut_off_the_newest_events,
    "remove a checkpoint": _remove_a_checkpoint,
    "alter a checkpoint": _alter_a_checkpoint,
}
