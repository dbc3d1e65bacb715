"""The conformance suite every backend's tests subclass.

A backend's test module needs only::

    class TestMyBackend(BackendConformance, CrashConformance):
        @pytest.fixture
        def trail_url(self) -> str: ...          # a fresh, empty trail for each test

        def damage_tail(self, trail_url, storage_options, domain, category, data) -> None:
            ...                                   # append raw bytes, bypassing the writer

(``damage_tail`` comes with the suite for backends built on ``LogBackend``) and, if the
backend needs them, a ``storage_options`` fixture, and the optional hooks
``plant_symlink`` (a filesystem with links) and ``failing_writes`` (a way to make the storage
refuse writes). Each test checks one guarantee the README lists — through the public writer
and reader, or through one method of the ``Backend``/``CommitSession`` contract.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from trailstore.backend import Backend, CommitSession, StreamKey
from trailstore.backends.logged import LogBackend
from trailstore.encoding import encode_body
from trailstore.errors import (
    ConfigurationError,
    InvalidEventError,
    InvalidNameError,
    ReplayError,
    StorageError,
    TrailNotFoundError,
)
from trailstore.events import AuditEvent, AuditPayload
from trailstore.lines import line_event_id, render_line
from trailstore.reader import AuditTrailReader
from trailstore.registry import open_backend
from trailstore.replay import AuditReplayer
from trailstore.store.commits import Commit, OpenSegment
from trailstore.testing.reading import ReadingConformance
from trailstore.writer import AuditTrailWriter

UNSAFE_NAMES = ["", ".", "..", "a/b", "a\\b", "nul\x00byte", "x" * 256, "é" * 128]


def sample_event(number: int = 0, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments of ``append_event`` for a small, valid create event."""
    fields: dict[str, Any] = {
        "domain": "shop",
        "category": "orders",
        "model_name": "Order",
        "operation": "create",
        "logical_user_id": "user-1",
        "payload": AuditPayload.from_create({"id": number, "total": number * 10}),
    }
    fields.update(overrides)
    return fields


