"""Reading guarantees every backend keeps: exact time filters that skip sealed segments, the
newest events read from the end, following writers live, and state as of a moment.

Mixed into ``BackendConformance``: its ``open_writer``, ``reader``, ``trail_url`` and
``storage_options`` fixtures serve these tests too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from trailstore.events import AuditEvent, AuditPayload
from trailstore.reader import AuditTrailReader
from trailstore.replay import AuditReplayer

BASE_TIME = 1_700_000_000.0
#: how far a writer's clock may be off: timestamps go back and forth by up to this much
SKEW_SECONDS = 6


def skewed_time(number: int) -> float:
    """A timestamp for the ``number``-th event from clocks that disagree: mostly rising,
    now and then seconds behind the one before (several hosts, a clock stepped back)."""
    return BASE_TIME + number + ((number * 7) % (2 * SKEW_SECONDS + 1) - SKEW_SECONDS)


def _event(number: int, **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "domain": "shop",
        "category": ("orders", "invoices")[number % 2],
        "model_name": ("Order", "Invoice", "Refund")[number % 3],
        "operation": "update" if number >= 3 else "create",
        "logical_user_id": f"user-{number % 4}",
        "payload": AuditPayload.from_update({"n": number - 3}, {"n": number, "pad": "x" * 40})
        if number >= 3
        else AuditPayload.from_create({"n": number}),
        "timestamp": skewed_time(number),
    }
    fields.update(overrides)
    return fields


def _counting_reads(reader: AuditTrailReader) -> list[tuple[str, int]]:
    """Record which segments ``reader`` opens from now on."""
    opened: list[tuple[str, int]] = []
    backend = reader.backend
    read_segment, read_range = backend.read_segment, backend.read_range

    def counted_segment(stream: Any, number: int) -> Iterator[bytes]:
        opened.append((str(stream), number))
        return read_segment(stream, number)

    def counted_range(stream: Any, number: int, start: int, end: int | None) -> bytes:
        opened.append((str(stream), number))
        return read_range(stream, number, start, end)

    backend.read_segment = counted_segment  # type: ignore[method-assign]
    backend.read_range = counted_range  # type: ignore[method-assign]
    return opened


class ReadingConformance:
    """Time index, latest N, follow and as-of replay, on the backend under test."""

    EVENTS = 48

    def _write(self, open_writer: Callable[..., Any], count: int | None = None) -> None:
        with open_writer(max_file_size_bytes=1500) as writer:
            for number in range(count or self.EVENTS):
                writer.append_event(**_event(number))

    def test_time_filters_are_exact_with_skewed_clocks_and_skip_sealed_segments(
        self, open_writer: Callable[..., Any], reader: AuditTrailReader
    ) -> None:
        self._write(open_writer)
        everything = list(reader.iter_events())
        segments = sum(len(reader.backend.list_segments(s)) for s in reader.streams())
        windows = [
            (BASE_TIME + 30, None),
            (None, BASE_TIME + 9),
            (BASE_TIME + 20, BASE_TIME + 26),
            (BASE_TIME + 12.5, BASE_TIME + 12.5),
            (BASE_TIME + 1000, None),
        ]
        for low, high in windows:
            opened = _counting_reads(reader)
            got = [e.event_id for e in reader.iter_events(min_timestamp=low, max_timestamp=high)]
            expected = [
                e.event_id
                for e in everything
                if (low is None or e.timestamp >= low) and (high is None or e.timestamp <= high)
            ]
            assert got == expected, (low, high)
            if low is not None and low >= BASE_TIME + 30:
                assert len(set(opened)) < segments, "sealed segments before the window were read"

    def test_tail_is_the_end_of_the_same_query(
        self, open_writer: Callable[..., Any], reader: AuditTrailReader
    ) -> None:
        self._write(open_writer)
        queries: list[dict[str, Any]] = [
            {},
            {"categories": "invoices"},
            {"model_names": "Refund", "max_event_id": 40},
            {"min_timestamp": BASE_TIME + 10, "max_timestamp": BASE_TIME + 30},
            {"min_event_id": 45},
        ]
        for filters in queries:
            everything = [e.event_id for e in reader.iter_events(**filters)]
            for count in (0, 1, 5, 1000):
                tail = [e.event_id for e in reader.tail(count, **filters)]
                assert tail == (everything[-count:] if count else []), (filters, count)
        lines = reader.tail_lines(3)
        assert lines == list(reader.iter_lines(min_event_id=self.EVENTS - 2))

    def test_follow_yields_each_new_event_once_in_order_across_rotation(
        self, open_writer: Callable[..., Any], reader: AuditTrailReader
    ) -> None:
        self._write(open_writer, 10)
        start = reader.backend.last_event_id()
        stop = threading.Event()
        followed: list[AuditEvent] = []
        invoices: list[int] = []

        # both start now, after the last ID handed out; they are read in threads
        every_event = reader.follow(poll_interval=0.02, stop=stop)
        invoice_events = reader.follow(categories="invoices", poll_interval=0.02, stop=stop)

        def follow_all() -> None:
            followed.extend(every_event)

        def follow_invoices() -> None:
            invoices.extend(event.event_id for event in invoice_events)

        followers = [threading.Thread(target=follow_all), threading.Thread(target=follow_invoices)]
        for thread in followers:
            thread.start()
        with open_writer(max_file_size_bytes=1500) as writer:
            for number in range(10, 40):
                writer.append_event(**_event(number))
        stop.set()
        for thread in followers:
            thread.join(timeout=60)
        assert [e.event_id for e in followed] == list(range(start + 1, start + 31))
        assert [e.model_dump() for e in followed] == [
            e.model_dump() for e in reader.iter_events(min_event_id=start + 1)
        ]
        assert invoices == [
            e.event_id for e in reader.iter_events(min_event_id=start + 1, categories="invoices")
        ]
        assert reader.report.clean

    def test_replay_as_of_applies_the_events_stamped_by_then(
        self, open_writer: Callable[..., Any], reader: AuditTrailReader
    ) -> None:
        self._write(open_writer)
        replayer = AuditReplayer(reader=reader)
        for moment in (BASE_TIME + 5, BASE_TIME + 21.5, BASE_TIME + 500):
            result = replayer.reconstruct_state(domain="shop", category="orders", as_of=moment)
            expected: dict[str, Any] = {}
            applied = [
                event
                for event in reader.iter_events(domains="shop", categories="orders")
                if event.timestamp <= moment
            ]
            for event in applied:
                replayer.apply(expected, event)
            assert result.state == expected
            assert result.applied_events == len(applied)
            assert result.last_event_id == (applied[-1].event_id if applied else None)
