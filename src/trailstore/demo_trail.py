"""The self-checking demo (``trailstore demo``): write ``Workload`` events to a trail, read them
back, and check that replaying every stream gives the records the workload kept in memory.

Running it again on the same root continues the trail: the records are first rebuilt from it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trailstore.backend import INDEX_NAME, Durability, DurabilityName, StreamKey
from trailstore.demo import WORKLOAD_KEY_FIELD, WORKLOAD_STREAMS, Records, Workload
from trailstore.errors import ConfigurationError
from trailstore.events import AuditOperation
from trailstore.reader import AuditTrailReader
from trailstore.registry import local_path, url_scheme
from trailstore.replay import AuditReplayer, State
from trailstore.stats import TrailStats, trail_stats
from trailstore.writer import AuditTrailWriter

#: the demo's segment size limit: small, so that its segments rotate
DEMO_SEGMENT_BYTES = 64 * 1024


@dataclass(frozen=True)
class Written:
    """The events one ``DemoTrail.write`` appended."""

    events: int
    first_event_id: int
    last_event_id: int
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.events / max(self.seconds, 1e-9)


@dataclass(frozen=True)
class StreamReplay:
    """One stream replayed: how many records of each model live, and whether they are the
    records the workload kept."""

    stream: StreamKey
    records: dict[str, int]
    last_event_id: int | None
    matches: bool


@dataclass(frozen=True)
class DemoCheck:
    """What reading the trail back found."""

    #: events read back from the first one written, per operation
    operations: dict[str, int]
    replays: list[StreamReplay]
    #: the whole trail, after the check (its ``damage`` counts everything the check met)
    stats: TrailStats

    @property
    def mismatched(self) -> list[StreamKey]:
        """The streams whose replay differs from the workload's records."""
        return [replay.stream for replay in self.replays if not replay.matches]


def _live(state: State) -> State:
    """``state`` without models whose records were all deleted."""
    return {model: records for model, records in state.items() if records}


class DemoTrail:
    """The demo trail at ``root``: new, or one an earlier demo wrote (then continued).

    Refuses (``ConfigurationError``) a non-empty directory that is not a trail, and a trail
    holding streams the demo does not write, so that the demo never mixes into real data.
    """

    def __init__(
        self, root: str, *, storage_options: dict[str, Any] | None = None, seed: int = 0
    ) -> None:
        self.root = root
        self.storage_options = dict(storage_options or {})
        self._refuse_foreign_directory()
        records, self.start_event_id = self._earlier_run()
        # a continued trail gets fresh randomness, so new record keys do not repeat deleted ones
        self.workload = Workload(
            seed if self.start_event_id == 0 else f"{seed}+{self.start_event_id}",
            records=records,
        )

    @property
    def continued(self) -> bool:
        """True when an earlier demo wrote the trail."""
        return self.start_event_id > 0

    def write(
        self,
        events: int,
        *,
        max_file_size_bytes: int = DEMO_SEGMENT_BYTES,
        durability: Durability | DurabilityName = Durability.FSYNC,
        advance: Callable[[int], None] | None = None,
    ) -> Written:
        """Append ``events`` workload events (``advance(1)`` after each)."""
        if events < 1:
            raise ConfigurationError(f"the demo writes at least one event, not {events}")
        began = time.perf_counter()
        first = last = 0
        with AuditTrailWriter(
            root_path=self.root,
            max_file_size_bytes=max_file_size_bytes,
            durability=durability,
            storage_options=self.storage_options,
        ) as writer:
            for fields in self.workload.events(events):
                last = writer.append_event(**fields).event_id
                first = first or last
                if advance is not None:
                    advance(1)
        return Written(events, first, last, time.perf_counter() - began)

    def check(self, written: Written) -> DemoCheck:
        """Query what ``written`` appended, replay every stream and compare it with the
        workload's records, then count the whole trail."""
        reader = AuditTrailReader(root_path=self.root, storage_options=self.storage_options)
        operations = {operation.value: 0 for operation in AuditOperation}
        for event in reader.iter_events(min_event_id=written.first_event_id):
            operations[event.operation.value] += 1
        replayer = AuditReplayer(reader=reader, key_field=WORKLOAD_KEY_FIELD)
        replays = []
        for stream in WORKLOAD_STREAMS:
            result = replayer.reconstruct_state(domain=stream.domain, category=stream.category)
            live = _live(result.state)
            replays.append(
                StreamReplay(
                    stream,
                    {model: len(records) for model, records in sorted(live.items())},
                    result.last_event_id,
                    live == _live(self.workload.records[stream]),
                )
            )
        return DemoCheck(operations, replays, trail_stats(reader))

    def _refuse_foreign_directory(self) -> None:
        if url_scheme(self.root) != "file":
            return
        path = local_path(self.root)
        if path.exists() and not path.is_dir():
            raise ConfigurationError(f"demo root {self.root} exists and is not a directory")
        if path.is_dir() and any(path.iterdir()) and not (path / INDEX_NAME).is_file():
            raise ConfigurationError(
                f"refusing to write the demo into {self.root}: the directory is not empty and "
                "is not a trailstore trail; use a new or empty directory"
            )

    def _earlier_run(self) -> tuple[Records, int]:
        """The records and last event ID of the trail (none and 0 when it is new)."""
        reader = AuditTrailReader(
            root_path=self.root, storage_options=self.storage_options, allow_empty=True
        )
        foreign = [str(stream) for stream in reader.streams() if stream not in WORKLOAD_STREAMS]
        if foreign:
            raise ConfigurationError(
                f"refusing to write the demo into {self.root}: it is a trail with streams the "
                f"demo does not write ({', '.join(foreign)}); use a new or empty directory"
            )
        replayer = AuditReplayer(reader=reader, key_field=WORKLOAD_KEY_FIELD)
        records: Records = {
            stream: replayer.reconstruct_state(domain=stream.domain, category=stream.category).state
            for stream in WORKLOAD_STREAMS
        }
        return records, reader.backend.last_event_id()
