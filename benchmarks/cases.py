"""The contestants of a run: each case builds a writer in a fresh child process."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from benchmarks.baselines import BareLoopWriter, NaiveS3Writer, NaiveWriter, RotatingHandlerWriter
from trailstore.writer import AuditTrailWriter

NAIVE = "naive per-event writer"
NAIVE_S3 = "naive S3 (PUT per event)"
STDLIB = "stdlib RotatingFileHandler"
BARE = "bare serialise+write loop"
#: rows of writers that keep no tamper evidence, to price the checkpoints of the others
NO_CHECKPOINTS = "no checkpoints"


class Appender(Protocol):
    """What the runner drives: one call per event (or per batch), then ``close``."""

    def append(self, fields: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class TrailstoreAppender:
    """``AuditTrailWriter`` behind the runner's interface."""

    def __init__(self, url: str, segment_bytes: int, **settings: Any) -> None:
        self.writer = AuditTrailWriter(root_path=url, max_file_size_bytes=segment_bytes, **settings)

    def append(self, fields: dict[str, Any]) -> None:
        self.writer.append_event(**fields)

    def append_many(self, batch: list[dict[str, Any]]) -> None:
        self.writer.append_events(batch)

    def close(self) -> None:
        self.writer.close()


@dataclass(frozen=True)
class Case:
    """One row of the results table."""

    name: str
    build: Callable[[Path, int, dict[str, Any]], Appender]
    threads: int = 1
    processes: int = 1
    batch: int = 1
    s3: bool = False
    #: a baseline: it is handed events as plain JSON data, so it pays for no model
    baseline: bool = False


def _s3_options(context: dict[str, Any]) -> dict[str, Any]:
    return dict(context["s3_storage_options"])


def _s3_url(context: dict[str, Any], root: Path) -> str:
    return f"s3://{context['s3_bucket']}/{root.name}"


def _trailstore(
    durability: str, **settings: Any
) -> Callable[[Path, int, dict[str, Any]], Appender]:
    def build(root: Path, segment_bytes: int, context: dict[str, Any]) -> Appender:
        return TrailstoreAppender(str(root), segment_bytes, durability=durability, **settings)

    return build


def _trailstore_s3(durability: str) -> Callable[[Path, int, dict[str, Any]], Appender]:
    def build(root: Path, segment_bytes: int, context: dict[str, Any]) -> Appender:
        return TrailstoreAppender(
            _s3_url(context, root),
            segment_bytes,
            durability=durability,
            storage_options=_s3_options(context),
        )

    return build


def _memory(root: Path, segment_bytes: int, context: dict[str, Any]) -> Appender:
    return TrailstoreAppender(f"memory://{root}", segment_bytes, durability="fsync")


def _naive_s3(root: Path, segment_bytes: int, context: dict[str, Any]) -> Appender:
    import boto3

    options = _s3_options(context)
    client = boto3.client(
        "s3",
        endpoint_url=options["endpoint_url"],
        aws_access_key_id=options["key"],
        aws_secret_access_key=options["secret"],
        region_name="us-east-1",
    )
    return NaiveS3Writer(context["s3_bucket"], root.name, client)


def local_cases(threads: int, processes: int) -> list[Case]:
    """Every local contestant; ``threads``/``processes`` set the concurrent rows."""
    cases = [
        Case(NAIVE, lambda root, size, _: NaiveWriter(root, size), baseline=True),
        Case(STDLIB, lambda root, size, _: RotatingHandlerWriter(root, size), baseline=True),
        Case(BARE, lambda root, size, _: BareLoopWriter(root, size), baseline=True),
        Case("trailstore local fsync", _trailstore("fsync")),
        Case(f"trailstore local fsync, {NO_CHECKPOINTS}", _trailstore("fsync", checkpoints=False)),
        Case(f"trailstore local fsync, {threads} threads", _trailstore("fsync"), threads=threads),
        Case("trailstore local flush", _trailstore("flush")),
        Case(f"trailstore local flush, {NO_CHECKPOINTS}", _trailstore("flush", checkpoints=False)),
        Case(f"trailstore local flush, {threads} threads", _trailstore("flush"), threads=threads),
        Case("trailstore local batch", _trailstore("batch")),
        Case("trailstore local fsync, append_events(1000)", _trailstore("fsync"), batch=1000),
        Case("trailstore memory", _memory),
    ]
    if processes > 1:
        cases.append(
            Case(
                f"trailstore local fsync, {processes} processes x {threads} threads",
                _trailstore("fsync"),
                threads=threads,
                processes=processes,
            )
        )
    return cases


def s3_cases(threads: int) -> list[Case]:
    """The object-store contestants (need the moto server and the trailstore-s3 plugin)."""
    return [
        Case(NAIVE_S3, _naive_s3, s3=True, baseline=True),
        Case("trailstore S3 fsync", _trailstore_s3("fsync"), s3=True),
        Case(
            f"trailstore S3 fsync, {threads} threads",
            _trailstore_s3("fsync"),
            threads=threads,
            s3=True,
        ),
        Case("trailstore S3 batch", _trailstore_s3("batch"), s3=True),
    ]
