"""``verify``: check a trail against its checkpoints and say what differs, and where.

The chain is walked from the checkpoint the verifier trusts (or from the first, with
``full``): each checkpoint must exist, parse, name the one before it and, given a public key,
carry a valid signature by it. Then the bytes they cover are hashed, a sealed segment at once
against its seal (each byte is hashed once), and where a hash differs the changed, missing,
inserted and moved events are found from the per-line checksums. Lines written after the
newest checkpoint must continue it: IDs above its size, in order, once.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from difflib import SequenceMatcher

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from trailstore.backend import Backend, StreamKey
from trailstore.evidence.checkpointer import checkpoint_numbers, read_checkpoint
from trailstore.evidence.keys import key_id, signature_holds
from trailstore.evidence.reading import Tail, complete_lines, range_digests, segment_digest
from trailstore.evidence.records import (
    Checkpoint,
    DamagedEvidenceError,
    Piece,
    Position,
    Seal,
    runs_of,
    seal_path,
)
from trailstore.evidence.report import (
    Finding,
    Problem,
    Status,
    TrustedCheckpoint,
    VerificationReport,
)
from trailstore.evidence.scan import unpack_checksums
from trailstore.lines import line_event_id
from trailstore.store.layout import TORN_SUFFIX


@dataclass
class _Covered:
    """What the walked checkpoints cover, by segment."""

    pieces: dict[tuple[StreamKey, int], list[tuple[int, Piece]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    #: ``(checkpoint, SHA-256 of the seal file)``
    seals: dict[tuple[StreamKey, int], tuple[int, str]] = field(default_factory=dict)
    #: segments a checkpoint records as pruned: ``(checkpoint, SHA-256 of the seal file)``
    pruned: dict[tuple[StreamKey, int], tuple[int, str]] = field(default_factory=dict)
    #: the checkpoints read (the chain walked, and any written while it was checked)
    read: set[int] = field(default_factory=set)


class Verifier:
    """Verifies one trail, checking signatures when given a public key."""

    def __init__(self, backend: Backend, public_key: Ed25519PublicKey | None = None) -> None:
        self._backend = backend
        self._public_key = public_key
        self._key_id = None if public_key is None else key_id(public_key)

    def verify(
        self, trusted: TrustedCheckpoint | None = None, *, full: bool = False
    ) -> VerificationReport:
        report = VerificationReport()
        numbers = checkpoint_numbers(self._backend)
        if not numbers:
            report.status = Status.UNVERIFIABLE
            report.notes.append(
                "the trail has no checkpoint, so nothing in it can be verified (written by a "
                "writer that keeps no evidence); a writer of this version checkpoints it"
            )
            self._check_tail(report, self._backend.list_streams(), {}, 0)
            if trusted is not None:
                report.add(
                    Problem(Finding.ROLLED_BACK, f"checkpoint {trusted.number} was trusted and "
                            "the trail has none", checkpoint=trusted.number)
                )  # fmt: skip
            return report
        base = self._trusted_base(report, trusted, numbers)
        start = 0 if full or base is None else base.number
        report.checked_from = start
        chain = self._walk(report, numbers, start, base)
        newest = chain[-1] if chain else base
        if newest is None:
            return report
        report.latest = TrustedCheckpoint(newest.number, newest.size, newest.digest)
        report.signed_by = newest.key_id if newest.signature is not None else None
        report.covered_events = newest.size
        if chain and chain[0].number == 1:
            first = chain[0]
            written = datetime.fromtimestamp(first.written, UTC).isoformat(timespec="seconds")
            report.notes.append(
                f"verification begins at checkpoint 1, written {written}: it covers events "
                f"1-{first.size} as it found them, so a change made before it was written "
                "cannot be detected"
            )
        covered = _Covered()
        for checkpoint in chain:
            covered.read.add(checkpoint.number)
            report.gaps += sum(last - first + 1 for first, last in checkpoint.gaps)
            for piece in checkpoint.pieces:
                if piece.damaged:
                    report.notes.append(
                        f"{piece.stream} segment {piece.segment}: {len(piece.damaged)} lines "
                        f"that are not events, covered by checkpoint {checkpoint.number} as "
                        "they were found (damage; readers skip them)"
                    )
                covered.pieces[(piece.stream, piece.segment)].append((checkpoint.number, piece))
            for stream, number, digest in checkpoint.seals:
                covered.seals[(stream, number)] = (checkpoint.number, digest)
            for stream, number, digest in checkpoint.pruned:
                covered.pruned[(stream, number)] = (checkpoint.number, digest)
        for stream, number in sorted(set(covered.pieces) | set(covered.seals)):
            self._check_segment(report, covered, stream, number)
        if report.pruned_segments:
            report.notes.append(
                f"{report.pruned_segments} sealed segments were pruned, as checkpoints record: "
                "their events are not here to check (open the trail with its archive to "
                "verify the archived copies)"
            )
        streams = self._backend.list_streams()  # one listing for the three checks below
        if full:
            self._check_known_segments(report, streams, covered, newest.positions)
        self._check_tail(report, streams, newest.positions, newest.size)
        self._note_quarantine(report, streams)
        if report.status is not Status.INTACT:
            report.latest = None  # nothing to trust next time
        return report

    # -- the chain -----------------------------------------------------------------------------

    def _trusted_base(
        self, report: VerificationReport, trusted: TrustedCheckpoint | None, numbers: list[int]
    ) -> Checkpoint | None:
        """The trusted checkpoint as the trail has it, if it is still the same one."""
        if trusted is None:
            return None
        if trusted.number > numbers[-1]:
            report.add(
                Problem(
                    Finding.ROLLED_BACK,
                    f"the newest checkpoint is {numbers[-1]}, older than checkpoint "
                    f"{trusted.number} (covering {trusted.size} events) that was verified before",
                    checkpoint=trusted.number,
                )
            )
            return None
        try:
            found = read_checkpoint(self._backend, trusted.number)
        except (FileNotFoundError, DamagedEvidenceError) as exc:
            report.add(Problem(Finding.CHECKPOINT_MISSING, f"the trusted checkpoint: {exc}",
                               checkpoint=trusted.number))  # fmt: skip
            return None
        if found.digest != trusted.digest:
            report.add(
                Problem(
                    Finding.CHECKPOINT_ALTERED,
                    "the checkpoint verified before was replaced: the trail's history was "
                    "rewritten",
                    checkpoint=trusted.number,
                )
            )
            return None
        return found

    def _walk(
        self,
        report: VerificationReport,
        numbers: list[int],
        start: int,
        base: Checkpoint | None,
    ) -> list[Checkpoint]:
        """The checkpoints after ``start``, each checked against the one before."""
        present = set(numbers)
        previous = base if start else None
        chain: list[Checkpoint] = []
        for number in range(start + 1, numbers[-1] + 1):
            if number not in present:
                report.add(Problem(Finding.CHECKPOINT_MISSING, "removed from the chain",
                                   checkpoint=number))  # fmt: skip
                previous = None
                continue
            try:
                checkpoint = read_checkpoint(self._backend, number)
            except (FileNotFoundError, DamagedEvidenceError) as exc:
                report.add(Problem(Finding.CHECKPOINT_ALTERED, str(exc), checkpoint=number))
                previous = None
                continue
            self._check_link(report, checkpoint, previous, number == 1)
            report.checkpoints_checked += 1
            chain.append(checkpoint)
            previous = checkpoint
        return chain

    def _check_link(
        self,
        report: VerificationReport,
        checkpoint: Checkpoint,
        previous: Checkpoint | None,
        first: bool,
    ) -> None:
        number = checkpoint.number
        if previous is not None and (
            checkpoint.previous != previous.digest or checkpoint.origin != previous.origin
        ):
            report.add(Problem(Finding.CHECKPOINT_ALTERED,
                               f"does not continue checkpoint {previous.number}",
                               checkpoint=number))  # fmt: skip
        if first and checkpoint.previous is not None:
            report.add(Problem(Finding.CHECKPOINT_ALTERED, "the first checkpoint names one before",
                               checkpoint=number))  # fmt: skip
        floor = previous.size if previous is not None else (0 if first else None)
        if floor is not None and not _covers_exactly(checkpoint, floor):
            report.add(Problem(Finding.CHECKPOINT_ALTERED,
                               f"its events and gaps are not exactly IDs {floor + 1}-"
                               f"{checkpoint.size}", checkpoint=number))  # fmt: skip
        if self._public_key is None:
            return
        if checkpoint.signature is None:
            report.add(Problem(Finding.BAD_SIGNATURE, "not signed", checkpoint=number))
        elif checkpoint.key_id != self._key_id or not signature_holds(
            self._public_key, checkpoint.signature, checkpoint.signed_bytes()
        ):
            report.add(Problem(Finding.BAD_SIGNATURE,
                               f"not signed by key {self._key_id}", checkpoint=number))  # fmt: skip

    # -- the data ------------------------------------------------------------------------------

    def _check_segment(
        self, report: VerificationReport, covered: _Covered, stream: StreamKey, number: int
    ) -> None:
        pieces = covered.pieces.get((stream, number), [])
        sealed = covered.seals.get((stream, number))
        seal = self._seal(report, stream, number, sealed) if sealed is not None else None
        pieces = sorted(pieces, key=lambda item: item[1].start)
        boundaries = sorted({edge for _, piece in pieces for edge in (piece.start, piece.end)})
        held = 0
        try:
            if seal is not None:
                whole, held = segment_digest(self._backend, stream, number)
                report.bytes_checked += held
                if (held, whole) == (seal.size, seal.sha256):
                    return  # its seal was written only once its pieces were checked
            digests: list[str] = []
            if boundaries:
                digests, _, read = range_digests(self._backend, stream, number, boundaries)
                report.bytes_checked += read if seal is None else 0
        except FileNotFoundError:
            if self._pruned_since(covered, stream, number):
                report.pruned_segments += 1
                return
            ids = runs_of(sorted(i for _, piece in pieces for i in piece.ids))
            report.add(Problem(Finding.SEGMENT_MISSING, "a covered segment is gone",
                               stream, number, ids))  # fmt: skip
            return
        found = dict(zip(boundaries, digests, strict=False))
        if any(found.get(piece.start) != piece.sha256 for _, piece in pieces):
            self._locate(report, stream, number, pieces)
        elif seal is not None and held > seal.size:
            added = {
                line_event_id(line)
                for line, _ in complete_lines(self._backend, stream, number, seal.size, Tail())
            }
            report.add(Problem(Finding.INSERTED, "lines after the end the segment was sealed at",
                               stream, number,
                               runs_of(sorted(i for i in added if i is not None))))  # fmt: skip
        elif seal is not None:
            report.add(Problem(Finding.SEGMENT_ALTERED,
                               f"holds {held} bytes that do not match its seal "
                               f"({seal.size} bytes)", stream, number))  # fmt: skip

    def _pruned_since(self, covered: _Covered, stream: StreamKey, number: int) -> bool:
        """Whether a checkpoint records the segment as pruned: one of the chain, or one
        written since the chain was read (a prune that ran during this verify)."""
        if _pruned_as_sealed(covered, stream, number):
            return True
        newest = max(covered.read, default=0)
        for later in checkpoint_numbers(self._backend):
            if later <= newest or later in covered.read:
                continue
            covered.read.add(later)
            with contextlib.suppress(FileNotFoundError, DamagedEvidenceError):
                for pruned_stream, pruned_number, digest in read_checkpoint(
                    self._backend, later
                ).pruned:
                    covered.pruned.setdefault((pruned_stream, pruned_number), (later, digest))
        return _pruned_as_sealed(covered, stream, number)

    def _seal(
        self, report: VerificationReport, stream: StreamKey, number: int, sealed: tuple[int, str]
    ) -> Seal | None:
        """The segment's seal file, if it is the one its checkpoint covered."""
        checkpoint, digest = sealed
        try:
            data = self._backend.get_evidence(seal_path(stream, number))
        except FileNotFoundError:
            data = b""
        if hashlib.sha256(data).hexdigest() != digest:
            report.add(Problem(Finding.SEAL_ALTERED, "the seal file is not the one checkpointed",
                               stream, number, checkpoint=checkpoint))  # fmt: skip
            return None
        return Seal.decode(data)

    def _locate(
        self,
        report: VerificationReport,
        stream: StreamKey,
        number: int,
        pieces: list[tuple[int, Piece]],
    ) -> None:
        """Name the events of a segment that changed, went missing, moved or were inserted:
        the lines as covered (ID and checksum) are compared with the lines there now."""
        expected: list[tuple[int | None, int]] = []
        covering: dict[int, int] = {}
        for checkpoint, piece in pieces:
            held = piece.line_ids()
            expected.extend(zip(held, unpack_checksums(piece.checksums), strict=True))
            covering.update(dict.fromkeys((i for i in held if i is not None), checkpoint))
        start = pieces[0][1].start
        highest = max(covering, default=0)
        actual: list[tuple[int | None, int]] = []
        with contextlib.suppress(FileNotFoundError):  # gone while read: every line is missing
            for line, checksum in complete_lines(self._backend, stream, number, start, Tail()):
                event_id = line_event_id(line)
                if event_id is not None and event_id > highest:
                    break
                actual.append((event_id, checksum))
        changed: set[int] = set()
        missing: set[int] = set()
        inserted: set[int | None] = set()
        matcher = SequenceMatcher(None, expected, actual, autojunk=False)
        for tag, low, high, actual_low, actual_high in matcher.get_opcodes():
            gone, came = expected[low:high], actual[actual_low:actual_high]
            if tag == "replace" and [i for i, _ in gone] == [i for i, _ in came]:
                changed.update(i for i, _ in gone if i is not None)
            elif tag != "equal":
                missing.update(i for i, _ in gone if i is not None)
                inserted.update(i for i, _ in came)
        moved = missing & inserted
        for kind, ids, detail in (
            (Finding.CHANGED, changed, "the event's bytes differ from the checkpointed ones"),
            (Finding.MISSING, missing - moved, "covered events are not where they were"),
            (Finding.MOVED, moved, "covered events found at another place in the segment"),
        ):
            for checkpoint in sorted({covering[i] for i in ids}):
                mine = sorted(i for i in ids if covering[i] == checkpoint)
                report.add(Problem(kind, detail, stream, number, runs_of(mine), checkpoint))
        added = sorted(i for i in inserted - moved if i is not None)
        if added:
            report.add(Problem(Finding.INSERTED, "lines no checkpoint covered here", stream,
                               number, runs_of(added)))  # fmt: skip
        if None in inserted:
            report.add(Problem(Finding.INSERTED, "lines that are not events", stream, number))
        if not (changed or missing or inserted):
            report.add(Problem(Finding.CHANGED, "bytes differ where the lines still match their "
                               "checksums", stream, number,
                               runs_of(sorted(covering))))  # fmt: skip

    def _check_known_segments(
        self,
        report: VerificationReport,
        streams: list[StreamKey],
        covered: _Covered,
        positions: dict[StreamKey, Position],
    ) -> None:
        """Every segment before a stream's covered position must be one the chain covers."""
        known = set(covered.pieces) | set(covered.seals)
        for stream in streams:
            position = positions.get(stream)
            for number in self._backend.list_segments(stream):
                below = position is not None and number < position.segment
                if below and (stream, number) not in known:
                    report.add(Problem(Finding.SEGMENT_UNKNOWN,
                                       "no checkpoint covers this segment (inserted or renamed)",
                                       stream, number))  # fmt: skip

    def _check_tail(
        self,
        report: VerificationReport,
        streams: list[StreamKey],
        positions: dict[StreamKey, Position],
        size: int,
    ) -> None:
        """Lines after the newest checkpoint must continue it: IDs above its size, in order."""
        seen: dict[int, StreamKey] = {}
        listed = set(streams)
        for stream in sorted(set(positions) - listed):
            report.add(Problem(Finding.SEGMENT_MISSING, "a covered stream is gone", stream,
                               positions[stream].segment))  # fmt: skip
        for stream in sorted(listed):
            numbers = self._backend.list_segments(stream)
            position = positions.get(stream) or (Position(numbers[0]) if numbers else None)
            if position is None:
                continue
            if position.segment not in numbers:
                report.add(Problem(Finding.SEGMENT_MISSING, "the segment newest events were "
                                   "covered in is gone", stream, position.segment))  # fmt: skip
                continue
            after = position.ids[1] if position.ids else size
            for number in (n for n in numbers if n >= position.segment):
                offset = position.offset if number == position.segment else 0
                try:
                    after = self._check_tail_segment(
                        report, stream, number, offset, size, after, seen
                    )
                except FileNotFoundError:
                    gone = "its lines cannot be read (an object of it is gone)"
                    report.add(Problem(Finding.SEGMENT_MISSING, gone, stream, number))
        report.uncovered_events = len(seen)

    def _check_tail_segment(
        self,
        report: VerificationReport,
        stream: StreamKey,
        number: int,
        offset: int,
        size: int,
        after: int,
        seen: dict[int, StreamKey],
    ) -> int:
        held = self._backend.segment_size(stream, number)
        if held < offset:
            report.add(Problem(Finding.MISSING, f"cut to {held} bytes; {offset} were covered",
                               stream, number))  # fmt: skip
            return after
        wrong: list[int] = []
        unreadable = 0
        tail = Tail()
        for line, _ in complete_lines(self._backend, stream, number, offset, tail):
            event_id = line_event_id(line)
            if event_id is None:
                unreadable += 1
            elif event_id <= size or event_id <= after or event_id in seen:
                wrong.append(event_id)
            else:
                seen[event_id] = stream
                after = event_id
        if wrong:
            report.add(Problem(Finding.INSERTED, "lines after the newest checkpoint with IDs it "
                               "covers, or out of order", stream, number,
                               runs_of(sorted(set(wrong)))))  # fmt: skip
        if unreadable:
            report.notes.append(
                f"{stream} segment {number}: {unreadable} lines that are not events after the "
                "newest checkpoint (damage; readers skip them)"
            )
        if tail.torn:
            report.notes.append(
                f"{stream} segment {number} ends in a torn line ({tail.torn} bytes: a writer "
                "was interrupted); the next writer moves it to quarantine"
            )
        return after

    def _note_quarantine(self, report: VerificationReport, streams: list[StreamKey]) -> None:
        for stream in streams:
            for name in self._backend.list_evidence(f"{stream.domain}/{stream.category}"):
                if name.endswith(TORN_SUFFIX):
                    report.notes.append(
                        f"{stream}/{name}: bytes a repair cut off a torn line (never "
                        "acknowledged, not part of the trail)"
                    )


def _pruned_as_sealed(covered: _Covered, stream: StreamKey, number: int) -> bool:
    """Whether a checkpoint records the segment as pruned, naming the seal it was sealed with
    (a segment removed without that record is missing; one pruned unsealed cannot be)."""
    pruned, sealed = covered.pruned.get((stream, number)), covered.seals.get((stream, number))
    return pruned is not None and sealed is not None and pruned[1] == sealed[1]


def _covers_exactly(checkpoint: Checkpoint, floor: int) -> bool:
    """Whether a checkpoint's pieces and gaps hold each ID above ``floor`` up to its size once."""
    width = checkpoint.size - floor
    if width < 0:
        return False
    covered, count = 0, 0
    for piece in checkpoint.pieces:
        if piece.ids and piece.ids.first <= floor:
            return False
        covered |= piece.ids.mask_from(floor)
        count += len(piece.ids)
    for first, last in checkpoint.gaps:
        if not floor < first <= last:
            return False
        covered |= ((1 << (last - first + 1)) - 1) << (first - floor - 1)
        count += last - first + 1
    return covered == (1 << width) - 1 and count == width