class BackendConformance(ReadingConformance):
    """The guarantees every backend keeps (the README's "Guarantees"), reading ones included."""

    @pytest.fixture
    def trail_url(self) -> str:
        raise NotImplementedError("a backend's test class provides the trail_url fixture")

    @pytest.fixture
    def storage_options(self) -> dict[str, Any]:
        return {}

    def damage_tail(
        self,
        trail_url: str,
        storage_options: dict[str, Any],
        domain: str,
        category: str,
        data: bytes,
    ) -> None:
        """Append ``data`` to the stream's newest segment without going through the writer.
        Trails kept as a log of commits (object stores, memory) are served here; a backend
        with its own storage overrides it."""
        backend = open_backend(trail_url, **storage_options)
        if not isinstance(backend, LogBackend):
            raise NotImplementedError("this backend's tests must say how to damage a tail")
        append_raw_to_log(backend, domain, category, data)

    def plant_symlink(
        self, trail_url: str, storage_options: dict[str, Any], relative: str, target: str
    ) -> None:
        """Make ``relative`` (below the root) a symbolic link to ``target``; storage without
        links skips the tests that need one."""
        pytest.skip("this storage has no symbolic links")

    @contextlib.contextmanager
    def failing_writes(self, trail_url: str, storage_options: dict[str, Any]) -> Iterator[None]:
        """While open, every write of segment data fails (a full disk, a refusing server)."""
        pytest.skip("this backend's tests give no way to make its writes fail")
        yield

    # -- helpers -----------------------------------------------------------------------------

    @pytest.fixture
    def open_writer(self, trail_url: str, storage_options: dict[str, Any]) -> Iterator[Any]:
        writers: list[AuditTrailWriter] = []

        def factory(**settings: Any) -> AuditTrailWriter:
            writer = AuditTrailWriter(
                root_path=trail_url, storage_options=storage_options, **settings
            )
            writers.append(writer)
            return writer

        yield factory
        for writer in writers:
            writer.close()

    @pytest.fixture
    def reader(self, trail_url: str, storage_options: dict[str, Any]) -> AuditTrailReader:
        """A reader made before the test writes (the trail may not exist yet)."""
        return AuditTrailReader(
            root_path=trail_url, storage_options=storage_options, allow_empty=True
        )

    @pytest.fixture
    def backend(self, trail_url: str, storage_options: dict[str, Any]) -> Backend:
        return open_backend(trail_url, **storage_options)

    @staticmethod
    def ids(reader: AuditTrailReader, **filters: Any) -> list[int]:
        return [event.event_id for event in reader.iter_events(**filters)]

    # -- 1. unique, gap-free IDs -------------------------------------------------------------

    def test_ids_are_contiguous_across_reopen(
        self, open_writer: Any, reader: AuditTrailReader
    ) -> None:
        with open_writer() as first:
            returned = [first.append_event(**sample_event(i)).event_id for i in range(5)]
        with open_writer() as second:
            returned += [second.append_event(**sample_event(i)).event_id for i in range(5, 9)]
        assert returned == list(range(1, 10))
        assert self.ids(reader) == returned
        assert reader.report.clean

    def test_ids_are_unique_across_threads(
        self, open_writer: Any, reader: AuditTrailReader
    ) -> None:
        writer = open_writer(max_file_size_bytes=4096)
        categories = ["orders", "refunds", "carts"]
        returned: list[int] = []
        lock = threading.Lock()

        def work(worker: int) -> None:
            for i in range(40):
                event = writer.append_event(**sample_event(i, category=categories[worker % 3]))
                with lock:
                    returned.append(event.event_id)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        writer.close()
        assert sorted(returned) == list(range(1, 241))
        assert self.ids(reader) == list(range(1, 241))
        for category in categories:
            stream_ids = self.ids(reader, categories=[category])
            assert stream_ids == sorted(stream_ids) and len(stream_ids) == 80

    def test_append_events_is_one_contiguous_batch(
        self, open_writer: Any, reader: AuditTrailReader
    ) -> None:
        with open_writer() as writer:
            writer.append_event(**sample_event(0))
            batch = writer.append_events(
                [sample_event(i, category=("a", "b")[i % 2]) for i in range(1, 11)]
            )
        assert [event.event_id for event in batch] == list(range(2, 12))
        assert self.ids(reader) == list(range(1, 12))

    # -- 2. order ----------------------------------------------------------------------------

    def test_events_read_back_equal_and_in_order(
        self, open_writer: Any, reader: AuditTrailReader
    ) -> None:
        written: list[AuditEvent] = []
        with open_writer(max_file_size_bytes=1024) as writer:
            for i in range(60):
                category = ("orders", "customers")[i % 2]
                written.append(writer.append_event(**sample_event(i, category=category)))
        read = list(reader.iter_events())
        assert read == written
        assert self.ids(reader, categories="orders") == [e.event_id for e in written[::2]]

    # -- 3. durability modes -----------------------------------------------------------------

    @pytest.mark.parametrize("durability", ["fsync", "flush", "batch"])
    def test_every_durability_mode_keeps_every_event(
        self, open_writer: Any, reader: AuditTrailReader, durability: str
    ) -> None:
        writer = open_writer(durability=durability, flush_interval=0.05, flush_max_events=7)
        returned = [writer.append_event(**sample_event(i)).event_id for i in range(30)]
        writer.close()
        assert returned == list(range(1, 31))
        assert self.ids(reader) == returned

    # -- 4. rotation -------------------------------------------------------------------------

    def test_segments_stay_within_the_size_bound(
        self, open_writer: Any, backend: Backend, reader: AuditTrailReader
    ) -> None:
        limit = 700
        with open_writer(max_file_size_bytes=limit) as writer:
            for i in range(50):
                writer.append_event(**sample_event(i))
            writer.append_events([sample_event(i) for i in range(50, 80)])
        (stream,) = backend.list_streams()
        numbers = backend.list_segments(stream)
        assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) > 3
        assert all(backend.segment_size(stream, n) <= limit for n in numbers)
        assert self.ids(reader) == list(range(1, 81))

    def test_oversized_event_gets_a_segment_of_its_own(
        self, open_writer: Any, backend: Backend, reader: AuditTrailReader
    ) -> None:
        limit = 600
        huge = AuditPayload.from_create({"id": 1, "blob": "x" * 2000})
        with open_writer(max_file_size_bytes=limit) as writer:
            writer.append_event(**sample_event(0))
            writer.append_event(**sample_event(1, payload=huge))
            writer.append_event(**sample_event(2))
        (stream,) = backend.list_streams()
        lines = [list(backend.read_segment(stream, n)) for n in backend.list_segments(stream)]
        assert [len(segment) for segment in lines] == [1, 1, 1]
        assert len(lines[1][0]) > limit
        assert self.ids(reader) == [1, 2, 3]

    # -- 5. names are safe -------------------------------------------------------------------

    @pytest.mark.parametrize("field", ["domain", "category"])
    @pytest.mark.parametrize("name", UNSAFE_NAMES)
    def test_unsafe_names_are_rejected_before_anything_is_written(
        self, open_writer: Any, backend: Backend, reader: AuditTrailReader, field: str, name: str
    ) -> None:
        writer = open_writer()
        with pytest.raises(InvalidNameError):
            writer.append_event(**sample_event(0, **{field: name}))
        with pytest.raises(InvalidNameError):
            writer.append_events([sample_event(1), sample_event(2, **{field: name})])
        assert backend.list_streams() == []
        assert writer.append_event(**sample_event(3)).event_id == 1
        writer.close()
        assert self.ids(reader) == [1]

    # -- 6. bad input costs nothing ----------------------------------------------------------

    @pytest.mark.parametrize(
        "payload",
        [
            {"after": {"when": object()}},
            {"after": {"value": float("nan")}},
            {"after": {"raw": b"\x00bytes"}},
            {"before": "not a mapping"},
        ],
        ids=["object", "nan", "bytes", "wrong-type"],
    )
    def test_unserialisable_payload_spends_no_id(
        self, open_writer: Any, reader: AuditTrailReader, payload: dict[str, Any]
    ) -> None:
        writer = open_writer()
        writer.append_event(**sample_event(0))
        with pytest.raises(InvalidEventError):
            writer.append_event(**sample_event(1, payload=payload))
        assert writer.append_event(**sample_event(2)).event_id == 2
        writer.close()
        assert self.ids(reader) == [1, 2]
        assert reader.report.clean

    @pytest.mark.parametrize("field", ["model_name", "logical_user_id"])
    @pytest.mark.parametrize("value", ["", "   "])
    def test_blank_model_name_or_user_spends_no_id(
        self, open_writer: Any, reader: AuditTrailReader, field: str, value: str
    ) -> None:
        writer = open_writer()
        with pytest.raises(InvalidEventError, match=f"{field} must not be empty"):
            writer.append_event(**sample_event(0, **{field: value}))
        assert writer.append_event(**sample_event(1)).event_id == 1
        writer.close()
        assert self.ids(reader) == [1]

    @pytest.mark.parametrize(
        ("operation", "payload"),
        [
            ("create", {"id": 7, "status": "paid"}),  # a record, not a payload
            ("create", {"aftr": {"id": 7}}),
            ("update", {"after": {"id": 7}, "delta": {"id": {"od": 1}}}),
            ("create", {"before": {"id": 7}}),  # a create says what was created
            ("delete", {"after": {"id": 7}}),  # a delete says what was deleted
            ("update", {"before": {"id": 7}}),  # an update says what changed
        ],
        ids=["bare-record", "misspelt-key", "misspelt-change", "create", "delete", "update"],
    )
    def test_payload_with_unknown_keys_or_unfit_for_its_operation_spends_no_id(
        self, open_writer: Any, reader: AuditTrailReader, operation: str, payload: dict[str, Any]
    ) -> None:
        writer = open_writer()
        with pytest.raises(InvalidEventError):
            writer.append_event(**sample_event(0, operation=operation, payload=payload))
        with pytest.raises(InvalidEventError):
            writer.append_events(
                [sample_event(1), sample_event(2, operation=operation, payload=payload)]
            )
        assert writer.append_event(**sample_event(3)).event_id == 1
        writer.close()
        assert self.ids(reader) == [1] and reader.report.clean

    @pytest.mark.parametrize("shape", ["nested-lists", "nested-objects", "long-integer"])
    def test_accepted_input_reads_back_equal_at_the_parser_limits(
        self, open_writer: Any, reader: AuditTrailReader, shape: str
    ) -> None:
        """Find the first size the writer refuses; the size below it must read back equal,
        through this library's reader and through the standard ``json`` module."""

        def value(size: int) -> Any:
            if shape == "long-integer":
                return 7 * (10**size - 1) // 9  # size sevens, built without str()
            nested: Any = 1
            for _ in range(size):
                nested = [nested] if shape == "nested-lists" else {"k": nested}
            return nested

        writer = open_writer()
        accepted: list[AuditEvent] = []
        refused_at = None
        for size in range(150, 10_000) if shape != "long-integer" else range(4000, 10_000, 50):
            try:
                event = writer.append_event(
                    **sample_event(0, payload={"after": {"v": value(size)}})
                )
            except InvalidEventError:
                refused_at = size
                break
            accepted.append(event)
        assert refused_at is not None, "no limit found: the writer accepts what cannot be read"
        if shape == "long-integer":  # the exact boundary, digit by digit
            for size in range(refused_at - 49, refused_at):
                try:
                    accepted.append(
                        writer.append_event(
                            **sample_event(0, payload={"after": {"v": value(size)}})
                        )
                    )
                except InvalidEventError:
                    refused_at = size
                    break
        writer.close()
        assert [event.event_id for event in accepted] == list(range(1, len(accepted) + 1))
        assert list(reader.iter_events()) == accepted
        assert reader.report.clean
        widest = accepted[-1]
        assert widest.payload is not None and widest.payload.after == {"v": value(refused_at - 1)}
        (line,) = reader.iter_lines(min_event_id=widest.event_id)
        assert json.loads(line)["payload"]["after"] == {"v": value(refused_at - 1)}

    # -- 7. readers tolerate damage; the writer repairs a torn tail -------------------------

    def test_torn_tail_is_reported_then_repaired_on_open(
        self, open_writer: Any, trail_url: str, storage_options: dict[str, Any]
    ) -> None:
        with open_writer() as writer:
            for i in range(3):
                writer.append_event(**sample_event(i))
        self.damage_tail(trail_url, storage_options, "shop", "orders", b'{"event_id":4,"times')
        damaged = AuditTrailReader(root_path=trail_url, storage_options=storage_options)
        assert self.ids(damaged) == [1, 2, 3]
        assert damaged.report.torn_lines + damaged.report.malformed_lines == 1
        with open_writer() as writer:
            assert writer.append_event(**sample_event(9)).event_id == 4
        repaired = AuditTrailReader(root_path=trail_url, storage_options=storage_options)
        assert self.ids(repaired) == [1, 2, 3, 4]
        assert repaired.report.clean

    def test_lines_are_read_back_byte_for_byte_as_stored(
        self, open_writer: Any, trail_url: str, storage_options: dict[str, Any]
    ) -> None:
        """A line of another writer (its own key order and number spelling) is yielded by
        ``iter_lines`` exactly as stored, while ``iter_events`` parses it."""
        with open_writer() as writer:
            written = writer.append_event(**sample_event(0))
        foreign = (
            b'{"timestamp":1700000000.0,"event_id":2,"domain":"shop","category":"orders",'
            b'"model_name":"Order","operation":"update","logical_user_id":"legacy",'
            b'"payload":{"delta":{"rate":{"old":1e-05,"new":2.5E+3}}}}\n'
        )
        self.damage_tail(trail_url, storage_options, "shop", "orders", foreign)
        reader = AuditTrailReader(root_path=trail_url, storage_options=storage_options)
        first, second = reader.iter_lines()
        assert first == b'{"event_id":1,' + first[len(b'{"event_id":1,') :]
        assert second == foreign
        assert list(reader.iter_lines(min_event_id=2, model_names="Order")) == [foreign]
        events = list(reader.iter_events())
        assert events[0] == written and events[1].event_id == 2
        assert events[1].payload is not None and events[1].payload.delta is not None
        assert events[1].payload.delta["rate"].old == 1e-05

    # -- reading: filters and replay ---------------------------------------------------------

    def test_filters_select_exactly_the_matching_events(
        self, open_writer: Any, reader: AuditTrailReader
    ) -> None:
        with open_writer(max_file_size_bytes=2048) as writer:
            for i in range(40):
                writer.append_event(
                    **sample_event(
                        i,
                        domain=("shop", "billing")[i % 2],
                        model_name=("Order", "Invoice", "Refund")[i % 3],
                        timestamp=1_700_000_000 + i,
                    )
                )
        assert self.ids(reader, domains=["billing"]) == list(range(2, 41, 2))
        assert self.ids(reader, model_names="Refund") == list(range(3, 41, 3))
        assert self.ids(reader, min_event_id=35) == list(range(35, 41))
        assert self.ids(reader, max_event_id=4) == [1, 2, 3, 4]
        window = {"min_timestamp": 1_700_000_010, "max_timestamp": 1_700_000_012}
        assert self.ids(reader, **window) == [11, 12, 13]
        aware = datetime.fromtimestamp(1_700_000_010, UTC)
        naive = aware.replace(tzinfo=None) + timedelta(seconds=2)  # naive datetimes are UTC
        assert self.ids(reader, min_timestamp=aware, max_timestamp=naive) == [11, 12, 13]

    def test_a_root_without_a_trail_is_an_error_unless_empty_is_allowed(
        self, trail_url: str, storage_options: dict[str, Any], open_writer: Any
    ) -> None:
        with pytest.raises(TrailNotFoundError, match="no trail at"):
            AuditTrailReader(root_path=trail_url, storage_options=storage_options)
        empty = AuditTrailReader(
            root_path=trail_url, storage_options=storage_options, allow_empty=True
        )
        assert self.ids(empty) == [] and empty.report.clean
        open_writer().close()  # opened, nothing written: a trail all the same
        opened = AuditTrailReader(root_path=trail_url, storage_options=storage_options)
        assert self.ids(opened) == [] and opened.report.clean

    def test_replay_state_is_keyed_by_model_name(
        self, open_writer: Any, reader: AuditTrailReader
    ) -> None:
        """The original semantics: the model name identifies the record."""
        settings = {"theme": "dark", "lang": "en"}
        changed = {"theme": "light", "lang": "en", "tz": "UTC"}
        events = [
            ("Settings", "create", AuditPayload.from_create(settings)),
            ("Settings", "update", AuditPayload.from_update(settings, changed)),  # delta only
            ("Profile", "create", AuditPayload.from_create({"name": "Ada"})),
            ("Profile", "delete", AuditPayload.from_delete({"name": "Ada"})),
            ("Profile", "create", AuditPayload.from_create({"name": "Grace"})),
            ("Settings", "update", {"after": {"theme": "blue", "lang": "fr"}}),  # replaces
            ("Settings", "update", {"delta": {"lang": {"old": "fr", "removed": True}}}),
        ]
        with open_writer(max_file_size_bytes=1024) as writer:
            writer.append_event(**sample_event(0, category="other", model_name="Settings"))
            for model_name, operation, payload in events:
                writer.append_event(
                    **sample_event(0, model_name=model_name, operation=operation, payload=payload)
                )
        replayer = AuditReplayer(reader=reader)
        result = replayer.reconstruct_state(domain="shop", category="orders")
        assert result.state == {"Settings": {"theme": "blue"}, "Profile": {"name": "Grace"}}
        assert (result.last_event_id, result.applied_events) == (8, 7)
        partial = replayer.reconstruct_state(domain="shop", category="orders", max_event_id=5)
        assert partial.state == {"Settings": changed}
        empty = replayer.reconstruct_state(domain="shop", category="nothing")
        assert (empty.state, empty.last_event_id, empty.applied_events) == ({}, None, 0)

    def test_replay_keyed_by_a_field_rebuilds_each_record(
        self, open_writer: Any, reader: AuditTrailReader
    ) -> None:
        records: dict[int, dict[str, Any]] = {
            i: {"id": i, "status": "new", "note": None} for i in range(5)
        }
        with open_writer(max_file_size_bytes=1024) as writer:
            for record in records.values():
                writer.append_event(**sample_event(0, payload=AuditPayload.from_create(record)))
            for i in (1, 3):
                changed = {"id": i, "status": "paid", "tracking": f"T{i}"}
                payload = AuditPayload.from_update(records[i], changed, key_field="id")
                writer.append_event(**sample_event(0, operation="update", payload=payload))
                records[i] = changed
            writer.append_event(
                **sample_event(0, operation="delete", payload=AuditPayload.from_delete(records[4]))
            )
            del records[4]
            writer.append_event(**sample_event(0, payload=AuditPayload.from_create(records[0])))
        result = AuditReplayer(reader=reader, key_field="id").reconstruct_state(
            domain="shop", category="orders"
        )
        assert result.state == {"Order": {str(k): v for k, v in records.items()}}
        assert (result.last_event_id, result.applied_events) == (9, 9)

    def test_keyed_replay_refuses_an_event_without_the_key(
        self, open_writer: Any, reader: AuditTrailReader
    ) -> None:
        with open_writer() as writer:
            writer.append_event(**sample_event(1))
            writer.append_event(**sample_event(2, payload={"after": {"uuid": "u-2"}}))
        with pytest.raises(ReplayError, match=r"event 2 \(create of Order in shop/orders\)"):
            AuditReplayer(reader=reader, key_field="id").reconstruct_state(
                domain="shop", category="orders"
            )

    # -- the Backend and CommitSession contract, method by method ----------------------------

    @staticmethod
    def lines_for(session: CommitSession, count: int) -> tuple[int, list[bytes]]:
        """Allocate ``count`` IDs in ``session`` and return the first with their lines."""
        first = session.allocate(count)
        body = encode_body(AuditEvent(event_id=0, timestamp=1.0, **sample_event(0)))
        return first, [render_line(first + n, body) for n in range(count)]

    def test_read_segment_of_a_missing_segment_raises_file_not_found(
        self, open_writer: Any, backend: Backend
    ) -> None:
        with open_writer() as writer:
            writer.append_event(**sample_event(0))
        with pytest.raises(FileNotFoundError):
            list(backend.read_segment(StreamKey("shop", "orders"), 999))
        with pytest.raises(FileNotFoundError):
            list(backend.read_segment(StreamKey("shop", "nothing"), 1))

    def test_abort_writes_nothing_and_gives_the_ids_back(
        self, open_writer: Any, backend: Backend, reader: AuditTrailReader
    ) -> None:
        open_writer().close()
        backend.open_for_writing()
        session = backend.begin(max_segment_bytes=4096)
        first, lines = self.lines_for(session, 3)
        session.append(StreamKey("shop", "orders"), lines)
        session.abort()
        assert first == 1
        again = backend.begin(max_segment_bytes=4096)
        assert self.lines_for(again, 1)[0] == 1, "an aborted session spent its IDs"
        again.abort()
        assert self.ids(reader) == [] and backend.list_streams() == []

    def test_ids_handed_out_stay_spent_after_an_abort(
        self, open_writer: Any, backend: Backend, reader: AuditTrailReader
    ) -> None:
        open_writer().close()
        backend.open_for_writing()
        session = backend.begin(max_segment_bytes=4096, hand_out=True)
        assert session.hand_out
        handed_out, _ = self.lines_for(session, 2)
        session.abort()
        later = backend.begin(max_segment_bytes=4096)
        _, lines = self.lines_for(later, 1)
        later.append(StreamKey("shop", "orders"), lines)
        first = later.commit(sync=True)
        assert first > handed_out + 1, "IDs handed out were given to a later event"
        assert self.ids(reader) == [first]

    def test_a_failed_commit_leaves_nothing_and_spends_no_id(
        self, open_writer: Any, trail_url: str, storage_options: dict[str, Any]
    ) -> None:
        writer = open_writer()
        writer.append_event(**sample_event(0))
        with self.failing_writes(trail_url, storage_options), pytest.raises(StorageError):
            writer.append_events([sample_event(1), sample_event(2, category="refunds")])
        assert writer.append_event(**sample_event(3)).event_id == 2
        writer.close()
        reader = AuditTrailReader(root_path=trail_url, storage_options=storage_options)
        assert self.ids(reader) == [1, 2] and reader.report.clean

    def test_begin_excludes_a_second_backend_of_the_trail(
        self, open_writer: Any, trail_url: str, storage_options: dict[str, Any]
    ) -> None:
        """A session holds the trail; or, where sessions are optimistic, two at once both
        commit, with distinct, contiguous IDs."""
        open_writer().close()
        first, second = (open_backend(trail_url, **storage_options) for _ in range(2))
        for backend in (first, second):
            backend.open_for_writing()
        held = first.begin(max_segment_bytes=4096)
        if not first.exclusive_sessions:
            other = second.begin(max_segment_bytes=4096)
            for session in (held, other):
                session.append(StreamKey("shop", "orders"), self.lines_for(session, 2)[1])
            committed = sorted([other.commit(sync=True), held.commit(sync=True)])
            assert committed == [1, 3], "optimistic sessions committed overlapping IDs"
            return
        began: list[float] = []
        waiter = threading.Thread(
            target=lambda: began.append(_begin_and_abort(second)), daemon=True
        )
        waiter.start()
        time.sleep(0.3)
        released = time.monotonic()
        held.abort()
        waiter.join(timeout=30)
        assert began and began[0] >= released, "a second backend began while the first held"

    def test_begin_excludes_a_second_process(
        self, open_writer: Any, backend: Backend, trail_url: str, storage_options: dict[str, Any]
    ) -> None:
        if not (backend.persistent and backend.supports_concurrent_processes):
            pytest.skip("the trail is not shared by processes")
        open_writer().close()
        backend.open_for_writing()
        if not backend.exclusive_sessions:
            pytest.skip("sessions are optimistic (see the two-backend test)")
        context = (
            multiprocessing.get_context("fork")
            if backend.survives_fork
            else multiprocessing.get_context("spawn")
        )
        began = context.Queue()
        held = backend.begin(max_segment_bytes=4096)
        child = context.Process(
            target=_begin_in_a_process, args=(trail_url, storage_options, began)
        )
        child.start()
        time.sleep(0.5)
        released = time.time()
        held.abort()
        moment = began.get(timeout=30)
        child.join(timeout=30)
        assert moment >= released, "a second process began while the first held the trail"

    def test_ids_a_killed_batch_writer_handed_out_are_not_reused_by_a_running_writer(
        self, open_writer: Any, backend: Backend, trail_url: str, storage_options: dict[str, Any]
    ) -> None:
        """A writer open before the killed one handed out its IDs must still see them spent
        (whatever it had cached about the trail)."""
        if not (backend.persistent and backend.supports_concurrent_processes):
            pytest.skip("the trail is not shared by processes")
        with open_writer() as running:
            running.append_event(**sample_event(0))
            context = (
                multiprocessing.get_context("fork")
                if backend.survives_fork
                else multiprocessing.get_context("spawn")
            )
            handed = context.Queue()
            child = context.Process(
                target=_hand_out_and_wait, args=(trail_url, storage_options, handed)
            )
            child.start()
            try:
                handed_out = handed.get(timeout=60)
            finally:
                child.kill()
                child.join(timeout=30)
            after = running.append_event(**sample_event(1)).event_id
        assert after > handed_out, f"ID {handed_out} handed out by the killed writer was reused"

    @pytest.mark.parametrize("link", ["shop", "shop/orders", "shop/orders/audit-000001.jsonl"])
    def test_symlinks_below_the_root_are_refused_and_never_written_through(
        self,
        open_writer: Any,
        trail_url: str,
        storage_options: dict[str, Any],
        tmp_path_factory: pytest.TempPathFactory,
        link: str,
    ) -> None:
        outside = tmp_path_factory.mktemp("outside")
        (outside / "audit-000001.jsonl").write_bytes(b"precious\npartial")
        target = outside if link.count("/") < 2 else outside / "audit-000001.jsonl"
        open_writer().close()
        self.plant_symlink(trail_url, storage_options, link, str(target))
        try:
            with open_writer() as writer:
                writer.append_event(**sample_event(0))
        except StorageError as exc:
            assert "symbolic link" in str(exc)
        assert [p.name for p in outside.iterdir()] == ["audit-000001.jsonl"]
        assert (outside / "audit-000001.jsonl").read_bytes() == b"precious\npartial"

    def test_a_writer_shared_across_fork_keeps_ids_unique(
        self, open_writer: Any, backend: Backend, trail_url: str, storage_options: dict[str, Any]
    ) -> None:
        """A writer made before ``fork()`` (gunicorn ``--preload``), used at once from several
        threads of each child, and by the parent."""
        if not (backend.persistent and backend.supports_concurrent_processes):
            pytest.skip("the trail is not shared by processes")
        writer = open_writer(max_file_size_bytes=4000)
        if not backend.survives_fork:  # the child must be told so at once, not hang
            context = multiprocessing.get_context("fork")
            told = context.Queue()
            child = context.Process(target=_append_expecting_refusal, args=(writer, told))
            child.start()
            assert "cannot be used across fork()" in told.get(timeout=60)
            child.join(timeout=60)
            return
        writer.append_event(**sample_event(0))
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        children = [
            context.Process(target=_append_from_threads, args=(writer, n, results))
            for n in range(2)
        ]
        for child in children:
            child.start()
        parent = [writer.append_event(**sample_event(i)).event_id for i in range(40)]
        acknowledged = [results.get(timeout=60) for _ in children]
        for child in children:
            child.join(timeout=60)
            assert child.exitcode == 0
        writer.close()
        every = [1, *parent, *(i for ids in acknowledged for i in ids)]
        assert sorted(every) == list(range(1, len(every) + 1)) and len(every) == 1 + 40 + 2 * 120
        reader = AuditTrailReader(root_path=trail_url, storage_options=storage_options)
        assert self.ids(reader) == sorted(every) and reader.report.clean


