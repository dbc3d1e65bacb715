"""A trail's lifecycle on local disk: codecs, the archive and prune commands, retention rules,
what prune never removes, and reading a trail back from its archive alone. (Every backend as
an archive, with writers running and SIGKILLs, is ``LifecycleConformance``.)"""

from __future__ import annotations

import json
import shutil
import time
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trailstore import AuditTrailReader, AuditTrailWriter
from trailstore.backend import StreamKey, segment_name
from trailstore.cli import main
from trailstore.errors import AuditTrailError, ConfigurationError
from trailstore.evidence import Finding, Status, generate_key_pair, verify_trail
from trailstore.lifecycle import Archive, Codec, RetentionRule, archive_trail, prune_trail
from trailstore.lifecycle.codecs import CorruptCopyError
from trailstore.registry import open_backend
from trailstore.testing import sample_event
from trailstore.testing.evidence import STREAMS
from trailstore.testing.lifecycle import TRAIL_SETTINGS, lines_by_id, write_local_trail

DAY = 86400.0


@pytest.fixture
def trail(tmp_path: Path) -> Path:
    root = tmp_path / "trail"
    write_local_trail(root, range(150))
    return root


def segments_on_disk(root: Path) -> dict[StreamKey, list[int]]:
    backend = open_backend(str(root))
    return {stream: backend.list_segments(stream) for stream in backend.list_streams()}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- codecs ------------------------------------------------------------------------------------


@given(data=st.binary(max_size=20_000))
def test_every_codec_gives_back_the_bytes_it_was_given(data: bytes) -> None:
    for codec in Codec:
        assert codec.decompress(codec.compress(data), len(data)) == data


