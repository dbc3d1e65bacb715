"""The ``trailstore`` command line: append, query, replay, stats and a self-checking demo.

Exit codes: 0 success, 1 the operation failed (storage, conflict, a demo whose replay does not
match, a trail that fails verification), 2 the invocation is wrong (bad flag, bad JSON, bad name,
no trail root), 3 nothing to verify (a trail without checkpoints), 130 interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import inspect
import io
import itertools
import json
import logging
import math
import os
import shlex
import shutil
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError

from trailstore import __version__
from trailstore.backend import INDEX_NAME, Durability, Retention, StreamKey
from trailstore.demo import WORKLOAD_KEY_FIELD, WORKLOAD_STREAMS, Records, Workload
from trailstore.encoding import encode_body
from trailstore.errors import (
    AuditTrailError,
    BackendNotFoundError,
    ConfigurationError,
    InvalidEventError,
    InvalidNameError,
)
from trailstore.events import AuditEvent, AuditOperation, AuditPayload
from trailstore.evidence import (
    Status,
    TrustedCheckpoint,
    VerificationReport,
    checkpoint_trail,
    generate_key_pair,
    verify_trail,
)
from trailstore.lifecycle import Archive, Archiver, Codec, Pruner, RetentionRule
from trailstore.lines import render_line
from trailstore.names import validate_name
from trailstore.reader import AuditTrailReader, ReadReport
from trailstore.registry import local_path, open_backend, url_scheme
from trailstore.replay import AuditReplayer, State
from trailstore.writer import DEFAULT_MAX_FILE_SIZE_BYTES, AuditTrailWriter

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: ``verify`` on a trail without any checkpoint: nothing could be verified
EXIT_UNVERIFIABLE = 3
ROOT_ENVIRONMENT_VARIABLE = "TRAILSTORE_ROOT"
DEMO_ROOT = "./trailstore-demo"
DEMO_SEGMENT_BYTES = 64 * 1024
#: the keys of an event read by ``append --stdin``
APPEND_KEYWORDS = frozenset(inspect.signature(AuditTrailWriter.append_event).parameters) - {"self"}
#: the ``append`` flags that name an event's required keywords
_EVENT_FLAGS = (
    ("--domain", "domain"),
    ("--category", "category"),
    ("--model-name", "model_name"),
    ("--operation", "operation"),
    ("--user", "logical_user_id"),
)
_STDIN_EXCLUSIVE = (
    *_EVENT_FLAGS,
    ("--request-id", "request_id"),
    ("--before", "before"),
    ("--after", "after"),
    ("--key-field", "key_field"),
)
#: errors that mean "the invocation is wrong" (exit 2); other trailstore errors exit 1
_USAGE_ERRORS = (InvalidNameError, InvalidEventError, ConfigurationError, BackendNotFoundError)
_OPERATIONS = tuple(operation.value for operation in AuditOperation)


class UsageError(Exception):
    """The command line cannot work as given (exit code 2)."""


class _StdoutClosed(Exception):
    """The reader of our standard output went away (``| head``)."""


# -- small helpers -----------------------------------------------------------------------------


def _write(text: str) -> None:
    """Write to stdout, turning a closed pipe into ``_StdoutClosed``."""
    try:
        sys.stdout.write(text)
    except BrokenPipeError as exc:
        raise _StdoutClosed from exc


def _print(text: str) -> None:
    _write(text + "\n")


def _write_lines(lines: Iterable[bytes]) -> None:
    """Write stored lines to stdout as the bytes they are (no re-encoding)."""
    sys.stdout.flush()
    out = sys.stdout.buffer
    try:
        for line in lines:
            out.write(line)
        out.flush()
    except BrokenPipeError as exc:
        raise _StdoutClosed from exc


def _flush() -> None:
    try:
        sys.stdout.flush()
    except BrokenPipeError as exc:
        raise _StdoutClosed from exc


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


def _say(message: str, level: str = "error") -> None:
    print(f"trailstore: {level}: {message}", file=sys.stderr)


def _one_line(error: BaseException) -> str:
    """A one-line description of an expected error (pydantic's reports are multi-line)."""
    cause = error.__cause__
    if isinstance(cause, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'event'}: {problem['msg']}"
            for problem in cause.errors()
        )
        return f"invalid audit event: {problems}"
    return " ".join(str(error).split())


def _event_line(event: AuditEvent) -> str:
    """The event exactly as a segment line stores it (compact JSON, ``\\n`` ended)."""
    return render_line(event.event_id, encode_body(event)).decode("ascii")


def _format_bytes(size: float) -> str:
    if size < 1024:
        return f"{size:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


class _StderrLogHandler(logging.Handler):
    """Library warnings (damage met, torn tails repaired) as ``trailstore: warning: …``."""

    def emit(self, record: logging.LogRecord) -> None:
        _say(record.getMessage(), record.levelname.lower())


class ProgressBar:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    def __init__(self, total: int, label: str, *, enabled: bool, width: int = 30) -> None:
        self.total = max(total, 1)
        self.label = label
        self.enabled = enabled
        self.width = width
        self.done = 0
        self._started = time.monotonic()
        self._drawn_at = 0.0

    def advance(self, count: int = 1) -> None:
        """Count ``count`` more items done and redraw if it is time to."""
        self.done += count
        now = time.monotonic()
        if self.enabled and (now - self._drawn_at >= 0.1 or self.done >= self.total):
            self._drawn_at = now
            self._draw(now)

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self._draw(time.monotonic())
            sys.stderr.write("\n")
            sys.stderr.flush()

    def _draw(self, now: float) -> None:
        fraction = min(self.done / self.total, 1.0)
        filled = round(fraction * self.width)
        rate = self.done / max(now - self._started, 1e-9)
        sys.stderr.write(
            f"\r{self.label} [{'#' * filled}{'-' * (self.width - filled)}] "
            f"{self.done}/{self.total} {fraction:4.0%} {rate:,.0f}/s "
        )
        sys.stderr.flush()


