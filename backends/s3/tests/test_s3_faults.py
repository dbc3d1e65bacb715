"""Writers behind a proxy that fails, drops and delays a share of the S3 requests.

botocore retries 5xx answers and dropped connections by itself (legacy mode: 5 attempts). A
retry of a request that took effect before its connection dropped must be harmless: a
create-only commit, checkpoint or segment PUT answered 412 may hold our own bytes. Every
acknowledged event must be in the trail exactly once, byte for byte, and IDs may be missing
only for appends that raised.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import botocore.retryhandler
import pytest
from _fault_proxy import BACKOFF_SCALE, FaultProxy, scaled_backoff
from _s3_trail import check, expected_line
from conftest import options_for
from s3fs import S3FileSystem
from trailstore_s3.backend import S3Backend

from trailstore import AuditTrailWriter, FencedError, StorageError
from trailstore.coordinators.conditional import ConditionalWrites
from trailstore.events import AuditEvent
from trailstore.testing import sample_event

STREAMS = [("shop", "orders"), ("shop", "refunds"), ("billing", "invoices")]
LIMIT = 16 * 1024
SEED = 20261127


@pytest.fixture
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shrink botocore's retry delays (which requests are retried, and how often, is unchanged).

    The delay function is bound when a client is created, so only clients made afterwards
    (the fault proxy's port is new, so s3fs builds new ones) are affected.
    """
    original = botocore.retryhandler.delay_exponential
    monkeypatch.setattr(
        botocore.retryhandler, "delay_exponential", scaled_backoff(original, BACKOFF_SCALE)
    )


@pytest.fixture
def faulty(s3_endpoint: str, quick_backoff: None) -> Iterator[FaultProxy]:
    proxy = FaultProxy(s3_endpoint, rate=0.10, seed=SEED)
    proxy.start()
    yield proxy
    proxy.stop()