@pytest.mark.parametrize("codec", [Codec.GZIP, Codec.ZSTD])
def test_a_copy_that_is_damaged_or_grows_past_its_seal_is_refused(codec: Codec) -> None:
    data = b'{"event_id":1}\n' * 1000
    stored = codec.compress(data)
    with pytest.raises(CorruptCopyError, match="expands past"):
        codec.decompress(stored, len(data) - 1)
    with pytest.raises(CorruptCopyError):
        codec.decompress(b"not compressed at all" * 10, len(data))
    with pytest.raises(CorruptCopyError):
        codec.decompress(stored[: len(stored) // 2], len(data))


@pytest.mark.parametrize("codec", [codec.value for codec in Codec])
def test_archived_segments_read_back_byte_identical_to_the_originals(
    trail: Path, tmp_path: Path, codec: str
) -> None:
    report = archive_trail(trail, tmp_path / "archive", codec=codec)
    archive = Archive(tmp_path / "archive")
    compared = 0
    for stream, numbers in segments_on_disk(trail).items():
        for number in archive.segments(stream):
            original = (trail / stream.domain / stream.category / segment_name(number)).read_bytes()
            assert archive.read_segment(stream, number) == original
            compared += 1
        assert set(archive.segments(stream)) < set(numbers), "only sealed segments go"
    assert compared == report.segments_archived > 10
    if codec != "none":
        assert report.bytes_stored < report.bytes_read / 2


# -- the commands --------------------------------------------------------------------------------


def test_archive_prune_and_read_back_through_the_commands(
    trail: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, archive = str(trail), str(tmp_path / "archive")
    _, before, _ = run(capsys, "query", "--root", root)
    _, replayed, _ = run(capsys, "replay", "--root", root, "--domain", "shop", "--category",
                         "orders", "--key-field", "id")  # fmt: skip
    code, out, _ = run(capsys, "archive", "--root", root, "--to", archive, "--compress", "gzip")
    assert code == 0 and "archived" in out and "as gzip" in out
    code, out, _ = run(capsys, "prune", "--root", root, "--before-id", "100", "--archive",
                       archive, "--dry-run")  # fmt: skip
    assert code == 0 and out.startswith("would prune") and lines_by_id(root) == json_lines(before)
    code, out, _ = run(capsys, "prune", "--root", root, "--before-id", "100", "--archive", archive)
    assert code == 0 and out.startswith("pruned") and "segments 1-" in out
    _, local, _ = run(capsys, "query", "--root", root)
    assert 0 < len(local.splitlines()) < len(before.splitlines())
    assert run(capsys, "query", "--root", root, "--archive", archive)[1] == before
    assert run(capsys, "replay", "--root", root, "--domain", "shop", "--category", "orders",
               "--key-field", "id", "--archive", archive)[1] == replayed  # fmt: skip
    code, out, _ = run(capsys, "stats", "--root", root)
    assert code == 0 and "pruned segments:" in out and "missing IDs: none" in out
    code, out, _ = run(capsys, "verify", "--root", root, "--no-state")
    assert code == 0 and "intact" in out and "were pruned" in out
    code, out, _ = run(capsys, "verify", "--root", root, "--no-state", "--archive", archive)
    assert code == 0 and "intact" in out and "were pruned" not in out


def json_lines(text: str) -> dict[int, bytes]:
    return {json.loads(line)["event_id"]: (line + "\n").encode() for line in text.splitlines()}


def test_prune_without_an_archive_needs_discard_and_costs_nothing_without_it(
    trail: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = segments_on_disk(trail)
    code, _, err = run(capsys, "prune", "--root", str(trail), "--keep-bytes", "0")
    assert code == 2 and "--discard" in err
    code, _, err = run(capsys, "prune", "--root", str(trail), "--discard")
    assert code == 2 and "--older-than, --keep-bytes or --before-id" in err
    with pytest.raises(ConfigurationError, match="archive"):
        prune_trail(trail, RetentionRule(keep_bytes=0))
    with pytest.raises(ConfigurationError, match="say what to prune"):
        RetentionRule()
    assert segments_on_disk(trail) == before
    code, _, _ = run(capsys, "prune", "--root", str(trail), "--keep-bytes", "0", "--discard")
    assert code == 0 and segments_on_disk(trail) != before
    assert verify_trail(trail, full=True).status is Status.INTACT


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--older-than", "12x", "duration"),
        ("--older-than", "-3d", "duration"),
        ("--keep-bytes", "lots", "size"),
        ("--before-id", "0", ">= 1"),
    ],
)
def test_bad_retention_flags_are_refused(
    trail: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    code, _, err = run(capsys, "prune", "--root", str(trail), f"{flag}={value}", "--discard")
    assert code == 2 and message in err


def test_object_lock_needs_an_s3_archive_and_a_date(
    trail: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = str(tmp_path / "archive")
    code, _, err = run(capsys, "archive", "--root", str(trail), "--to", archive,
                       "--object-lock", "compliance")  # fmt: skip
    assert code == 2 and "--retain-until or --retain-days" in err
    code, _, err = run(capsys, "archive", "--root", str(trail), "--to", archive,
                       "--object-lock", "compliance", "--retain-days", "1")  # fmt: skip
    assert code == 2 and "Object Lock" in err
    assert not list(Path(archive).rglob("*.zst")), "nothing archived unlocked"


@pytest.mark.parametrize("where", [".", "archive", ".."])
def test_an_archive_overlapping_its_trail_is_refused_before_anything_is_written(
    trail: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    place = str((trail / where).resolve()) if where != "." else str(trail)
    before = sorted(trail.rglob("*"))
    for argv in (["archive", "--to", place], ["prune", "--keep-bytes", "0", "--archive", place]):
        code, _, err = run(capsys, *argv, "--root", str(trail))
        assert code == 2 and "overlap" in err
    assert sorted(trail.rglob("*")) == before


def test_a_trail_in_an_object_store_is_not_pruned_and_nothing_is_recorded(
    tmp_path: Path,
) -> None:
    url = f"memory://prune-{tmp_path.name}"
    with AuditTrailWriter(root_path=url, **TRAIL_SETTINGS) as writer:
        for number in range(60):
            writer.append_event(**sample_event(number))
    backend = open_backend(url)
    checkpoints = backend.list_evidence(".trailstore/evidence")
    with pytest.raises(ConfigurationError, match="object store"):
        prune_trail(url, RetentionRule(keep_bytes=0), discard=True)
    assert backend.list_evidence(".trailstore/evidence") == checkpoints


# -- what is pruned, and what never is --------------------------------------------------------


def test_retention_rules_prune_each_stream_from_its_oldest_segment(tmp_path: Path) -> None:
    root, archive = tmp_path / "trail", tmp_path / "archive"
    now = time.time()
    with AuditTrailWriter(root_path=root, **TRAIL_SETTINGS) as writer:
        for number in range(120):  # the first 60 events are 100 days old
            domain, category = STREAMS[number % len(STREAMS)]
            event = sample_event(number, domain=domain, category=category)
            writer.append_event(**event, timestamp=now - 100 * DAY if number < 60 else now)
    archive_trail(root, archive)
    old = prune_trail(root, RetentionRule(older_than=timedelta(days=30)), archive=str(archive))
    backend = open_backend(str(root))
    for stream, number in old.pruned:
        assert number < backend.list_segments(stream)[0]
    assert old.pruned and all(e.timestamp >= now - DAY for e in AuditTrailReader(
        root_path=root).iter_events() if e.event_id > 60)  # fmt: skip
    kept = lines_by_id(str(root))
    assert all(event_id > 40 for event_id in kept), "old whole segments stay"
    by_id = prune_trail(root, RetentionRule(before_id=90), archive=str(archive))
    assert all(event_id >= 80 for event_id in lines_by_id(str(root))) and by_id.pruned
    budget = 2500
    prune_trail(root, RetentionRule(keep_bytes=budget), archive=str(archive))
    sizes = [p.stat().st_size for p in root.rglob("audit-*.jsonl")]
    assert sum(sizes) <= budget or len(sizes) == len(STREAMS)


def test_the_newest_segment_of_every_stream_is_never_pruned_and_writing_goes_on(
    trail: Path,
) -> None:
    before = segments_on_disk(trail)
    report = prune_trail(trail, RetentionRule(keep_bytes=0), discard=True)
    after = segments_on_disk(trail)
    for stream, numbers in before.items():
        assert after[stream] and after[stream][-1] == numbers[-1]
    assert report.bytes_freed > 0
    with AuditTrailWriter(root_path=trail, **TRAIL_SETTINGS) as writer:
        added = writer.append_event(**sample_event(500, domain="shop", category="orders"))
    assert added.event_id == 151
    assert max(lines_by_id(str(trail))) == 151
    assert verify_trail(trail, full=True).status is Status.INTACT


def test_a_signed_trail_is_pruned_only_with_its_key(tmp_path: Path) -> None:
    key, public = tmp_path / "trail.key", tmp_path / "trail.pub"
    generate_key_pair(key, public)
    root = tmp_path / "trail"
    with AuditTrailWriter(root_path=root, signing_key=key, **TRAIL_SETTINGS) as writer:
        for number in range(90):
            writer.append_event(**sample_event(number))
    with pytest.raises(ConfigurationError, match="signing key"):
        prune_trail(root, RetentionRule(keep_bytes=0), discard=True)
    prune_trail(root, RetentionRule(keep_bytes=0), discard=True, signing_key=key)
    report = verify_trail(root, full=True, public_key=public)
    assert report.status is Status.INTACT and report.pruned_segments > 0


def test_a_segment_changed_on_disk_is_neither_archived_nor_pruned(
    trail: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = trail / "shop" / "orders" / segment_name(2)
    data = bytearray(victim.read_bytes())
    data[30] ^= 1
    victim.write_bytes(bytes(data))
    archive = str(tmp_path / "archive")
    code, _, err = run(capsys, "archive", "--root", str(trail), "--to", archive)
    assert code == 1 and "shop/orders segment 2" in err and "does not match its seal" in err
    report = prune_trail(trail, RetentionRule(keep_bytes=0), archive=archive)
    orders = [number for stream, number in report.pruned if stream == ("shop", "orders")]
    assert orders == [1], "only what lies before the changed segment goes"
    assert victim.exists() and any("segment 2" in problem for problem in report.problems)


def test_a_segment_removed_without_prune_is_still_reported_missing(trail: Path) -> None:
    (trail / "shop" / "orders" / segment_name(1)).unlink()
    report = verify_trail(trail, full=True)
    assert report.status is Status.TAMPERED
    assert {problem.kind for problem in report.problems} == {Finding.SEGMENT_MISSING}
    assert report.pruned_segments == 0


def test_a_trail_whose_disk_is_lost_reads_back_from_its_archive(
    trail: Path, tmp_path: Path
) -> None:
    archive = str(tmp_path / "archive")
    archive_trail(trail, archive)
    sealed = {  # the lines of sealed segments: those the archive holds
        json.loads(line)["event_id"]: line
        for seal in trail.rglob("audit-*.seal.json")
        for line in seal.with_name(seal.name.replace(".seal.json", ".jsonl")).open("rb")
    }
    shutil.rmtree(trail)
    reader = AuditTrailReader(root_path=trail, archive=archive)
    recovered = {event.event_id: event for event in reader.iter_events()}
    assert recovered.keys() == sealed.keys()
    lost = {i for first, last in reader.report.gaps for i in range(first, last + 1)}
    assert lost == set(range(1, 151)) - set(sealed), "the open segments' events are reported lost"


def test_verify_running_while_prune_removes_segments_reports_them_pruned(
    trail: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trailstore.evidence import verifier

    hashing = verifier.segment_digest
    pruned: list[object] = []

    def prune_first(*args: object) -> tuple[str, int]:
        if not pruned:  # the chain is read: now a prune runs
            pruned.append(prune_trail(trail, RetentionRule(keep_bytes=0), discard=True))
        return hashing(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(verifier, "segment_digest", prune_first)
    report = verify_trail(trail, full=True)
    assert pruned and report.status is Status.INTACT, report.problems
    assert report.pruned_segments > 0


# -- refused: archives that are not this trail's, keys that are not its, lost segments ---------


@pytest.mark.parametrize("alias", ["local://{root}", "{root}/../trail"])
def test_the_trail_under_another_name_is_no_archive_of_it(
    trail: Path, capsys: pytest.CaptureFixture[str], alias: str
) -> None:
    before = sorted(trail.rglob("*"))
    url = alias.format(root=trail)
    code, _, err = run(capsys, "archive", "--root", str(trail), "--to", url, "--compress", "none")
    assert code == 2 and "overlap" in err
    with pytest.raises(ConfigurationError, match="overlap"):
        prune_trail(trail, RetentionRule(keep_bytes=0), archive=url)
    assert sorted(trail.rglob("*")) == before


def test_an_archive_in_memory_is_refused_for_pruning(trail: Path) -> None:
    url = f"memory://archive-{trail.parent.name}"
    with pytest.raises(ConfigurationError, match="outlive"):
        archive_trail(trail, url)
    with pytest.raises(ConfigurationError, match="outlive"):
        prune_trail(trail, RetentionRule(keep_bytes=0), archive=url)


def test_an_archive_of_another_trail_or_of_none_is_refused_before_anything_is_written(
    trail: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other"
    write_local_trail(other, range(60))
    archive = tmp_path / "archive"
    archive_trail(trail, archive)
    held = sorted(archive.rglob("*"))
    with pytest.raises(ConfigurationError, match="another trail"):
        archive_trail(other, archive)
    with pytest.raises(ConfigurationError, match="another trail"):
        prune_trail(other, RetentionRule(keep_bytes=0), archive=str(archive))
    assert sorted(archive.rglob("*")) == held
    code, _, err = run(capsys, "stats", "--root", str(trail), "--archive", str(tmp_path / "typo"))
    assert code == 2 and "holds no archive" in err


def test_prune_needs_the_key_the_chain_is_signed_with(tmp_path: Path) -> None:
    root = tmp_path / "trail"
    keys = [(tmp_path / f"{name}.key", tmp_path / f"{name}.pub") for name in ("one", "two")]
    for private, public in keys:
        generate_key_pair(private, public)
    with AuditTrailWriter(root_path=root, signing_key=keys[0][0], **TRAIL_SETTINGS) as writer:
        for number in range(90):
            writer.append_event(**sample_event(number))
    before = segments_on_disk(root)
    with pytest.raises(ConfigurationError, match="signed by key"):
        prune_trail(root, RetentionRule(keep_bytes=0), discard=True, signing_key=keys[1][0])
    assert segments_on_disk(root) == before


def test_a_lost_segment_is_neither_hidden_by_readers_nor_pruned_past(
    trail: Path, tmp_path: Path
) -> None:
    orders = trail / "shop" / "orders"
    (orders / segment_name(1)).unlink()
    reader = AuditTrailReader(root_path=trail)
    list(reader.iter_events())
    assert reader.report.gaps and reader.report.pruned_segments == 0
    (orders / segment_name(2)).unlink()  # a hole in the middle as well
    archive = tmp_path / "archive"
    archive_trail(trail, archive)  # segments 1 and 2 are gone: reported, not archived
    report = prune_trail(trail, RetentionRule(keep_bytes=0), archive=str(archive))
    assert all(stream != ("shop", "orders") for stream, _ in report.pruned)
    assert (orders / segment_name(3)).exists()


def test_prune_needs_the_seal_archived_beside_the_segment(trail: Path, tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive_trail(trail, archive)
    (archive / "shop" / "orders" / "audit-000001.seal.json").unlink()
    report = prune_trail(trail, RetentionRule(keep_bytes=0), archive=str(archive))
    assert any("shop/orders segment 1:" in problem for problem in report.problems)
    assert (trail / "shop" / "orders" / segment_name(1)).exists()


def test_a_forged_checkpoint_cannot_lead_the_archive_out_of_its_root(
    trail: Path, tmp_path: Path
) -> None:
    evidence = trail / ".trailstore" / "evidence"
    newest = sorted(evidence.iterdir())[-1]
    body, _, rest = newest.read_bytes().partition(b"\n")
    document = json.loads(body)
    document["seals"] = [["../..", 1, "00" * 32]]
    newest.write_bytes(json.dumps(document).encode() + b"\n" + rest)
    archive = tmp_path / "deep" / "archive"
    with pytest.raises(AuditTrailError):
        archive_trail(trail, archive)
    assert not list(tmp_path.rglob("*.zst")) and not (tmp_path / "audit-000001.jsonl.zst").exists()