# -- argument types ----------------------------------------------------------------------------


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _strict_json(text: str) -> Any:
    """Parse JSON as the standard defines it: ``NaN`` and ``Infinity`` are refused, and so is
    a number too large for a float (which Python would read as infinity)."""
    return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = _strict_json(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _storage_option(text: str) -> tuple[str, Any]:
    key, separator, raw = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def _timestamp(text: str) -> float:
    """Unix seconds, or ISO-8601 (a time without a zone is UTC)."""
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected Unix seconds or ISO-8601, got {text!r}"
            ) from None
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(seconds):
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds, got {text!r}")
    return seconds


def _natural(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value


def _positive(text: str) -> int:
    value = _natural(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a number >= 1, got 0")
    return value


# -- trail access ------------------------------------------------------------------------------


def _root(args: argparse.Namespace, default: str | None = None) -> str:
    root: str | None = args.sub_root or args.root
    if root is None:
        root = default or os.environ.get(ROOT_ENVIRONMENT_VARIABLE) or None
    if root is None:
        raise UsageError(
            f"no trail root: pass --root PATH_OR_URL or set {ROOT_ENVIRONMENT_VARIABLE}"
        )
    return root


def _storage_options(args: argparse.Namespace) -> dict[str, Any]:
    return dict([*args.storage_option, *args.sub_storage_option])


def _open_reader(args: argparse.Namespace) -> AuditTrailReader:
    """A reader of an existing trail (with its archive, if given); a root that holds none is
    an error."""
    return AuditTrailReader(
        root_path=_root(args),
        storage_options=_storage_options(args),
        archive=args.archive,
        archive_options=dict(args.archive_option),
    )


def _report_damage(report: ReadReport) -> None:
    """Summarise on stderr what the reader skipped or found missing."""
    if report.clean:
        return
    missing_ids = sum(last - first + 1 for first, last in report.gaps)
    _say(
        f"damage met while reading: {report.malformed_lines} malformed line(s), "
        f"{report.torn_lines} torn line(s), {report.missing_segments} missing segment(s), "
        f"{missing_ids} missing ID(s), {report.duplicate_ids} duplicate ID(s)",
        "warning",
    )


def _names(kind: str, values: Sequence[str] | None) -> list[str] | None:
    return [validate_name(kind, value) for value in values] if values else None


# -- append ------------------------------------------------------------------------------------


def _event_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    missing = [flag for flag, keyword in _EVENT_FLAGS if getattr(args, keyword) is None]
    if missing:
        raise UsageError(f"append needs {', '.join(missing)} (or --stdin)")
    operation = AuditOperation(args.operation)
    before, after = args.before, args.after
    for flag, value, needed in (
        ("--before", before, operation is not AuditOperation.CREATE),
        ("--after", after, operation is not AuditOperation.DELETE),
    ):
        if needed and value is None:
            raise UsageError(f"--operation {operation} needs {flag} JSON_OBJECT")
        if not needed and value is not None:
            raise UsageError(f"--operation {operation} takes no {flag}")
    if operation is AuditOperation.CREATE:
        payload = AuditPayload.from_create(after)
    elif operation is AuditOperation.UPDATE:
        payload = AuditPayload.from_update(before, after, key_field=args.key_field)
    else:
        payload = AuditPayload.from_delete(before)
    fields = {keyword: getattr(args, keyword) for _, keyword in _EVENT_FLAGS}
    return {**fields, "payload": payload, "request_id": args.request_id}


def _event_from_stdin() -> dict[str, Any]:
    try:
        fields = _strict_json(sys.stdin.read())
    except ValueError as exc:
        raise UsageError(f"stdin is not valid JSON ({exc})") from None
    if not isinstance(fields, dict):
        raise UsageError(f"stdin must hold one JSON object, got {type(fields).__name__}")
    unknown = sorted(fields.keys() - APPEND_KEYWORDS)
    if unknown:
        allowed = ", ".join(sorted(APPEND_KEYWORDS))
        raise UsageError(f"unknown key(s) on stdin: {', '.join(unknown)}; allowed: {allowed}")
    missing = [keyword for _, keyword in _EVENT_FLAGS if keyword not in fields]
    if missing:
        raise UsageError(f"the stdin event lacks {', '.join(missing)}")
    if fields["operation"] not in _OPERATIONS:
        raise UsageError(
            f"unknown operation {fields['operation']!r}: choose from {', '.join(_OPERATIONS)}"
        )
    if isinstance(fields.get("timestamp"), str):
        try:
            fields["timestamp"] = _timestamp(fields["timestamp"])
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"timestamp: {exc}") from None
    return fields


def _cmd_append(args: argparse.Namespace) -> int:
    if args.stdin:
        given = [flag for flag, dest in _STDIN_EXCLUSIVE if getattr(args, dest) is not None]
        if given:
            raise UsageError(f"--stdin reads the whole event; drop {', '.join(given)}")
        fields = _event_from_stdin()
    else:
        fields = _event_from_flags(args)
    for kind in ("domain", "category"):
        validate_name(kind, fields[kind])  # before the writer creates the trail
    with AuditTrailWriter(
        root_path=_root(args),
        durability=args.durability,
        max_file_size_bytes=args.max_file_size_bytes,
        storage_options=_storage_options(args),
    ) as writer:
        event = writer.append_event(**fields)
    _write(_event_line(event))
    return EXIT_OK


# -- query, replay, stats ----------------------------------------------------------------------


def _cmd_query(args: argparse.Namespace) -> int:
    domains, categories = _names("domain", args.domain), _names("category", args.category)
    reader = _open_reader(args)
    lines: Iterator[bytes] = reader.iter_lines(
        domains=domains,
        categories=categories,
        model_names=args.model_name or None,
        min_event_id=args.min_id,
        max_event_id=args.max_id,
        min_timestamp=args.since,
        max_timestamp=args.until,
    )
    if args.limit is not None:
        lines = itertools.islice(lines, args.limit)
    _write_lines(lines)
    _report_damage(reader.report)
    return EXIT_OK


def _cmd_replay(args: argparse.Namespace) -> int:
    domain, category = (
        validate_name("domain", args.domain),
        validate_name("category", args.category),
    )
    reader = _open_reader(args)
    if StreamKey(domain, category) not in reader.streams():
        known = ", ".join(str(stream) for stream in reader.streams()) or "none"
        raise AuditTrailError(
            f"no stream {domain}/{category} in {_root(args)} (its streams: {known})"
        )
    result = AuditReplayer(reader=reader, key_field=args.key_field).reconstruct_state(
        domain=domain,
        category=category,
        model_names=args.model_name or None,
        max_event_id=args.max_id,
    )
    _write(json.dumps(dataclasses.asdict(result), indent=args.indent) + "\n")
    _flush()
    _report_damage(reader.report)
    return EXIT_OK


@dataclasses.dataclass
class StreamStats:
    """What ``stats`` reports about one stream (or, as a total, about the whole trail)."""

    stream: str
    segments: int = 0
    events: int = 0
    bytes: int = 0
    min_event_id: int | None = None
    max_event_id: int | None = None

    def count(self, event_id: int) -> None:
        """Add one event."""
        self.events += 1
        if self.min_event_id is None or event_id < self.min_event_id:
            self.min_event_id = event_id
        if self.max_event_id is None or event_id > self.max_event_id:
            self.max_event_id = event_id


def trail_stats(reader: AuditTrailReader) -> tuple[list[StreamStats], StreamStats]:
    """Per-stream and total statistics from one full scan (which also fills ``reader.report``)."""
    backend = reader.backend
    streams: dict[tuple[str, str], StreamStats] = {}
    for stream in reader.streams():
        stats = streams[stream.domain, stream.category] = StreamStats(str(stream))
        for number in backend.list_segments(stream):
            stats.segments += 1
            try:
                stats.bytes += backend.segment_size(stream, number)
            except FileNotFoundError:
                continue
    total = StreamStats("total")
    for event in reader.iter_events():
        total.count(event.event_id)
        key = (event.domain, event.category)
        if key not in streams:  # a stream that appeared during the scan
            streams[key] = StreamStats(f"{event.domain}/{event.category}")
        streams[key].count(event.event_id)
    total.segments = sum(stats.segments for stats in streams.values())
    total.bytes = sum(stats.bytes for stats in streams.values())
    return list(streams.values()), total


def _cmd_stats(args: argparse.Namespace) -> int:
    reader = _open_reader(args)
    streams, total = trail_stats(reader)
    report = reader.report
    last_event_id = reader.backend.last_event_id()
    if args.json:
        totals = dataclasses.asdict(total)
        del totals["stream"]
        document = {
            "root": str(reader.root_path),
            "streams": [dataclasses.asdict(stats) for stats in streams],
            "total": {"streams": len(streams), **totals},
            "last_event_id": last_event_id,
            "damage": dataclasses.asdict(report),
            "coordination": reader.backend.coordination,
        }
        _write(json.dumps(document, indent=args.indent) + "\n")
    else:
        table = _stats_table(streams, total, last_event_id, report)
        _write(f"{table}writers: {reader.backend.coordination}\n")
    _flush()
    return EXIT_OK


# -- evidence: verify, checkpoint, keygen -------------------------------------------------------


def _verified_state_file(root: str) -> Path:
    """Where ``verify`` remembers the newest checkpoint it verified for a trail."""
    state_home = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    if url_scheme(root) in ("", "file"):
        root = str(local_path(root).resolve())
    digest = hashlib.sha256(root.encode()).hexdigest()[:32]
    return Path(state_home) / "trailstore" / "verified" / f"{digest}.json"


def _cmd_verify(args: argparse.Namespace) -> int:
    root = _root(args)
    state = None if args.no_state else (args.state or _verified_state_file(root))
    trusted = None if state is None else TrustedCheckpoint.load(state)
    report = verify_trail(
        root,
        public_key=args.public_key,
        trusted=trusted,
        full=args.full or trusted is None,
        storage_options=_storage_options(args),
        archive=args.archive,
        archive_options=dict(args.archive_option),
    )
    if args.json:
        _write(json.dumps(report.to_json(), indent=args.indent) + "\n")
    else:
        _write(_verification_text(root, report))
    _flush()
    if report.intact and report.latest is not None and state is not None:
        report.latest.save(state)
    if report.status is Status.UNVERIFIABLE:
        return EXIT_UNVERIFIABLE
    return EXIT_OK if report.intact else EXIT_FAILED


def _verification_text(root: str, report: VerificationReport) -> str:
    lines = [f"trail {root}: {report.status}"]
    if report.latest is not None or report.checkpoints_checked:
        begun = "the first" if report.checked_from == 0 else f"trusted #{report.checked_from}"
        signed = f"signed by key {report.signed_by}" if report.signed_by else "unsigned"
        lines.append(
            f"checkpoints: {report.checkpoints_checked} checked from {begun}; they cover events "
            f"1-{report.covered_events} ({report.gaps} IDs lost by crashed writers); newest "
            f"{signed}"
        )
    lines.append(
        f"data: {report.bytes_checked} bytes hashed; {report.uncovered_events} events written "
        "after the newest checkpoint (in order, not yet covered)"
    )
    lines.extend(f"  {problem}" for problem in report.problems)
    lines.extend(f"note: {note}" for note in report.notes)
    return "\n".join(lines) + "\n"


def _cmd_checkpoint(args: argparse.Namespace) -> int:
    root = _root(args)
    made = checkpoint_trail(
        root, signing_key=args.signing_key, storage_options=_storage_options(args)
    )
    if made is None:
        _write("nothing new to checkpoint\n")
    else:
        signed = f", signed by key {made.key_id}" if made.signature else ""
        _write(f"checkpoint {made.number}: events 1-{made.size}{signed}\n")
    _flush()
    return EXIT_OK


def _cmd_keygen(args: argparse.Namespace) -> int:
    try:
        identity = generate_key_pair(args.private, args.public)
    except FileExistsError as exc:
        raise UsageError(f"{exc.filename} exists; keygen never overwrites a key") from exc
    _write(
        f"key {identity}: private key {args.private} (give it to writers: "
        f"AuditTrailWriter(..., signing_key={str(args.private)!r})), public key {args.public}\n"
        f"  verify (with --root or $TRAILSTORE_ROOT set): trailstore verify --public-key "
        f"{shlex.quote(str(args.public.resolve()))}\n"
    )
    _flush()
    return EXIT_OK


# -- lifecycle: archive, prune ----------------------------------------------------------------


def _duration(text: str) -> timedelta:
    """``90d``, ``12h``, ``30m``, ``45s`` or plain seconds."""
    number, unit = (text[:-1], text[-1]) if text[-1:].isalpha() else (text, "s")
    seconds = _DURATION_UNITS.get(unit.lower())
    try:
        value = float(number)
    except ValueError:
        value = math.nan
    if seconds is None or not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(
            f"expected a duration like 90d, 12h, 30m or 45s, got {text!r}"
        )
    return timedelta(seconds=value * seconds)


def _size(text: str) -> int:
    """Bytes: ``500MB``, ``10GiB``, ``1048576``."""
    stripped = text.strip()
    digits = stripped.rstrip("BbKkMmGgTtIi")
    unit = stripped[len(digits) :].lower().removesuffix("b")
    factor = _SIZE_UNITS.get(unit)
    try:
        value = float(digits)
    except ValueError:
        value = math.nan
    if factor is None or not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a size like 500MB or 10GiB, got {text!r}")
    return int(value * factor)


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SIZE_UNITS = {
    "": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
    "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40,
}  # fmt: skip


def _progress_enabled(args: argparse.Namespace) -> bool:
    """``--progress``/``--no-progress``, else whether stderr is a terminal."""
    return sys.stderr.isatty() if args.progress is None else bool(args.progress)


def _retention(args: argparse.Namespace) -> Retention | None:
    if args.object_lock is None:
        if args.retain_until is not None or args.retain_days is not None:
            raise UsageError("--retain-until and --retain-days need --object-lock MODE")
        return None
    if (args.retain_until is None) == (args.retain_days is None):
        raise UsageError("--object-lock needs one of --retain-until or --retain-days")
    until = (
        datetime.fromtimestamp(args.retain_until, UTC)
        if args.retain_until is not None
        else datetime.now(UTC) + timedelta(days=args.retain_days)
    )
    if until <= datetime.now(UTC):
        raise UsageError(f"the retention date {until.isoformat()} is not in the future")
    return Retention(args.object_lock, until)


def _cmd_archive(args: argparse.Namespace) -> int:
    root = _root(args)
    retention = _retention(args)
    trail = open_backend(root, **_storage_options(args))
    archive = Archive(args.to, dict(args.to_option))
    try:
        archiver = Archiver(trail, archive, codec=Codec(args.compress), retention=retention)
        pending = archiver.pending()
        progress = _progress_enabled(args)
        bar = ProgressBar(len(pending), "archiving segments", enabled=progress and bool(pending))
        report = archiver.run(pending, bar.advance)
        if pending:
            bar.close()
    finally:
        archive.close()
        trail.close()
    ratio = (
        f" ({report.bytes_stored / report.bytes_read:.0%} of it stored)"
        if report.bytes_read
        else ""
    )
    _write(
        f"archived {report.segments_archived} sealed segments to {args.to}: "
        f"{_format_bytes(report.bytes_read)} as {args.compress}{ratio}; "
        f"{report.segments_present} were there already; {report.checkpoints_archived} "
        "checkpoints copied\n"
    )
    _flush()
    for problem in report.problems:
        _say(problem)
    return EXIT_FAILED if report.problems else EXIT_OK


def _cmd_prune(args: argparse.Namespace) -> int:
    if args.archive is None and not args.discard:
        raise UsageError(
            "prune removes segments only once an archive holds verified copies: pass --archive "
            "URL (after trailstore archive --to URL), or --discard to lose them for good"
        )
    if args.archive is not None and args.discard:
        raise UsageError("--archive and --discard exclude each other")
    if args.older_than is None and args.keep_bytes is None and args.before_id is None:
        raise UsageError("say what to prune: --older-than, --keep-bytes or --before-id")
    rule = RetentionRule(
        older_than=args.older_than, keep_bytes=args.keep_bytes, before_id=args.before_id
    )
    trail = open_backend(_root(args), **_storage_options(args))
    archive = None if args.archive is None else Archive(args.archive, dict(args.archive_option))
    try:
        pruner = Pruner(trail, archive, discard=args.discard, signing_key=args.signing_key)
        plan = pruner.plan(rule)
        bar = ProgressBar(
            len(plan.chosen),
            "checking segments",
            enabled=_progress_enabled(args) and bool(plan.chosen),
        )
        report = pruner.prune(plan, dry_run=args.dry_run, advance=bar.advance)
        if plan.chosen:
            bar.close()
    finally:
        if archive is not None:
            archive.close()
        trail.close()
    verb = "would prune" if args.dry_run else "pruned"
    _write(f"{verb} {len(report.pruned)} sealed segments ({_format_bytes(report.bytes_freed)})\n")
    for stream, numbers in itertools.groupby(report.pruned, key=lambda key: key[0]):
        held = [number for _, number in numbers]
        span = f"segment {held[0]}" if len(held) == 1 else f"segments {held[0]}-{held[-1]}"
        _write(f"  {stream}: {span}\n")
    _flush()
    for problem in report.problems:
        _say(problem)
    return EXIT_FAILED if report.problems else EXIT_OK


def _stats_table(
    streams: list[StreamStats], total: StreamStats, last_event_id: int, report: ReadReport
) -> str:
    header = ("stream", "segments", "events", "bytes", "min id", "max id")
    rows = [header] + [
        (
            stats.stream,
            str(stats.segments),
            str(stats.events),
            str(stats.bytes),
            "-" if stats.min_event_id is None else str(stats.min_event_id),
            "-" if stats.max_event_id is None else str(stats.max_event_id),
        )
        for stats in [*streams, total]
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]

    def render(row: Sequence[str]) -> str:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(cells).rstrip()

    lines = [render(row) for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(-1, "-" * len(lines[0]))
    gaps = ", ".join(f"{first}..{last}" for first, last in report.gaps) or "none"
    lines += [
        "",
        f"last allocated event id: {last_event_id}",
        f"size on storage: {_format_bytes(total.bytes)}",
        f"malformed lines: {report.malformed_lines}, torn lines: {report.torn_lines}, "
        f"missing segments: {report.missing_segments}",
        f"missing IDs: {gaps}, duplicate IDs: {report.duplicate_ids}",
    ]
    if report.pruned_segments:
        lines.append(
            f"pruned segments: {report.pruned_segments} (not counted above; read them with "
            "--archive URL)"
        )
    return "\n".join(lines) + "\n"


# -- demo --------------------------------------------------------------------------------------


def _demo_start(root: str, storage_options: dict[str, Any]) -> tuple[Records, int]:
    """The records and last event ID of a previous demo trail at ``root`` (empty when new).

    Refuses (``UsageError``) a non-empty directory that is not a trail, and a trail holding
    streams the demo does not write.
    """
    if url_scheme(root) == "file":
        path = local_path(root)
        if path.exists() and not path.is_dir():
            raise UsageError(f"demo root {root} exists and is not a directory")
        if path.is_dir() and any(path.iterdir()) and not (path / INDEX_NAME).is_file():
            raise UsageError(
                f"refusing to write the demo into {root}: the directory is not empty and is "
                "not a trailstore trail; pass --root with a new or empty directory"
            )
    reader = AuditTrailReader(root_path=root, storage_options=storage_options, allow_empty=True)
    foreign = [str(stream) for stream in reader.streams() if stream not in WORKLOAD_STREAMS]
    if foreign:
        raise UsageError(
            f"refusing to write the demo into {root}: it is a trail with streams the demo "
            f"does not write ({', '.join(foreign)}); pass --root with a new or empty directory"
        )
    replayer = AuditReplayer(reader=reader, key_field=WORKLOAD_KEY_FIELD)
    records: Records = {
        stream: replayer.reconstruct_state(domain=stream.domain, category=stream.category).state
        for stream in WORKLOAD_STREAMS
    }
    return records, reader.backend.last_event_id()


def _program() -> str:
    """This program as the user can run it again from here: ``trailstore`` when that is on
    ``PATH``, else the path it was started by (``.venv/bin/trailstore``) or ``python -m``."""
    started = sys.argv[0]
    if os.path.basename(started) == "trailstore":
        on_path = shutil.which("trailstore")
        if on_path is not None and os.path.samefile(on_path, started):
            return "trailstore"
        return shlex.quote(_runnable_path(started))
    return f"{shlex.quote(_runnable_path(sys.executable))} -m trailstore"


def _runnable_path(path: str) -> str:
    """``path`` relative to the working directory when it lies below it, else absolute."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    if relative.startswith(os.pardir):
        return absolute
    return relative if os.sep in relative else os.path.join(os.curdir, relative)


def _option_flags(storage_options: dict[str, Any]) -> list[str]:
    """``--storage-option`` flags that give back ``storage_options`` when parsed."""
    flags = []
    for key, value in storage_options.items():
        plain = isinstance(value, str) and _storage_option(f"{key}={value}") == (key, value)
        text = f"{key}={value}" if plain else f"{key}={json.dumps(value)}"
        flags += ["--storage-option", shlex.quote(text)]
    return flags


def _live(state: State) -> State:
    """``state`` without models whose records were all deleted."""
    return {model: records for model, records in state.items() if records}


def _cmd_demo(args: argparse.Namespace) -> int:
    root = _root(args, default=DEMO_ROOT)
    storage_options = _storage_options(args)
    records, start_id = _demo_start(root, storage_options)
    # a continued trail gets fresh randomness, so new record keys do not repeat deleted ones
    workload = Workload(args.seed if start_id == 0 else f"{args.seed}+{start_id}", records=records)
    _print(
        f"demo: {'continuing the' if start_id else 'writing a new'} trail at {root}: "
        f"{args.events} events, seed {args.seed}, segments up to "
        f"{_format_bytes(args.max_file_size_bytes)}, durability {args.durability}"
    )
    show_progress = _progress_enabled(args)
    progress = ProgressBar(args.events, "writing", enabled=show_progress)
    began = time.perf_counter()
    first = last = None
    try:
        with AuditTrailWriter(
            root_path=root,
            max_file_size_bytes=args.max_file_size_bytes,
            durability=args.durability,
            storage_options=storage_options,
        ) as writer:
            for fields in workload.events(args.events):
                last = writer.append_event(**fields).event_id
                first = last if first is None else first
                progress.advance()
    finally:
        progress.close()
    writing = time.perf_counter() - began
    _print(
        f"wrote events #{first}..#{last} in {writing:.2f} s "
        f"({args.events / max(writing, 1e-9):,.0f} events/s)"
    )

    reader = AuditTrailReader(root_path=root, storage_options=storage_options)
    found: dict[str, int] = {operation: 0 for operation in _OPERATIONS}
    for event in reader.iter_events(min_event_id=first):
        found[event.operation.value] += 1
    counts = ", ".join(f"{count} {operation}s" for operation, count in found.items())
    _print(f"query: {sum(found.values())} events since #{first}: {counts}")

    replayer = AuditReplayer(reader=reader, key_field=WORKLOAD_KEY_FIELD)
    mismatched = []
    for stream in WORKLOAD_STREAMS:
        result = replayer.reconstruct_state(domain=stream.domain, category=stream.category)
        if _live(result.state) != _live(workload.records[stream]):
            mismatched.append(str(stream))
        models = ", ".join(
            f"{len(items)} {model}" for model, items in sorted(_live(result.state).items())
        )
        _print(f"replay {stream}: {models or 'no records'} (last event #{result.last_event_id})")
    _print(f"replay matches: {'NO, differs in ' + ', '.join(mismatched) if mismatched else 'yes'}")

    streams, total = trail_stats(reader)
    _print(
        f"summary: {total.events} events in the trail ({args.events} written now), "
        f"{len(streams)} streams, {total.segments} segments, {_format_bytes(total.bytes)}, "
        f"{args.events / max(writing, 1e-9):,.0f} events/s, "
        f"{time.perf_counter() - began:.2f} s elapsed"
    )
    _report_damage(reader.report)
    prefix = " ".join([_program(), "--root", shlex.quote(root), *_option_flags(storage_options)])
    _print(
        f"try: {prefix} stats\n"
        f"     {prefix} query --domain shop --category orders --limit 3\n"
        f"     {prefix} replay --domain hr --category employees --key-field id --indent 2\n"
        f"     {prefix} verify"
    )
    return EXIT_FAILED if mismatched else EXIT_OK


# -- the parser --------------------------------------------------------------------------------

_APPEND_EXAMPLES = """\
  trailstore append --domain shop --category orders --model-name Order \\
      --operation create --user u-42 --after '{"id": 7, "total": 30}'
  trailstore append --domain shop --category orders --model-name Order \\
      --operation update --user u-42 --before '{"id": 7, "total": 30}' \\
      --after '{"id": 7, "total": 35}' --key-field id
  echo '{"domain": "hr", "category": "employees", "model_name": "Employee",
         "operation": "delete", "logical_user_id": "u-1",
         "payload": {"before": {"id": 3}}}' | trailstore append --stdin"""

_FORMATTER = argparse.RawDescriptionHelpFormatter


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like every other error here."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_trail_options(parser: argparse.ArgumentParser, prefix: str) -> None:
    parser.add_argument(
        "--root",
        dest=f"{prefix}root",
        metavar="PATH_OR_URL",
        help=f"trail root: a directory, memory://NAME or s3://BUCKET/PREFIX "
        f"(default: ${ROOT_ENVIRONMENT_VARIABLE}; for demo: {DEMO_ROOT})",
    )
    parser.add_argument(
        "--storage-option",
        dest=f"{prefix}storage_option",
        metavar="KEY=VALUE",
        type=_storage_option,
        action="append",
        default=[],
        help="passed to the backend as storage_options; VALUE is parsed as JSON when it is "
        "JSON, else taken as a string (repeatable)",
    )


def _add_progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="show a progress bar on stderr (default: when stderr is a terminal)",
    )


