"""What a trail's checkpoints say about its sealed segments: which are sealed (and by which
seal file), which were pruned, and where each stream's covered part ends. Archiving and
pruning act only on what the chain vouches for."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from trailstore.backend import Backend, StreamKey
from trailstore.errors import EvidenceError
from trailstore.evidence.checkpointer import checkpoint_numbers, read_checkpoint
from trailstore.evidence.records import Checkpoint, DamagedEvidenceError, Seal, seal_path

#: a segment of a trail: ``(stream, number)``
SegmentKey = tuple[StreamKey, int]


@dataclass
class Chain:
    """The checkpoints of a trail, summarised."""

    numbers: list[int] = field(default_factory=list)
    latest: Checkpoint | None = None
    #: SHA-256 of each sealed segment's seal file, as the checkpoint sealing it recorded it
    seals: dict[SegmentKey, str] = field(default_factory=dict)
    pruned: dict[SegmentKey, str] = field(default_factory=dict)

    @classmethod
    def read(cls, backend: Backend) -> Chain:
        chain = cls(numbers=checkpoint_numbers(backend))
        for number in chain.numbers:
            try:
                checkpoint = read_checkpoint(backend, number)
            except (DamagedEvidenceError, FileNotFoundError) as exc:
                raise EvidenceError(
                    f"checkpoint {number} of {backend.url} cannot be read ({exc}): run "
                    "trailstore verify"
                ) from exc
            chain.seals.update(((s, n), digest) for s, n, digest in checkpoint.seals)
            chain.pruned.update(((s, n), digest) for s, n, digest in checkpoint.pruned)
            chain.latest = checkpoint
        return chain

    @property
    def origin(self) -> str | None:
        """The random ``origin`` every checkpoint of the trail carries."""
        return None if self.latest is None else self.latest.origin

    def sealed_segments(self) -> list[SegmentKey]:
        """Every segment the chain sealed, in stream and number order."""
        return sorted(self.seals)

    def open_from(self, stream: StreamKey) -> int | None:
        """The segment the newest checkpoint's coverage of ``stream`` is in (never pruned)."""
        if self.latest is None or stream not in self.latest.positions:
            return None
        return self.latest.positions[stream].segment

    def seal(self, backend: Backend, key: SegmentKey) -> tuple[Seal, bytes]:
        """The seal of a sealed segment and its file, checked against the chain's record."""
        stream, number = key
        data = backend.get_evidence(seal_path(stream, number))
        if hashlib.sha256(data).hexdigest() != self.seals.get(key):
            raise EvidenceError(
                f"the seal of {stream} segment {number} is not the one its checkpoint recorded"
            )
        return Seal.decode(data), data
