"""``trailstore.demo_trail``: the demo's flow as a library, without the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from trailstore import AuditPayload, AuditTrailWriter
from trailstore.demo import WORKLOAD_STREAMS
from trailstore.demo_trail import DemoTrail
from trailstore.errors import ConfigurationError


def test_a_demo_trail_replays_as_its_workload_kept_it_and_continues(tmp_path: Path) -> None:
    advanced: list[int] = []
    demo = DemoTrail(str(tmp_path), seed=4)

    written = demo.write(300, max_file_size_bytes=16384, advance=advanced.append)
    check = demo.check(written)

    assert not demo.continued
    assert (written.events, written.first_event_id, written.last_event_id) == (300, 1, 300)
    assert advanced == [1] * 300
    assert sum(check.operations.values()) == 300
    assert [replay.stream for replay in check.replays] == list(WORKLOAD_STREAMS)
    assert check.mismatched == []
    assert check.stats.total.events == 300 and check.stats.damage.clean

    again = DemoTrail(str(tmp_path), seed=4)
    more = again.write(50)
    assert again.continued
    assert (more.first_event_id, more.last_event_id) == (301, 350)
    assert again.check(more).mismatched == []


def test_a_replay_that_differs_from_the_workload_is_named(tmp_path: Path) -> None:
    demo = DemoTrail(str(tmp_path))
    written = demo.write(100)
    [orders] = [stream for stream in WORKLOAD_STREAMS if stream.category == "orders"]
    demo.workload.records[orders]["Order"]["ord_forged"] = {"id": "ord_forged"}

    assert demo.check(written).mismatched == [orders]


def test_a_trail_of_other_streams_is_refused(tmp_path: Path) -> None:
    with AuditTrailWriter(root_path=tmp_path) as writer:
        writer.append_event(
            domain="ops",
            category="deploys",
            model_name="Deploy",
            operation="create",
            logical_user_id="u",
            payload=AuditPayload.from_create({"id": 1}),
        )

    with pytest.raises(
        ConfigurationError, match=r"streams the demo does not write \(ops/deploys\)"
    ):
        DemoTrail(str(tmp_path))
    with pytest.raises(ConfigurationError, match="at least one event"):
        DemoTrail(str(tmp_path / "new")).write(0)
