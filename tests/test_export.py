"""``trailstore.export``: every format gives back the reader's events, filtered as asked, in
bounded memory, and a path holds a whole export or nothing."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import trailstore.export
import trailstore.export.parquet
from trailstore import AuditEvent, AuditPayload, AuditTrailReader, AuditTrailWriter
from trailstore.errors import ConfigurationError, DestinationExistsError, MissingDependencyError
from trailstore.export import COLUMNS, ExportFormat, ExportResult, export_events

FORMATS = [format.value for format in ExportFormat]
NAMES = [column.name for column in COLUMNS]
#: an instant past the year 9999, which no datetime holds
FAR_FUTURE = 1e12


@pytest.fixture
def trail(tmp_path: Path) -> Path:
    """Events of every shape: unicode, CSV's special characters, nested payloads, a delta
    with removed fields, no request_id, no payload, two domains."""
    root = tmp_path / "trail"
    invoice = {
        "id": 7,
        "customer": 'Zoë Ünal, "ACME"\nsecond line',
        "lines": [{"sku": "A-1", "qty": 2, "price": 9.99}, {"sku": "🚀", "tags": [], "x": None}],
        "meta": {"empty": {}, "flag": True, "ratio": 0.1},
    }
    paid = {**invoice, "status": "paid", "meta": {"flag": False}}
    paid.pop("lines")
    with AuditTrailWriter(root_path=root, durability="flush") as writer:
        writer.append_event(
            domain="billing", category="invoices", model_name="Invoice",
            operation="create", logical_user_id="zoë", payload=AuditPayload.from_create(invoice),
            timestamp=1_700_000_000.123456789,
        )  # fmt: skip
        writer.append_event(
            domain="billing", category="invoices", model_name="Invoice", operation="update",
            logical_user_id="bob", request_id="req-1",
            payload=AuditPayload.from_update(invoice, paid, key_field="id"),
        )  # fmt: skip
        writer.append_event(
            domain="crm", category="accounts", model_name="Account", operation="create",
            logical_user_id="ops", request_id="", payload=AuditPayload.from_create({"id": 1}),
            timestamp=FAR_FUTURE,
        )  # fmt: skip
        writer.append_event(
            domain="crm", category="accounts", model_name="Account", operation="update",
            logical_user_id="ops, \"night\" shift",
        )  # fmt: skip
        writer.append_event(
            domain="billing", category="invoices", model_name="Invoice", operation="delete",
            logical_user_id="bob", payload=AuditPayload.from_delete(paid), timestamp=-2.0,
        )  # fmt: skip
    return root


def _events(root: Path, **filters: Any) -> list[AuditEvent]:
    return list(AuditTrailReader(root_path=root).iter_events(**filters))


def _payload_of(before: Any, after: Any, delta: Any) -> AuditPayload | None:
    """The payload the JSON columns describe, validated as the model validates a stored one."""
    parts = {"before": before, "after": after, "delta": delta}
    if all(part is None for part in parts.values()):
        return None
    return AuditPayload.model_validate(
        {key: json.loads(value) for key, value in parts.items() if value is not None}
    )


def _moment(seconds: float) -> datetime | None:
    return None if seconds == FAR_FUTURE else datetime.fromtimestamp(seconds, UTC)


def _read_csv(data: bytes) -> list[dict[str, str]]:
    rows = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
    assert next(rows) == NAMES
    return [dict(zip(NAMES, row, strict=True)) for row in rows]


def test_csv_gives_back_every_field_of_every_event(trail: Path, tmp_path: Path) -> None:
    out = tmp_path / "events.csv"
    result = export_events(AuditTrailReader(root_path=trail), out, format="csv")
    events = _events(trail)
    rows = _read_csv(out.read_bytes())
    assert result == ExportResult(events=5, bytes=out.stat().st_size)
    assert len(rows) == len(events)
    for row, event in zip(rows, events, strict=True):
        assert int(row["event_id"]) == event.event_id
        moment = _moment(event.timestamp)
        assert row["timestamp"] == (
            "" if moment is None else moment.isoformat(timespec="microseconds")
        )
        assert float(row["timestamp_unix"]) == event.timestamp  # exactly
        for name in ("domain", "category", "model_name", "logical_user_id"):
            assert row[name] == getattr(event, name)
        assert row["operation"] == event.operation.value
        # a null is an empty field: an empty request_id reads back as one (documented)
        assert (row["request_id"] or None) == (event.request_id or None)
        cells = [row[name] or None for name in ("before", "after", "delta")]
        assert _payload_of(*cells) == event.payload


def test_csv_spells_timestamps_in_iso_8601_utc(trail: Path) -> None:
    sink = io.BytesIO()
    export_events(AuditTrailReader(root_path=trail), sink, format="csv", max_event_id=1)
    [row] = _read_csv(sink.getvalue())
    assert row["timestamp"] == "2023-11-14T22:13:20.123457+00:00"
    assert row["timestamp_unix"] == "1700000000.1234567"
    assert json.loads(row["after"])["customer"] == 'Zoë Ünal, "ACME"\nsecond line'
    assert "Zoë" in row["after"]  # non-ASCII as is, not \u-escaped
    sink = io.BytesIO()
    export_events(AuditTrailReader(root_path=trail), sink, format="csv", min_event_id=5)
    [row] = _read_csv(sink.getvalue())
    assert row["timestamp"] == "1969-12-31T23:59:58.000000+00:00"  # always six digits


def test_parquet_gives_back_every_field_of_every_event(trail: Path, tmp_path: Path) -> None:
    out = tmp_path / "events.parquet"
    result = export_events(AuditTrailReader(root_path=trail), out, format="parquet")
    table = pq.read_table(out)
    events = _events(trail)
    assert result == ExportResult(events=5, bytes=out.stat().st_size)
    assert table.column_names == NAMES
    assert table.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("timestamp_unix").type == pa.float64()
    assert table.schema.field("event_id").type == pa.int64()
    assert [field.name for field in table.schema if not field.nullable] == [
        column.name for column in COLUMNS if not column.nullable
    ]
    for row, event in zip(table.to_pylist(), events, strict=True):
        assert row["event_id"] == event.event_id
        assert row["timestamp"] == _moment(event.timestamp)
        assert row["timestamp_unix"] == event.timestamp
        for name in ("domain", "category", "model_name", "logical_user_id", "request_id"):
            assert row[name] == getattr(event, name)  # an empty request_id stays empty
        assert row["operation"] == event.operation.value
        assert _payload_of(row["before"], row["after"], row["delta"]) == event.payload


def test_a_delta_is_the_stored_json_with_removed_fields_marked(trail: Path) -> None:
    sink = io.BytesIO()
    export_events(
        AuditTrailReader(root_path=trail), sink, format="parquet", min_event_id=2, max_event_id=2
    )
    [row] = pq.read_table(io.BytesIO(sink.getvalue())).to_pylist()
    assert json.loads(row["delta"]) == {
        "id": {"old": 7, "new": 7},
        "lines": {
            "old": [{"sku": "A-1", "qty": 2, "price": 9.99}, {"sku": "🚀", "tags": [], "x": None}],
            "removed": True,
        },
        "meta": {"old": {"empty": {}, "flag": True, "ratio": 0.1}, "new": {"flag": False}},
        "status": {"new": "paid"},
    }
    assert row["before"] is None and row["after"] is None


def test_jsonl_is_the_stored_lines_byte_for_byte(trail: Path, tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    result = export_events(AuditTrailReader(root_path=trail), out, format=ExportFormat.JSONL)
    stored = b"".join(AuditTrailReader(root_path=trail).iter_lines())
    segments = sorted(trail.glob("*/*/audit-*.jsonl"))
    assert out.read_bytes() == stored
    assert sorted(out.read_bytes().splitlines()) == sorted(
        line for segment in segments for line in segment.read_bytes().splitlines()
    )
    assert result == ExportResult(events=5, bytes=len(stored))


@pytest.mark.parametrize("format", FORMATS)
def test_a_trail_larger_than_a_write_is_exported_whole(tmp_path: Path, format: str) -> None:
    root = _trail_of(tmp_path / "trail", 60, text="é" * 30_000)  # over 1 MiB in any format
    sink = io.BytesIO()
    result = export_events(AuditTrailReader(root_path=root), sink, format=format)
    data = sink.getvalue()
    if format == "csv":
        texts = [json.loads(row["after"])["text"] for row in _read_csv(data)]
    elif format == "parquet":
        texts = [
            json.loads(after)["text"]
            for after in pq.read_table(io.BytesIO(data))["after"].to_pylist()
        ]
    else:
        assert data == b"".join(AuditTrailReader(root_path=root).iter_lines())
        texts = [json.loads(line)["payload"]["after"]["text"] for line in data.splitlines()]
    assert texts == ["é" * 30_000] * 60
    assert result == ExportResult(events=60, bytes=len(data))


@pytest.mark.parametrize("format", FORMATS)
def test_filters_select_what_the_reader_selects(trail: Path, format: str) -> None:
    filters: dict[str, Any] = {"domains": "billing", "min_timestamp": 0, "max_event_id": 4}
    sink = io.BytesIO()
    result = export_events(AuditTrailReader(root_path=trail), sink, format=format, **filters)
    wanted = [event.event_id for event in _events(trail, **filters)]
    data = sink.getvalue()
    if format == "csv":
        exported = [int(row["event_id"]) for row in _read_csv(data)]
    elif format == "parquet":
        exported = pq.read_table(io.BytesIO(data)).column("event_id").to_pylist()
    else:
        exported = [json.loads(line)["event_id"] for line in data.splitlines()]
    assert exported == wanted == [1, 2]
    assert result.events == 2


@pytest.mark.parametrize("format", FORMATS)
def test_an_export_of_nothing_is_a_valid_empty_file(trail: Path, format: str) -> None:
    sink = io.BytesIO()
    result = export_events(
        AuditTrailReader(root_path=trail), sink, format=format, model_names="NoSuchModel"
    )
    assert result.events == 0
    if format == "csv":
        assert sink.getvalue() == (",".join(NAMES) + "\r\n").encode()
    elif format == "parquet":
        table = pq.read_table(io.BytesIO(sink.getvalue()))
        assert (table.num_rows, table.column_names) == (0, NAMES)
    else:
        assert sink.getvalue() == b""


def _trail_of(root: Path, count: int, text: str = "") -> Path:
    with AuditTrailWriter(root_path=root, durability="batch") as writer:
        writer.append_events(
            {
                "domain": "d", "category": "c", "model_name": "M", "operation": "create",
                "logical_user_id": "u", "payload": {"after": {"n": number, "text": text}},
            }
            for number in range(count)
        )  # fmt: skip
    return root


class _Recorder(io.BytesIO):
    """A destination that notes how many events had been read at each write."""

    def __init__(self) -> None:
        super().__init__()
        self.read = 0
        self.reads_at_writes: list[int] = []

    def write(self, data: Any, /) -> int:
        self.reads_at_writes.append(self.read)
        return super().write(data)


def test_parquet_holds_one_row_group_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trailstore.export.parquet, "ROW_GROUP_ROWS", 100)
    monkeypatch.setattr(trailstore.export, "PROGRESS_EVERY", 1)
    root = _trail_of(tmp_path / "trail", 250)
    sink = _Recorder()

    def progress(count: int) -> None:
        sink.read = count

    export_events(AuditTrailReader(root_path=root), sink, format="parquet", progress=progress)
    metadata = pq.ParquetFile(io.BytesIO(sink.getvalue())).metadata
    sizes = [metadata.row_group(group).num_rows for group in range(metadata.num_row_groups)]
    assert sizes == [100, 100, 50]
    # each row group went out as soon as its last row was read, before the next one's
    assert {100, 200, 250} <= set(sink.reads_at_writes)


def test_parquet_row_groups_close_early_for_large_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trailstore.export.parquet, "ROW_GROUP_TEXT_BYTES", 10_000)
    root = _trail_of(tmp_path / "trail", 30, text="x" * 1_000)
    out = tmp_path / "events.parquet"
    export_events(AuditTrailReader(root_path=root), out, format="parquet")
    metadata = pq.ParquetFile(out).metadata
    sizes = [metadata.row_group(group).num_rows for group in range(metadata.num_row_groups)]
    assert sum(sizes) == 30
    assert max(sizes) <= 10  # each row holds over 1,000 characters of text


def test_progress_reports_the_count_so_far_and_the_total(
    trail: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trailstore.export, "PROGRESS_EVERY", 2)
    counts: list[int] = []
    export_events(
        AuditTrailReader(root_path=trail), io.BytesIO(), format="csv", progress=counts.append
    )
    assert counts == [2, 4, 5]


def _leftovers(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.name != "trail")


def test_parquet_without_pyarrow_names_the_extra_and_writes_nothing(
    trail: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    reader = AuditTrailReader(root_path=trail)
    with pytest.raises(
        MissingDependencyError, match=r"pip install 'trailstore\[parquet\]'"
    ) as raised:
        export_events(reader, tmp_path / "events.parquet", format="parquet")
    assert isinstance(raised.value, ImportError)
    sink = io.BytesIO()
    with pytest.raises(MissingDependencyError):
        export_events(reader, sink, format="parquet")
    assert sink.getvalue() == b""
    assert _leftovers(tmp_path) == []
    assert (
        export_events(reader, tmp_path / "events.csv", format="csv").events == 5
    )  # no pyarrow needed


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"format": "xlsx"}, ConfigurationError),
        ({"format": "csv", "min_timestamp": "yesterday"}, ConfigurationError),
        ({"format": "parquet", "min_event_id": 1, "colour": "red"}, TypeError),
    ],
)
def test_bad_input_raises_before_anything_is_written(
    trail: Path, tmp_path: Path, options: dict[str, Any], error: type[Exception]
) -> None:
    reader = AuditTrailReader(root_path=trail)
    with pytest.raises(error):
        export_events(reader, tmp_path / "out", **options)
    sink = io.BytesIO()
    with pytest.raises(error):
        export_events(reader, sink, **options)
    assert _leftovers(tmp_path) == [] and sink.getvalue() == b""


@pytest.mark.parametrize("format", FORMATS)
def test_an_existing_file_is_kept_unless_overwrite(
    trail: Path, tmp_path: Path, format: str
) -> None:
    out = tmp_path / f"events.{format}"
    out.write_bytes(b"precious")
    reader = AuditTrailReader(root_path=trail)
    with pytest.raises(DestinationExistsError, match="overwrite=True") as raised:
        export_events(reader, out, format=format)
    assert isinstance(raised.value, FileExistsError)
    assert out.read_bytes() == b"precious"
    result = export_events(reader, out, format=format, overwrite=True)
    assert result.events == 5 and out.stat().st_size == result.bytes
    assert _leftovers(tmp_path) == [out.name]


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("error", [OSError("disk gone"), KeyboardInterrupt()])
def test_a_failed_export_leaves_the_path_as_it_was(
    trail: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, format: str, error: BaseException
) -> None:
    monkeypatch.setattr(trailstore.export, "PROGRESS_EVERY", 1)

    def fail_at_third(count: int) -> None:
        if count == 3:
            raise error

    reader = AuditTrailReader(root_path=trail)
    fresh, kept = tmp_path / "fresh", tmp_path / "kept"
    kept.write_bytes(b"previous export")
    for out, overwrite in ((fresh, False), (kept, True)):
        with pytest.raises(type(error)):
            export_events(reader, out, format=format, overwrite=overwrite, progress=fail_at_third)
    assert not fresh.exists()
    assert kept.read_bytes() == b"previous export"
    assert _leftovers(tmp_path) == ["kept"]


def test_a_file_that_appears_during_the_export_is_kept(
    trail: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trailstore.export, "PROGRESS_EVERY", 1)
    out = tmp_path / "events.csv"

    def another_process_writes(count: int) -> None:
        if count == 1:
            out.write_bytes(b"theirs")

    with pytest.raises(DestinationExistsError):
        export_events(
            AuditTrailReader(root_path=trail), out, format="csv", progress=another_process_writes
        )
    assert out.read_bytes() == b"theirs"
    assert _leftovers(tmp_path) == [out.name]


def test_a_binary_file_is_written_to_and_left_open(trail: Path) -> None:
    sink = io.BytesIO(b"head:")
    sink.seek(0, io.SEEK_END)
    result = export_events(AuditTrailReader(root_path=trail), sink, format="jsonl")
    assert not sink.closed
    assert result.bytes == len(sink.getvalue()) - len(b"head:")
    assert sink.getvalue().startswith(b"head:{")


def test_the_documented_schema_names_every_column() -> None:
    documentation = trailstore.export.__doc__ or ""
    for column in COLUMNS:
        assert f"``{column.name}``" in documentation