def append_raw_to_log(backend: LogBackend, domain: str, category: str, data: bytes) -> None:
    """Add ``data`` as the last line of a stream's open segment, in a commit object of its own
    that bypasses the writer: what a foreign writer or a damaged copy can leave on storage
    kept as a log of commits (a ``damage_tail`` for such backends)."""
    stream = StreamKey(domain, category)
    state = backend.store.open_state() or backend.store.bootstrap()
    segment = state.streams.get(stream, OpenSegment(1, 0))
    complete = data.endswith(b"\n")  # a torn line spends no ID
    last = max(state.last_event_id, (line_event_id(data) or 0) if complete else 0)
    commit = Commit(
        seq=state.seq + 1,
        first=state.last_event_id + 1,
        last=last,
        writer="raw",
        entries=((stream, segment.number, segment.size + len(data), 1),),
        lines=(data,),
        lease=state.lease,
    )
    backend.store.create_commit(commit, create_only=False)


def _begin_and_abort(backend: Backend) -> float:
    session = backend.begin(max_segment_bytes=4096)
    moment = time.monotonic()
    session.abort()
    return moment


def _begin_in_a_process(url: str, options: dict[str, Any], began: Any) -> None:
    backend = open_backend(url, **options)
    session = backend.begin(max_segment_bytes=4096)
    began.put(time.time())
    session.abort()


def _hand_out_and_wait(url: str, options: dict[str, Any], handed: Any) -> None:
    writer = AuditTrailWriter(
        root_path=url, storage_options=options, durability="batch", flush_interval=3600
    )
    handed.put(writer.append_event(**sample_event(7)).event_id)
    time.sleep(3600)  # killed here, holding its handed-out ID


def _append_expecting_refusal(writer: AuditTrailWriter, told: Any) -> None:
    try:
        writer.append_event(**sample_event(0))
    except ConfigurationError as exc:
        told.put(str(exc))
    else:
        told.put("appended")


def _append_from_threads(writer: AuditTrailWriter, child: int, results: Any) -> None:
    acknowledged: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def work(thread: int) -> None:
        start.wait()  # the first appends of the child race each other
        for i in range(30):
            event = writer.append_event(**sample_event(i, category=f"c{child}t{thread}"))
            with lock:
                acknowledged.append(event.event_id)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    results.put(acknowledged)
