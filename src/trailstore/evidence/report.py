"""What ``verify`` found: a typed report, and the checkpoint a verifier trusts next time."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from trailstore.backend import StreamKey
from trailstore.evidence.records import Runs


class Status(StrEnum):
    #: every checkpoint holds, and the data they cover is as they say
    INTACT = "intact"
    #: something covered by a checkpoint was changed, removed or added, or the checkpoints
    #: themselves were
    TAMPERED = "tampered"
    #: the trail has no checkpoint: nothing can be verified (a trail of the original writer)
    UNVERIFIABLE = "unverifiable"


class Finding(StrEnum):
    """Kinds of tampering (or damage) ``verify`` reports."""

    CHANGED = "changed"  # an event's bytes differ from what a checkpoint covered
    MISSING = "missing"  # a covered event is not where it was
    INSERTED = "inserted"  # a line where none was covered, or one reusing a covered ID
    MOVED = "moved"  # a covered event found at another place
    SEGMENT_MISSING = "segment-missing"  # a covered segment is gone (deleted or renamed)
    SEGMENT_UNKNOWN = "segment-unknown"  # a segment no checkpoint knows among covered ones
    SEAL_ALTERED = "seal-altered"  # a seal file differs from the one its checkpoint covered
    SEGMENT_ALTERED = "segment-altered"  # a sealed segment's bytes differ from its seal
    CHECKPOINT_MISSING = "checkpoint-missing"
    CHECKPOINT_ALTERED = "checkpoint-altered"  # unparseable, or not chained to the one before
    BAD_SIGNATURE = "bad-signature"  # unsigned, signed by another key, or a wrong signature
    ROLLED_BACK = "rolled-back"  # the trail is older than a checkpoint the verifier trusts


@dataclass(frozen=True)
class Problem:
    """One thing found wrong, with its place."""

    kind: Finding
    detail: str
    stream: StreamKey | None = None
    segment: int | None = None
    event_ids: Runs = ()
    checkpoint: int | None = None

    def __str__(self) -> str:
        place = []
        if self.checkpoint is not None:
            place.append(f"checkpoint {self.checkpoint}")
        if self.stream is not None:
            place.append(f"{self.stream} segment {self.segment}")
        if self.event_ids:
            place.append("events " + ", ".join(_run_text(run) for run in self.event_ids[:20]))
            if len(self.event_ids) > 20:
                place[-1] += f", … ({len(self.event_ids) - 20} more runs)"
        where = f" [{'; '.join(place)}]" if place else ""
        return f"{self.kind}: {self.detail}{where}"


@dataclass(frozen=True)
class TrustedCheckpoint:
    """A checkpoint a verifier has checked: the next verification starts from it and fails if
    the trail no longer continues it."""

    number: int
    size: int
    digest: str

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps(asdict(self)) + "\n")
        temporary.replace(path)

    @classmethod
    def load(cls, path: Path) -> TrustedCheckpoint | None:
        """The checkpoint saved at ``path``; ``None`` if there is none yet."""
        try:
            document = json.loads(path.read_text())
            return cls(int(document["number"]), int(document["size"]), str(document["digest"]))
        except FileNotFoundError:
            return None


@dataclass
class VerificationReport:
    """The outcome of verifying a trail."""

    status: Status = Status.INTACT
    problems: list[Problem] = field(default_factory=list)
    #: remarks that are not tampering: quarantined bytes, a torn tail, unchecked signatures
    notes: list[str] = field(default_factory=list)
    #: the checkpoint verification started from (0: the beginning) and the newest one
    checked_from: int = 0
    latest: TrustedCheckpoint | None = None
    #: the key that signed the newest checkpoint (its ID), if any
    signed_by: str | None = None
    checkpoints_checked: int = 0
    #: events covered by the newest checkpoint (its size), and those written after it
    covered_events: int = 0
    uncovered_events: int = 0
    #: IDs covered as spent by writers that died and never written
    gaps: int = 0
    bytes_checked: int = 0
    #: sealed segments gone from the trail that a checkpoint records as pruned
    pruned_segments: int = 0

    @property
    def intact(self) -> bool:
        return self.status is Status.INTACT

    def add(self, problem: Problem) -> None:
        self.problems.append(problem)
        self.status = Status.TAMPERED

    def to_json(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "checked_from": self.checked_from,
            "latest": None if self.latest is None else asdict(self.latest),
            "signed_by": self.signed_by,
            "checkpoints_checked": self.checkpoints_checked,
            "covered_events": self.covered_events,
            "uncovered_events": self.uncovered_events,
            "gaps": self.gaps,
            "bytes_checked": self.bytes_checked,
            "pruned_segments": self.pruned_segments,
            "problems": [
                {
                    "kind": str(problem.kind),
                    "detail": problem.detail,
                    "stream": None if problem.stream is None else str(problem.stream),
                    "segment": problem.segment,
                    "event_ids": [list(run) for run in problem.event_ids],
                    "checkpoint": problem.checkpoint,
                }
                for problem in self.problems
            ],
            "notes": self.notes,
        }


def _run_text(run: tuple[int, int]) -> str:
    return str(run[0]) if run[0] == run[1] else f"{run[0]}-{run[1]}"
