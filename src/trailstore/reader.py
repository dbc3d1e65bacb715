"""``AuditTrailReader``: stream events back lazily, filtered, in ascending ``event_id``."""

from __future__ import annotations

import heapq
import logging
import os
import threading
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Unpack

from trailstore.backend import Backend, StreamKey
from trailstore.bounds import EventFilters, Read, ReadBounds, Selection
from trailstore.encoding import decode_line
from trailstore.errors import ConfigurationError, TrailNotFoundError
from trailstore.events import AuditEvent
from trailstore.evidence.records import DamagedEvidenceError, Seal, pruned_path, seal_path
from trailstore.follow import DEFAULT_SETTLE_SECONDS, FollowSettings, StreamCursor, follow_reads
from trailstore.lifecycle.archive import Archive
from trailstore.lifecycle.tiered import TieredBackend
from trailstore.lines import quick_event_id
from trailstore.registry import open_backend
from trailstore.seal_index import SealIndex
from trailstore.tail import lines_backwards, newest_reads

log = logging.getLogger("trailstore")


def _event_id_of(read: Read) -> int:
    return read[0].event_id


def _fill(gaps: list[list[int]], event_id: int) -> bool:
    """Take ``event_id`` out of the gap that holds it; False if none does (a duplicate)."""
    for position, (first, last) in enumerate(gaps):
        if first <= event_id <= last:
            if first == last:
                del gaps[position]
            elif event_id == first:
                gaps[position][0] += 1
            elif event_id == last:
                gaps[position][1] -= 1
            else:
                gaps[position : position + 1] = [[first, event_id - 1], [event_id + 1, last]]
            return True
    return False


@dataclass
class ReadReport:
    """Damage met while reading: counted and logged, never fatal."""

    malformed_lines: int = 0
    torn_lines: int = 0
    missing_segments: int = 0
    #: stream directories whose segments could not be listed (permissions)
    unreadable_streams: int = 0
    #: inclusive ``(first, last)`` ranges of IDs missing from a scan of every stream
    gaps: list[tuple[int, int]] = field(default_factory=list)
    duplicate_ids: int = 0
    #: the oldest segments of streams, pruned (archived) and not read: not damage
    pruned_segments: int = 0

    @property
    def clean(self) -> bool:
        """True when nothing was skipped, missing or duplicated."""
        damage = self.malformed_lines or self.torn_lines or self.missing_segments
        return not (damage or self.unreadable_streams or self.gaps or self.duplicate_ids)


class _IdWindow:
    """Keeps the lines of a stream whose ID lies in ``[low, high]`` (and those without one).

    One ID past ``high`` may be a damaged digit, so the stream is only done (``passed``) at
    the second one in a row.
    """

    def __init__(self, low: int, high: int | None) -> None:
        self.low, self.high = low, high
        self.passed = False
        self._past_high = False

    def within(self, lines: Iterator[bytes]) -> Iterator[bytes]:
        for line in lines:
            event_id = quick_event_id(line)
            if event_id is not None:
                if event_id < self.low:
                    continue
                if self.high is not None and event_id > self.high:
                    if self._past_high:
                        self.passed = True
                        return
                    self._past_high = True
                    continue
                self._past_high = False
            yield line