def _add_archive_option(parser: argparse.ArgumentParser, summary: str) -> None:
    parser.add_argument("--archive", metavar="URL", help=summary)
    parser.add_argument(
        "--archive-option",
        metavar="KEY=VALUE",
        type=_storage_option,
        action="append",
        default=[],
        help="storage_options of the archive's backend, as --storage-option (repeatable)",
    )


_READ_ARCHIVE = (
    "also read the trail's archive (where trailstore archive copied it): segments pruned "
    "from the trail are read from there"
)


def _subcommand(
    commands: Any,
    name: str,
    handler: Callable[[argparse.Namespace], int],
    common: argparse.ArgumentParser,
    summary: str,
    description: str,
    examples: str,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        parents=[common],
        help=summary,
        description=textwrap.fill(description, 88),
        epilog="examples:\n" + examples,
        formatter_class=_FORMATTER,
    )
    parser.set_defaults(handler=handler)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The ``trailstore`` argument parser."""
    parser = _Parser(
        prog="trailstore",
        description="Append to, query, replay and inspect append-only audit trails.",
        epilog=(
            "The trail root is --root (before or after the command) or $TRAILSTORE_ROOT.\n"
            "exit codes: 0 ok, 1 the operation failed, 2 bad invocation, 130 interrupted\n\n"
            "examples:\n"
            "  trailstore demo\n"
            "  export TRAILSTORE_ROOT=./trailstore-demo\n"
            "  trailstore stats\n"
            "  trailstore query --domain shop --limit 5 | jq .payload.after\n"
            "  trailstore COMMAND --help"
        ),
        formatter_class=_FORMATTER,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_trail_options(parser, "")
    common = _Parser(add_help=False)
    _add_trail_options(common, "sub_")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    append = _subcommand(
        commands,
        "append",
        _cmd_append,
        common,
        "append one event",
        "Append one event and print it, with its event_id, as one JSON line.",
        _APPEND_EXAMPLES,
    )
    append.add_argument("--domain", help="first path component of the stream, e.g. shop")
    append.add_argument("--category", help="second path component of the stream, e.g. orders")
    append.add_argument("--model-name", help="kind of record, e.g. Order")
    append.add_argument("--operation", choices=_OPERATIONS, help="what happened to the record")
    append.add_argument(
        "--user", dest="logical_user_id", metavar="USER", help="who did it (logical_user_id)"
    )
    append.add_argument("--request-id", help="correlation ID of the request (optional)")
    append.add_argument(
        "--key-field",
        metavar="FIELD",
        help="update: keep this field (the record's key) in the delta even when unchanged, so "
        "that replay --key-field FIELD can tell which record changed",
    )
    append.add_argument(
        "--before", type=_json_object, metavar="JSON", help="the record before (update, delete)"
    )
    append.add_argument(
        "--after", type=_json_object, metavar="JSON", help="the record after (create, update)"
    )
    append.add_argument(
        "--stdin",
        action="store_true",
        help="read the event from stdin: one JSON object whose keys are append_event's "
        f"keywords ({', '.join(sorted(APPEND_KEYWORDS))})",
    )
    append.add_argument(
        "--durability",
        choices=[mode.value for mode in Durability],
        default=Durability.FSYNC.value,
        help="when the append counts as done (default: %(default)s)",
    )
    append.add_argument(
        "--max-file-size-bytes",
        type=_positive,
        default=DEFAULT_MAX_FILE_SIZE_BYTES,
        metavar="N",
        help="rotate to a new segment before one grows past N bytes (default: %(default)s)",
    )

    query = _subcommand(
        commands,
        "query",
        _cmd_query,
        common,
        "print matching events as JSON lines",
        "Print matching events as JSON lines (the segment format) in ascending event_id. "
        "Damage met on the way (torn or malformed lines, missing IDs) is summarised on stderr.",
        "  trailstore query --domain shop --category orders --limit 10\n"
        "  trailstore query --model-name Invoice --since 2026-11-01 --until 2026-12-01T00:00Z\n"
        "  trailstore query --min-id 1000 --max-id 1999 | jq -c 'select(.operation==\"delete\")'",
    )
    query.add_argument("--domain", action="append", help="only this domain (repeatable)")
    query.add_argument("--category", action="append", help="only this category (repeatable)")
    query.add_argument("--model-name", action="append", help="only this model (repeatable)")
    query.add_argument("--min-id", type=_natural, metavar="ID", help="smallest event_id")
    query.add_argument("--max-id", type=_natural, metavar="ID", help="largest event_id")
    query.add_argument(
        "--since", type=_timestamp, metavar="TIME", help="earliest timestamp: Unix s or ISO-8601"
    )
    query.add_argument(
        "--until", type=_timestamp, metavar="TIME", help="latest timestamp: Unix s or ISO-8601"
    )
    query.add_argument("--limit", type=_natural, metavar="N", help="stop after N events")
    _add_archive_option(query, _READ_ARCHIVE)

    replay = _subcommand(
        commands,
        "replay",
        _cmd_replay,
        common,
        "rebuild the records of one stream",
        "Fold one stream's events into the records they describe and print the result as JSON: "
        '{"state": {MODEL: RECORD}, "last_event_id": N, "applied_events": N}; with --key-field '
        "the state is {MODEL: {KEY: RECORD}}.",
        "  trailstore replay --domain shop --category orders --key-field id --indent 2\n"
        "  trailstore replay --domain billing --category invoices --model-name Invoice "
        "--max-id 500\n"
        "  trailstore replay --domain hr --category employees --key-field id "
        "| jq '.state.Employee | length'",
    )
    replay.add_argument("--domain", required=True, help="domain of the stream")
    replay.add_argument("--category", required=True, help="category of the stream")
    replay.add_argument("--model-name", action="append", help="only this model (repeatable)")
    replay.add_argument("--max-id", type=_natural, metavar="ID", help="replay up to this event_id")
    replay.add_argument(
        "--key-field",
        help="tell records apart by this payload field: the state is then "
        "{MODEL: {KEY: RECORD}} (default: the model name identifies the record)",
    )
    replay.add_argument("--indent", type=_natural, metavar="N", help="pretty-print the JSON")
    _add_archive_option(replay, _READ_ARCHIVE)

    stats = _subcommand(
        commands,
        "stats",
        _cmd_stats,
        common,
        "summarise streams, segments, events and damage",
        "Show streams, segments, events, bytes, the event_id range and any damage found "
        "(one full scan of the trail).",
        "  trailstore stats\n  trailstore stats --json | jq .total.events",
    )
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.add_argument("--indent", type=_natural, metavar="N", help="pretty-print the JSON")
    _add_archive_option(stats, _READ_ARCHIVE)

    verify = _subcommand(
        commands,
        "verify",
        _cmd_verify,
        common,
        "check the trail against its checkpoints; exit 1 if it was tampered with",
        "Check the trail against its chain of checkpoints: every checkpoint present, each "
        "naming the one before (and signed by --public-key's key, if given), every event they "
        "cover unchanged and in place, and every event written since continuing them. Only "
        "what was added since the last verified checkpoint (remembered per trail, see --state) "
        "is read, unless --full. Exit codes: 0 intact, 1 tampered (the report names streams, "
        "segments and event IDs), 3 no checkpoint to verify against.",
        "  trailstore verify\n"
        "  trailstore verify --full --public-key trail.pub\n"
        "  trailstore verify --json | jq .problems",
    )
    verify.add_argument("--public-key", type=Path, metavar="FILE",
                        help="PEM public key the checkpoints must be signed with")  # fmt: skip
    verify.add_argument(
        "--full", action="store_true", help="verify everything, not only what is new"
    )
    verify.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        help="file remembering the newest verified checkpoint (default: one per trail under "
        "$XDG_STATE_HOME/trailstore/verified/)",
    )
    verify.add_argument(
        "--no-state", action="store_true", help="neither read nor remember a verified checkpoint"
    )
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.add_argument("--indent", type=_natural, metavar="N", help="pretty-print the JSON")
    _add_archive_option(verify, "verify pruned segments in their copies in this archive")
    _add_lifecycle_commands(commands, common)

    checkpoint = _subcommand(
        commands,
        "checkpoint",
        _cmd_checkpoint,
        common,
        "checkpoint the trail now",
        "Write the trail's next checkpoint, covering every event written so far (writers do "
        "this on their own; this starts the evidence of a trail written without it).",
        "  trailstore checkpoint --signing-key trail.key",
    )
    checkpoint.add_argument("--signing-key", type=Path, metavar="FILE",
                            help="PEM Ed25519 private key to sign the checkpoint with")  # fmt: skip

    keygen = _subcommand(
        commands,
        "keygen",
        _cmd_keygen,
        common,
        "make an Ed25519 key pair for signing checkpoints",
        "Write a new Ed25519 private key (mode 0600) and its public key as PEM files; never "
        "overwrites a file.",
        "  trailstore keygen --private trail.key --public trail.pub",
    )
    keygen.add_argument("--private", type=Path, required=True, metavar="FILE",
                        help="where to write the private key")  # fmt: skip
    keygen.add_argument("--public", type=Path, required=True, metavar="FILE",
                        help="where to write the public key")  # fmt: skip

    demo = _subcommand(
        commands,
        "demo",
        _cmd_demo,
        common,
        "write, query and replay a self-checking demo trail",
        "Write a realistic trail of CRUD events over four streams (rotating segments), query "
        "it, replay every stream and check the replay against the records the demo kept in "
        f"memory. The root defaults to {DEMO_ROOT}; running again continues the same trail.",
        "  trailstore demo\n"
        "  trailstore demo --root /tmp/trail --events 20000 --seed 7 --durability batch",
    )
    demo.add_argument(
        "--events", type=_positive, default=3000, metavar="N", help="events to write (3000)"
    )
    demo.add_argument("--seed", type=int, default=0, help="workload seed (default: 0)")
    demo.add_argument(
        "--max-file-size-bytes",
        type=_positive,
        default=DEMO_SEGMENT_BYTES,
        metavar="N",
        help="segment size limit (default: %(default)s, so segments rotate)",
    )
    demo.add_argument(
        "--durability",
        choices=[mode.value for mode in Durability],
        default=Durability.FSYNC.value,
        help="when each append counts as done (default: %(default)s)",
    )
    _add_progress_option(demo)
    return parser


def _add_lifecycle_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    archive = _subcommand(
        commands,
        "archive",
        _cmd_archive,
        common,
        "copy sealed segments, seals and checkpoints to an archive",
        "Copy every sealed segment (one a checkpoint has sealed: never the open one), its seal "
        "and the trail's checkpoints to the archive at --to: a directory or any URL a trail "
        "can live at (s3://BUCKET/PREFIX with trailstore-s3, or any fsspec filesystem). Each "
        "object is created once and read back to check it; what the archive holds already is "
        "not uploaded again, so a run that was interrupted finishes when run again. Safe "
        "while writers run. Exit 1 if a segment could not be archived (it is named).",
        "  trailstore archive --to /mnt/archive/trail\n"
        "  trailstore archive --to s3://audit-archive/app --to-option "
        "endpoint_url=http://127.0.0.1:9000\n"
        "  trailstore archive --to s3://audit-archive/app --object-lock compliance "
        "--retain-days 2555",
    )
    archive.add_argument("--to", required=True, metavar="URL", help="the archive's root")
    archive.add_argument(
        "--to-option",
        metavar="KEY=VALUE",
        type=_storage_option,
        action="append",
        default=[],
        help="storage_options of the archive's backend, as --storage-option (repeatable)",
    )
    archive.add_argument(
        "--compress",
        choices=[codec.value for codec in Codec],
        default=Codec.ZSTD.value,
        help="how archived segments are compressed (default: %(default)s); digests cover the "
        "uncompressed bytes",
    )
    archive.add_argument(
        "--object-lock",
        choices=["governance", "compliance"],
        metavar="MODE",
        help="S3 Object Lock retention of every archived object: governance or compliance (the "
        "bucket must have Object Lock enabled)",
    )
    archive.add_argument("--retain-until", type=_timestamp, metavar="TIME",
                         help="retain until this time (Unix s or ISO-8601)")  # fmt: skip
    archive.add_argument("--retain-days", type=_positive, metavar="N",
                         help="retain for N days from now")  # fmt: skip
    _add_progress_option(archive)

    prune = _subcommand(
        commands,
        "prune",
        _cmd_prune,
        common,
        "remove archived sealed segments from the trail's disk",
        "Remove a trail's oldest sealed segments from its disk, once --archive holds a copy "
        "that reads back identical to the seal (or, with --discard, for good). A segment goes "
        "when it is wholly older than --older-than or wholly before --before-id, and the "
        "oldest go while the trail holds more than --keep-bytes. Each stream keeps its newest "
        "segments and always its open one. A checkpoint records what was pruned, so verify "
        "reports it as pruned. Safe while writers run. Exit 1 if a chosen segment was kept.",
        "  trailstore prune --older-than 90d --archive s3://audit-archive/app\n"
        "  trailstore prune --keep-bytes 10GiB --archive /mnt/archive/trail --dry-run\n"
        "  trailstore prune --before-id 1000000 --discard",
    )
    prune.add_argument("--older-than", type=_duration, metavar="AGE",
                       help="segments whose newest event is older than AGE (90d, 12h)")  # fmt: skip
    prune.add_argument("--keep-bytes", type=_size, metavar="SIZE",
                       help="prune the oldest while the trail holds more (10GiB)")  # fmt: skip
    prune.add_argument("--before-id", type=_positive, metavar="ID",
                       help="segments whose events all have an event_id below ID")  # fmt: skip
    _add_archive_option(prune, "the archive that must hold a verified copy of each segment")
    prune.add_argument(
        "--discard",
        action="store_true",
        help="prune without an archive: the pruned events are gone for good",
    )
    prune.add_argument("--signing-key", type=Path, metavar="FILE",
                       help="sign the checkpoint recording the prune, as writers do")  # fmt: skip
    prune.add_argument("--dry-run", action="store_true", help="say what would go; remove nothing")
    _add_progress_option(prune)


def main(argv: list[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse has already reported
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    logger = logging.getLogger("trailstore")
    handler = _StderrLogHandler(logging.WARNING)
    logger.addHandler(handler)
    try:
        handle: Callable[[argparse.Namespace], int] = args.handler
        return handle(args)
    except _StdoutClosed:
        _silence_stdout()
        return EXIT_OK
    except (UsageError, *_USAGE_ERRORS) as exc:
        _say(_one_line(exc))
        return EXIT_USAGE
    except (AuditTrailError, OSError) as exc:
        _say(_one_line(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        _say("interrupted")
        return EXIT_INTERRUPTED
    finally:
        logger.removeHandler(handler)
