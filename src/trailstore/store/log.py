"""``LogStore``: a trail on an fsspec filesystem that cannot append (object stores, memory).

Events go into commit objects (``commits.py``), each created once under the next commit
number; when a stream rotates, the lines of its complete segment are copied out of the
commits into the sealed ``audit-NNNNNN.jsonl`` object, which is what readers of the original
format read. Checkpoints hold the state every so often, so that opening a trail replays only
the commits since; commits whose lines are all sealed and that a checkpoint covers are deleted.

Readers see every event at once: a segment is its sealed object if there is one, else the
lines the commits hold for it, in commit order.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterable, Iterator

from fsspec import AbstractFileSystem

from trailstore.backend import StreamKey
from trailstore.lines import line_event_id
from trailstore.store.commits import (
    Commit,
    DamagedCommitError,
    OpenSegment,
    TrailState,
    commits_needed,
)
from trailstore.store.layout import Layout, parse_checkpoint_name, parse_sequence_name

log = logging.getLogger("trailstore")


#: commits read at once when catching up with other writers
CATCH_UP_WINDOW = 4


class CommitTakenError(Exception):
    """Another writer created the commit of that number first."""


class LogStore:
    """Commits, checkpoints and sealed segments of one trail on one filesystem."""

    def __init__(self, fs: AbstractFileSystem, layout: Layout, url: str) -> None:
        self.fs = fs
        self.layout = layout
        self.url = url
        #: commits read or written by this process, by number (their lines seal segments)
        self._commits: dict[int, Commit] = {}

    # -- commits -------------------------------------------------------------------------------

    def create_commit(self, commit: Commit, *, create_only: bool) -> None:
        """Create the object of ``commit``; ``CommitTakenError`` if that number is taken by
        another commit (the very same bytes there are this commit's own earlier attempt)."""
        path, data = self.layout.log(commit.seq), commit.encode()
        try:
            if create_only:
                self.fs.pipe_file(path, data, mode="create")
            else:
                self.fs.pipe_file(path, data)
        except FileExistsError as exc:
            # a retried write whose first attempt landed (its answer lost) finds itself
            try:
                mine = self.fresh().cat_file(path) == data
            except FileNotFoundError:
                mine = False  # not readable yet: the caller reads the log again and retries
            if not mine:
                raise CommitTakenError(f"commit {commit.seq} of {self.url} exists") from exc
        self._commits[commit.seq] = commit

    def read_commits(self, numbers: Iterable[int]) -> dict[int, Commit]:
        """The commits of these numbers that exist (fetched concurrently where the filesystem
        can); a damaged one yields what its lines still tell."""
        wanted = sorted(set(numbers))
        found = {seq: self._commits[seq] for seq in wanted if seq in self._commits}
        missing = [seq for seq in wanted if seq not in found]
        if missing:
            paths = {self._key(self.layout.log(seq)): seq for seq in missing}
            bodies = self.fresh().cat(list(paths), on_error="omit")
            for path, data in bodies.items():
                seq = paths[self._key(path)]
                found[seq] = self._commits[seq] = self._decode(seq, data)
        return found

    def _key(self, path: str) -> str:
        """A path as the filesystem names it in answers (no protocol, no trailing slash)."""
        return str(self.fs._strip_protocol(path)).rstrip("/")

    def _decode(self, seq: int, data: bytes) -> Commit:
        try:
            commit = Commit.decode(data)
        except DamagedCommitError as exc:
            ids = [line_event_id(line) for line in data.splitlines()]
            highest = max((i for i in ids if i is not None), default=0)
            log.warning("commit %d of %s is damaged (%s); its lines are lost", seq, self.url, exc)
            return Commit(seq=seq, first=highest + 1, last=highest, writer="")
        if commit.seq != seq:
            log.warning("commit object %d of %s says it is commit %d", seq, self.url, commit.seq)
        return commit

    def fresh(self) -> AbstractFileSystem:
        """The filesystem with its listings cache dropped: s3fs, gcsfs and others answer
        ``ls``, ``info`` and ``exists`` from listings they took earlier, which other writers'
        objects made stale."""
        self.fs.invalidate_cache()
        return self.fs

    def logged_numbers(self) -> list[int]:
        """The numbers of the commit objects that exist, ascending (one listing)."""
        try:
            names = self.fresh().ls(self.layout.log_directory, detail=False)
        except FileNotFoundError:
            return []
        numbers = (parse_sequence_name(name.rsplit("/", 1)[-1]) for name in names)
        return sorted(number for number in numbers if number is not None)

    # -- state ---------------------------------------------------------------------------------

    def checkpoints(self) -> list[tuple[int, int, str]]:
        """``(commit number, Unix seconds written, path)`` of every checkpoint, newest first."""
        try:
            names = self.fresh().ls(self.layout.checkpoint_directory, detail=False)
        except FileNotFoundError:
            return []
        found = []
        for name in names:
            parsed = parse_checkpoint_name(name.rsplit("/", 1)[-1])
            if parsed is not None:
                found.append((*parsed, self.layout.checkpoint(*parsed)))
        return sorted(found, reverse=True)

    def latest_checkpoint(self) -> TrailState | None:
        """The newest checkpoint that parses, ``None`` without one."""
        for seq, _, path in self.checkpoints():
            try:
                return TrailState.decode(self.fresh().cat_file(path))
            except (FileNotFoundError, DamagedCommitError) as exc:
                log.warning("skipping checkpoint %d of %s: %s", seq, self.url, exc)
        return None

    def catch_up(self, state: TrailState) -> TrailState:
        """``state`` with every commit after it added: the next numbers are read a window at a
        time (concurrently where the filesystem can), until one does not exist."""
        while True:
            window = range(state.seq + 1, state.seq + 1 + CATCH_UP_WINDOW)
            found = self.read_commits(window)
            for seq in window:
                if seq not in found:
                    return state
                state = state.after(found[seq])

    def open_state(self) -> TrailState | None:
        """The state as of the newest commit: the newest checkpoint plus the commits listed
        after it; ``None`` for a trail with neither (new, or written by another writer)."""
        checkpoint = self.latest_checkpoint()
        numbers = self.logged_numbers()
        if checkpoint is None and not numbers:
            return None
        state = checkpoint or TrailState()
        later = [seq for seq in numbers if seq > state.seq]
        commits = self.read_commits(later)
        for seq in later:
            if seq != state.seq + 1:
                break  # created out of order cannot happen; a missing number ends the log
            state = state.after(commits[seq])
        return self.catch_up(state)

    def write_checkpoint(self, state: TrailState, *, retention: float) -> None:
        """Record ``state``, bring ``index.json`` up to date for readers of the original
        format, and delete what no reader or writer can need any more: commits that a
        checkpoint older than ``retention`` seconds covers and whose lines are all sealed, and
        the checkpoints before that one. (A writer idle longer than ``retention`` reads the
        trail afresh before it commits, so it never misses a deleted commit.)"""
        now = int(time.time())
        with contextlib.suppress(FileExistsError):  # the same state, written by another writer
            self.fs.pipe_file(self.layout.checkpoint(state.seq, now), state.encode(), mode="create")
        self.write_index(state.last_event_id)
        old = [
            (seq, path) for seq, written, path in self.checkpoints() if written < now - retention
        ]
        if not old:
            return
        base = old[0][0]
        needed = commits_needed(state)
        stale = [seq for seq in self.logged_numbers() if seq <= base and seq not in needed]
        paths = [self.layout.log(seq) for seq in stale] + [path for _, path in old[1:]]
        if paths:
            self.fs.rm(paths)
        for seq in stale:
            self._commits.pop(seq, None)

    def write_index(self, last_event_id: int) -> None:
        """``index.json`` as the original format has it (overwritten: it is only a copy)."""
        self.fs.pipe_file(self.layout.index, b'{"last_event_id": %d}' % last_event_id)

    # -- segments ------------------------------------------------------------------------------

    def sealed_segments(self) -> dict[StreamKey, dict[int, int]]:
        """Every sealed segment by stream: number → size (one recursive listing)."""
        found: dict[StreamKey, dict[int, int]] = {}
        try:
            listing = self.fresh().find(self.layout.root, detail=True)
        except FileNotFoundError:
            return found
        for path, info in listing.items():
            parsed = self.layout.parse_segment_path(path)
            if parsed is not None and info.get("type") == "file":
                found.setdefault(parsed[0], {})[parsed[1]] = int(info.get("size") or 0)
        return found

    def commit_lines(
        self, stream: StreamKey, number: int, holders: Iterable[int]
    ) -> Iterator[bytes]:
        """The lines segment ``number`` of ``stream`` has in the commits ``holders``."""
        held = sorted(holders)
        commits = self.read_commits(held)
        for seq in held:
            commit = commits.get(seq)
            if commit is None:
                raise FileNotFoundError(f"commit {seq} of {self.url} holding {stream} vanished")
            yield from commit.lines_of(stream, number)

    def seal(self, stream: StreamKey, number: int, holders: Iterable[int]) -> None:
        """Copy a complete segment's lines out of its commits into its sealed object."""
        self.write_sealed(stream, number, b"".join(self.commit_lines(stream, number, holders)))

    def write_sealed(self, stream: StreamKey, number: int, data: bytes) -> None:
        """Create a sealed segment (once: another writer sealing it wrote the same lines)."""
        with contextlib.suppress(FileExistsError):
            self.fs.pipe_file(self.layout.segment(stream, number), data, mode="create")

    def segment_holders(self, state: TrailState) -> dict[StreamKey, dict[int, tuple[int, ...]]]:
        """The segments of ``state`` not sealed yet, with the commits holding their lines."""
        holders: dict[StreamKey, dict[int, tuple[int, ...]]] = {}
        for stream, number, held in state.unsealed:
            holders.setdefault(stream, {})[number] = held
        for stream, segment in state.streams.items():
            if segment.commits:
                holders.setdefault(stream, {})[segment.number] = segment.commits
        return holders

    def bootstrap(self) -> TrailState:
        """The state of a trail found without a log (new, or written by another writer and
        copied here): each stream continues in a new segment after its last one (a sealed
        object is never rewritten), and the counter is above every ID that its segments —
        walking back past empty ones — and its ``index.json`` hold."""
        highest = self.read_index() or 0
        streams: dict[StreamKey, OpenSegment] = {}
        for stream, numbers in self.sealed_segments().items():
            streams[stream] = OpenSegment(max(numbers) + 1, 0)
            for number in sorted(numbers, reverse=True):
                data = self.fresh().cat_file(self.layout.segment(stream, number))
                ids = [line_event_id(line) for line in data.splitlines()]
                found = [event_id for event_id in ids if event_id is not None]
                if found:
                    highest = max(highest, *found)
                    break
        return TrailState(last_event_id=highest, streams=streams)

    def read_index(self) -> int | None:
        """``last_event_id`` of ``index.json``, ``None`` if it is missing or unreadable."""
        try:
            value = json.loads(self.fresh().cat_file(self.layout.index))["last_event_id"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            log.warning("ignoring unreadable index.json of %s: %s", self.url, exc)
            return None
        return value if isinstance(value, int) and value >= 0 else None