class Appender:
    """Threads appending through several writers; records what was acknowledged and failed."""

    def __init__(self, writers: list[AuditTrailWriter], seed: int) -> None:
        self.writers = writers
        self.seed = seed
        self.lock = threading.Lock()
        self.acknowledged: dict[int, bytes] = {}
        self.failed_events = 0
        self.errors: list[BaseException] = []

    def run(self, threads_per_writer: int, events_per_thread: int) -> None:
        threads = [
            threading.Thread(target=self._work, args=(writer, n, events_per_thread))
            for n, writer in enumerate(self.writers * threads_per_writer)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _work(self, writer: AuditTrailWriter, n: int, count: int) -> None:
        rng = random.Random(self.seed * 1000 + n)
        done = 0
        while done < count:
            size = min(count - done, 1 if rng.random() < 0.7 else rng.randint(2, 5))
            fields = [_fields(rng, n) for _ in range(size)]
            try:
                if size == 1:
                    events = [writer.append_event(**fields[0])]
                else:
                    events = writer.append_events(fields)
                if writer.durability == "batch" and rng.random() < 0.05:
                    writer.flush()
            except Exception as exc:
                with self.lock:
                    self.errors.append(exc)
                    self.failed_events += size
            else:
                self._acknowledge(events)
            done += size

    def _acknowledge(self, events: list[AuditEvent]) -> None:
        with self.lock:
            for event in events:
                assert event.event_id not in self.acknowledged, f"ID {event.event_id} twice"
                self.acknowledged[event.event_id] = expected_line(event)


def _fields(rng: random.Random, n: int) -> dict[str, Any]:
    domain, category = rng.choice(STREAMS)
    operation = rng.choice(["create", "update", "delete"])
    record = {"n": rng.randint(0, 10**9), "pad": "x" * rng.randint(0, 300)}
    return {
        "domain": domain,
        "category": category,
        "model_name": "Order",
        "operation": operation,
        "logical_user_id": f"thread-{n}",
        "payload": {"before" if operation == "delete" else "after": record},
    }


def _run(
    faulty: FaultProxy,
    url: str,
    *,
    durability: str,
    writers: int,
    threads_per_writer: int,
    events_per_thread: int,
) -> Appender:
    options = options_for(faulty.endpoint)
    extra: dict[str, Any] = {}
    if durability == "batch":
        extra = {"flush_interval": 0.05, "flush_max_events": 50}
    opened = [
        AuditTrailWriter(
            root_path=url,
            storage_options=options,
            durability=durability,
            max_file_size_bytes=LIMIT,
            **extra,
        )
        for _ in range(writers)
    ]
    appender = Appender(opened, seed=SEED)
    appender.run(threads_per_writer, events_per_thread)
    for writer in opened:
        try:
            writer.close()  # a batch writer's last flush can fail too
        except Exception as exc:
            appender.errors.append(exc)
    faulty.enabled = False
    return appender


def _verify(faulty: FaultProxy, url: str, appender: Appender, s3_endpoint: str) -> None:
    options = options_for(s3_endpoint)  # check the trail as the server holds it
    summary = faulty.summary()
    print(
        f"{summary}; {len(appender.acknowledged)} acknowledged, "
        f"{appender.failed_events} failed {appender.errors[:3]}"
    )
    AuditTrailWriter(root_path=url, storage_options=options).close()  # repair on open
    found, missing = check(url, options, LIMIT, appender.acknowledged)
    print(f"{len(found)} events in the trail, {len(missing)} IDs missing")
    fenced = [e for e in appender.errors if isinstance(e, FencedError)]
    assert not fenced, f"no writer was paused, yet some reported a lost lease: {fenced[:3]}"
    assert len(missing) <= appender.failed_events, "more IDs missing than appends failed"
    assert sum(faulty.injected.values()) >= 0.05 * len(faulty.requests)
    assert set(faulty.injected) == {"500", "503", "slowdown", "drop_before", "drop_after", "delay"}
    assert faulty.precondition_failed > 0  # retries of PUTs that had landed were answered 412
    assert appender.failed_events <= 0.01 * len(appender.acknowledged)


@pytest.mark.parametrize(
    ("durability", "events_per_thread"),
    [
        pytest.param("fsync", 250, id="fsync-3000"),
        pytest.param("batch", 250, id="batch-3000"),
        pytest.param("fsync", 1000, id="fsync-12000", marks=pytest.mark.slow),
        pytest.param("batch", 1000, id="batch-12000", marks=pytest.mark.slow),
    ],
)
def test_ten_percent_faults_lose_and_duplicate_nothing(
    faulty: FaultProxy,
    fresh_trail_url: str,
    s3_endpoint: str,
    durability: str,
    events_per_thread: int,
) -> None:
    appender = _run(
        faulty,
        fresh_trail_url,
        durability=durability,
        writers=2,
        threads_per_writer=6,
        events_per_thread=events_per_thread,
    )
    assert len(appender.acknowledged) + appender.failed_events == 12 * events_per_thread
    _verify(faulty, fresh_trail_url, appender, s3_endpoint)


# -- the same retries, one at a time --------------------------------------------------------


def _answer_lost_once(
    monkeypatch: pytest.MonkeyPatch,
    options: dict[str, Any],
    wanted: Callable[[str], bool],
    error: Exception,
) -> list[str]:
    """Make the first write for which ``wanted(path)`` holds land, then raise ``error``, as a
    request whose answer was lost is retried (412) or given up on."""
    fs = S3FileSystem(**options)  # the instance every writer with these options shares
    original = fs.pipe_file
    lost: list[str] = []

    def pipe_file(path: str, data: bytes, **kwargs: Any) -> None:
        original(path, data, **kwargs)
        if not lost and wanted(path):
            lost.append(path)
            raise error

    monkeypatch.setattr(fs, "pipe_file", pipe_file)
    return lost


def test_a_commit_whose_answer_was_lost_is_recognised_as_its_own(
    fresh_trail_url: str, s3_options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    with AuditTrailWriter(root_path=fresh_trail_url, storage_options=s3_options) as writer:
        lost = _answer_lost_once(
            monkeypatch, s3_options, lambda path: "/.trailstore/log/" in path, FileExistsError()
        )
        assert [writer.append_event(**sample_event(i)).event_id for i in range(2)] == [1, 2]
    assert lost
    found, missing = check(fresh_trail_url, s3_options, LIMIT, {})
    assert sorted(found) == [1, 2] and not missing


def test_a_probe_whose_answer_was_lost_still_finds_create_only_enforced(
    fresh_trail_url: str, s3_options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe's first create-only write landed, its answer was lost and the retry got 412:
    the probe object is new to everyone else, so that 412 is the probe's own write."""
    lost = _answer_lost_once(
        monkeypatch, s3_options, lambda path: "/probe-" in path, FileExistsError()
    )
    backend = S3Backend(fresh_trail_url, **s3_options)
    assert isinstance(backend.coordinator, ConditionalWrites)
    assert lost


def test_a_seal_whose_answer_was_lost_still_completes(
    fresh_trail_url: str, s3_options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    lost = _answer_lost_once(
        monkeypatch, s3_options, lambda path: path.endswith("audit-000001.jsonl"), FileExistsError()
    )
    with AuditTrailWriter(
        root_path=fresh_trail_url, storage_options=s3_options, max_file_size_bytes=400
    ) as writer:
        for i in range(4):
            writer.append_event(**sample_event(i))
    assert lost
    assert check(fresh_trail_url, s3_options, 400, {})[1] == set()
    sealed = S3Backend(fresh_trail_url, **s3_options).store.sealed_segments()
    assert 1 in sealed[next(iter(sealed))]


def test_a_commit_that_landed_while_its_writer_gave_up_blocks_nothing(
    fresh_trail_url: str, s3_options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The append raises (botocore gave up), yet its commit is in the log: the event is in
    the trail under its ID (at least once, as after any lost answer), and the next append
    neither waits nor reuses that ID."""
    writer = AuditTrailWriter(root_path=fresh_trail_url, storage_options=s3_options)
    assert writer.append_event(**sample_event(0)).event_id == 1
    lost = _answer_lost_once(
        monkeypatch,
        s3_options,
        lambda path: "/.trailstore/log/" in path,
        OSError("connection reset; botocore gave up retrying"),
    )
    with pytest.raises(StorageError, match="gave up"):
        writer.append_event(**sample_event(1))
    assert lost
    started = time.monotonic()
    assert writer.append_event(**sample_event(2)).event_id == 3
    assert time.monotonic() - started < 1.0
    writer.close()
    found, missing = check(fresh_trail_url, s3_options, LIMIT, {})
    assert sorted(found) == [1, 2, 3] and not missing