class AuditTrailReader:
    """Read a trail. Every call to ``iter_events`` streams in constant memory; damage found on
    the way is added to ``report``.

    A root that holds no trail raises ``TrailNotFoundError``, so that a mistyped path is not
    read as an empty trail; ``allow_empty=True`` reads it as one (a trail not written yet).
    With ``archive`` (a URL ``trailstore archive`` copied the trail to) segments pruned from
    the trail are read from there: every event once, whichever tier holds it.
    """

    def __init__(
        self,
        *,
        root_path: str | os.PathLike[str],
        storage_options: Mapping[str, Any] | None = None,
        allow_empty: bool = False,
        archive: str | None = None,
        archive_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.root_path = root_path
        self.backend: Backend = open_backend(root_path, **dict(storage_options or {}))
        self._follow_poll_interval = self.backend.follow_poll_interval
        if archive is not None:
            self.backend = TieredBackend(self.backend, Archive(archive, archive_options))
        self.report = ReadReport()
        if not allow_empty and not self.backend.trail_exists():
            raise TrailNotFoundError(
                f"no trail at {os.fspath(root_path)}: it holds no index.json and no segment"
            )

    def streams(self) -> list[StreamKey]:
        """Every ``domain/category`` stream of the trail."""
        return self.backend.list_streams()

    def iter_events(
        self,
        *,
        domains: Collection[str] | str | None = None,
        categories: Collection[str] | str | None = None,
        model_names: Collection[str] | str | None = None,
        min_event_id: int | None = None,
        max_event_id: int | None = None,
        min_timestamp: float | datetime | None = None,
        max_timestamp: float | datetime | None = None,
    ) -> Iterator[AuditEvent]:
        """Yield matching events in ascending ``event_id`` (merged across streams).

        Timestamps are Unix seconds or datetimes (naive ones are UTC); a time filter reads
        only the segments whose seals do not rule them out. When every stream is read without
        a time filter, missing and duplicate IDs are added to ``report``.
        """
        scan = self._scan(
            Selection.of(
                domains=domains, categories=categories, model_names=model_names,
                min_event_id=min_event_id, max_event_id=max_event_id,
                min_timestamp=min_timestamp, max_timestamp=max_timestamp,
            )
        )  # fmt: skip
        return (event for event, _ in scan)

    def iter_lines(
        self,
        *,
        domains: Collection[str] | str | None = None,
        categories: Collection[str] | str | None = None,
        model_names: Collection[str] | str | None = None,
        min_event_id: int | None = None,
        max_event_id: int | None = None,
        min_timestamp: float | datetime | None = None,
        max_timestamp: float | datetime | None = None,
    ) -> Iterator[bytes]:
        """Like ``iter_events``, but yield each event's line exactly as stored (``\\n``
        ended): another writer's key order and number spelling are kept, byte for byte."""
        scan = self._scan(
            Selection.of(
                domains=domains, categories=categories, model_names=model_names,
                min_event_id=min_event_id, max_event_id=max_event_id,
                min_timestamp=min_timestamp, max_timestamp=max_timestamp,
            )
        )  # fmt: skip
        return (line for _, line in scan)

    def tail(self, count: int, **filters: Unpack[EventFilters]) -> list[AuditEvent]:
        """The newest ``count`` events that ``iter_events(**filters)`` gives, in ascending
        ``event_id``, read from the end of each stream (only the segments holding them are
        read). IDs are not checked for gaps."""
        return [event for event, _ in self._tail(count, Selection.of(**filters))]

    def tail_lines(self, count: int, **filters: Unpack[EventFilters]) -> list[bytes]:
        """Like ``tail``, but the events' lines exactly as stored."""
        return [line for _, line in self._tail(count, Selection.of(**filters))]

    def follow(
        self,
        *,
        after_event_id: int | None = None,
        poll_interval: float | None = None,
        settle: float = DEFAULT_SETTLE_SECONDS,
        stop: threading.Event | None = None,
        **filters: Unpack[EventFilters],
    ) -> Iterator[AuditEvent]:
        """Yield the events ``iter_events(**filters)`` would as writers append them, until
        ``stop`` is set (the events due by then are yielded first), ``max_event_id`` is
        passed, or the caller stops.

        Starts after ``after_event_id`` (by default the last ID handed out when called): every
        event above it comes once, across rotation and from any number of writers, in
        ``event_id`` order - but an event whose writer lagged more than ``settle`` seconds
        behind higher IDs comes late rather than never. New events are looked for every
        ``poll_interval`` seconds; by default 0.1 s on a local disk and 2 s on object stores,
        where each look lists and reads objects, billed per request.
        """
        settings = self._follow_settings(poll_interval, settle)
        reads = self._follow(Selection.of(**filters), after_event_id, settings, stop)
        return (event for event, _ in reads)

    def follow_lines(
        self,
        *,
        after_event_id: int | None = None,
        poll_interval: float | None = None,
        settle: float = DEFAULT_SETTLE_SECONDS,
        stop: threading.Event | None = None,
        **filters: Unpack[EventFilters],
    ) -> Iterator[bytes]:
        """Like ``follow``, but yield each event's line exactly as stored."""
        settings = self._follow_settings(poll_interval, settle)
        reads = self._follow(Selection.of(**filters), after_event_id, settings, stop)
        return (line for _, line in reads)

    def _follow_settings(self, poll_interval: float | None, settle: float) -> FollowSettings:
        if poll_interval is None:
            poll_interval = self._follow_poll_interval
        for name, value in (("poll_interval", poll_interval), ("settle", settle)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ConfigurationError(f"{name} must be seconds >= 0, got {value!r}")
        return FollowSettings(poll_interval, settle)

    def _follow(
        self,
        selection: Selection,
        after_event_id: int | None,
        settings: FollowSettings,
        stop: threading.Event | None,
    ) -> Iterator[Read]:
        if after_event_id is None:  # the counter may lag what is written (index.json)
            newest = self.tail(1)
            written = newest[0].event_id if newest else 0
            after_event_id = max(self.backend.last_event_id(), written)
        elif isinstance(after_event_id, bool) or not isinstance(after_event_id, int):
            raise ConfigurationError(f"after_event_id must be an int, got {after_event_id!r}")
        bounds = selection.bounds
        first = max(after_event_id + 1, bounds.min_event_id or 1)
        cursors = {
            stream: self._cursor(stream, numbers, first)
            for stream, numbers in self._listed(Selection.of()).items()
        }
        reads = follow_reads(
            self.backend,
            cursors,
            lambda stream: self._cursor(stream, self._list_segments(stream), 1),
            first - 1,
            settings,
            stop,
            self._count_duplicate,
            bounds.max_event_id,
        )
        return (read for read in reads if selection.picks(read[0]))

    def _cursor(self, stream: StreamKey, numbers: list[int], first_id: int) -> StreamCursor:
        """A cursor at the start of the segment of ``stream`` that holds ``first_id``."""
        start = numbers[self._first_segment_holding(stream, numbers, first_id)] if numbers else 1
        return StreamCursor(self.backend, stream, start, self._events, self._count_torn)

    def _count_torn(self, stream: StreamKey, number: int) -> None:
        self.report.torn_lines += 1
        log.warning("skipping torn last line of %s segment %d", stream, number)

    def _count_duplicate(self) -> None:
        self.report.duplicate_ids += 1

    def _tail(self, count: int, selection: Selection) -> list[Read]:
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ConfigurationError(f"count must be a whole number >= 0, got {count!r}")
        if count == 0:
            return []
        bounds, models = selection.bounds, selection.models
        listed = self._listed(selection)

        def backwards(stream: StreamKey, number: int) -> Iterator[bytes]:
            try:
                yield from lines_backwards(self.backend, stream, number)
            except OSError as exc:
                self._report_missing(stream, number, exc)

        def parsed(stream: StreamKey, number: int, line: bytes) -> Read | None:
            if not bounds.may_hold(line):
                return None
            read = next(self._events(stream, number, iter((line,))), None)
            return read if read is not None and bounds.admits(read[0], models) else None

        return newest_reads(listed, count, backwards, parsed, SealIndex(self.backend), bounds)

    def _scan(self, selection: Selection) -> Iterator[Read]:
        whole_trail, bounds = selection.whole_trail, selection.bounds
        # the counter before the listing: every ID up to it is written by then
        allocated = self.backend.last_event_id() if whole_trail else 0
        listed = self._listed(selection)
        seals = SealIndex(self.backend)
        per_stream = [
            self._stream_events(stream, numbers, bounds, seals)
            for stream, numbers in listed.items()
        ]
        merged: Iterator[Read] = heapq.merge(*per_stream, key=_event_id_of)
        # segments skipped by their time range hold IDs too: a gap check would see them missing
        if whole_trail and not bounds.by_time:
            if bounds.max_event_id is not None:
                allocated = min(allocated, bounds.max_event_id)
            first = max(bounds.min_event_id or 1, self._pruned_through(listed) + 1)
            merged = self._checking_sequence(merged, first, allocated)
        models = selection.models
        if models is None and not (bounds.by_time or bounds.by_id):
            yield from merged  # nothing to filter: a full scan pays for no check per event
            return
        for read in merged:
            if bounds.admits(read[0], models):
                yield read

    def _listed(self, selection: Selection) -> dict[StreamKey, list[int]]:
        """The segment numbers of every stream ``selection`` reads."""
        return {
            stream: self._list_segments(stream)
            for stream in self.backend.list_streams()
            if selection.holds_stream(stream.domain, stream.category)
        }

    def _checking_sequence(
        self, reads: Iterator[Read], expected: int, allocated: int
    ) -> Iterator[Read]:
        """Pass ``reads`` through, recording gaps and duplicates in the ID sequence.

        ``allocated`` is the counter when the scan began: every ID up to it was written by
        then, so it is checked. Later IDs are passed through unchecked: streams are read one
        after another while writers go on, so a stream read early lacks what was written since.
        An ID below the highest seen so far is a duplicate, unless it fills a gap (an ID that
        was out of order, e.g. in a foreign segment): exact, in memory bounded by the gaps.
        """
        previous = expected - 1
        gaps: list[list[int]] = []  # [first, last] ranges, ascending
        try:
            for read in reads:
                event_id = read[0].event_id
                if expected <= event_id <= allocated:
                    if event_id > previous:
                        if event_id > previous + 1:
                            gaps.append([previous + 1, event_id - 1])
                        previous = event_id
                    elif not _fill(gaps, event_id):
                        self.report.duplicate_ids += 1
                        log.warning("event_id %d appears more than once", event_id)
                yield read
            if allocated > previous:
                gaps.append([previous + 1, allocated])
        finally:
            for first, last in gaps:
                self._record_gap(first, last)

    def _record_gap(self, first: int, last: int) -> None:
        self.report.gaps.append((first, last))
        log.warning(
            "event IDs %d..%d are missing (allocated by a writer that did not finish?)", first, last
        )

    def _list_segments(self, stream: StreamKey) -> list[int]:
        try:
            return self.backend.list_segments(stream)
        except OSError as exc:  # unlistable (permissions), or replaced by a file
            self.report.unreadable_streams += 1
            log.warning("cannot list the segments of stream %s: %s", stream, exc)
            return []

    def _pruned_through(self, listed: Mapping[StreamKey, list[int]]) -> int:
        """The highest ID the pruned segments may hold. Pruning removes a stream's oldest
        segments and leaves a marker where each was; a stream whose segments start above 1
        with a marker for each one before was pruned up to there, and the seal of the last
        says how far. IDs up to there are not checked for gaps (they are archived); segments
        missing without markers were lost, and their IDs are reported missing."""
        through = 0
        for stream, numbers in listed.items():
            if not numbers or numbers[0] == 1:
                continue
            names = set(self.backend.list_evidence(f"{stream.domain}/{stream.category}"))
            markers = (pruned_path(stream, n).rsplit("/", 1)[1] for n in range(1, numbers[0]))
            if not all(marker in names for marker in markers):
                continue
            try:
                seal = Seal.decode(self.backend.get_evidence(seal_path(stream, numbers[0] - 1)))
            except (FileNotFoundError, DamagedEvidenceError):
                continue
            self.report.pruned_segments += numbers[0] - 1
            if seal.ids is not None:
                through = max(through, seal.ids[1])
        if through:
            log.info(
                "the oldest segments of this trail were pruned (IDs up to %d may be there); "
                "read it with its archive to see them",
                through,
            )
        return through

    def _stream_events(
        self, stream: StreamKey, numbers: list[int], bounds: ReadBounds, seals: SealIndex
    ) -> Iterator[Read]:
        min_event_id, max_event_id = bounds.min_event_id, bounds.max_event_id
        if min_event_id is not None:
            numbers = numbers[self._first_segment_holding(stream, numbers, min_event_id) :]
        window = _IdWindow(min_event_id or 0, max_event_id)
        for number in numbers:
            if seals.can_skip(stream, number, bounds):
                continue
            lines = self._lines(stream, number)
            if bounds.by_id:
                lines = window.within(lines)
            if bounds.by_time:
                lines = filter(bounds.may_hold, lines)
            yield from self._events(stream, number, lines)
            if window.passed:
                return

    def _events(self, stream: StreamKey, number: int, lines: Iterator[bytes]) -> Iterator[Read]:
        """Parse ``lines``; the damaged ones are counted and logged, never fatal."""
        domain, category = stream
        for line in lines:
            try:
                event: AuditEvent | None = decode_line(line)
            except ValueError:  # pydantic's ValidationError is one
                event = None
            if (
                event is not None
                and event.event_id >= 1
                and line.endswith(b"\n")
                and event.domain == domain
                and event.category == category
            ):
                yield event, line
            else:
                self._report_damage(stream, number, line, event)

    def _first_segment_holding(self, stream: StreamKey, numbers: list[int], event_id: int) -> int:
        """Position of the last segment starting at or below ``event_id`` (binary search).

        A segment whose first line is unreadable counts as starting too late, which can only
        make the scan start earlier, never skip an event; so does stepping back while the
        previous segment does not start lower, as a damaged first ID can make it seem to.
        """
        low, high = 0, len(numbers) - 1
        while low < high:
            middle = (low + high + 1) // 2
            first = self._first_event_id(stream, numbers[middle])
            if first is not None and first <= event_id:
                low = middle
            else:
                high = middle - 1
        first = self._first_event_id(stream, numbers[low]) if low > 0 else None
        while low > 0:
            previous = self._first_event_id(stream, numbers[low - 1])
            if previous is not None and first is not None and previous < first:
                break
            low, first = low - 1, previous
        return low

    def _first_event_id(self, stream: StreamKey, number: int) -> int | None:
        lines = self.backend.read_segment(stream, number)
        try:
            return quick_event_id(next(iter(lines), b""))
        except OSError:
            return None
        finally:
            close = getattr(lines, "close", None)
            if close is not None:
                close()

    def _lines(self, stream: StreamKey, number: int) -> Iterator[bytes]:
        try:
            yield from self.backend.read_segment(stream, number)
        except OSError as exc:  # deleted, replaced by a directory, unreadable
            self._report_missing(stream, number, exc)

    def _report_missing(self, stream: StreamKey, number: int, error: OSError) -> None:
        self.report.missing_segments += 1
        log.warning("segment %s/%d vanished while reading: %s", stream, number, error)

    def _report_damage(
        self, stream: StreamKey, number: int, line: bytes, event: AuditEvent | None
    ) -> None:
        if not line.endswith(b"\n"):
            self._count_torn(stream, number)
        elif event is None:
            self.report.malformed_lines += 1
            log.warning("skipping malformed line in %s segment %d", stream, number)
        else:
            self.report.malformed_lines += 1
            log.warning("skipping event %d filed under the wrong stream %s", event.event_id, stream)
