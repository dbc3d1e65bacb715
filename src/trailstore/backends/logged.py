"""``LogBackend``: a trail on any fsspec filesystem that cannot append, as a log of commits
(``trailstore.store.log``) with a coordinator (``trailstore.coordinators``) deciding who
commits next: ``LockedCommits`` for writers on one host, ``ConditionalWrites`` for many.

A commit session builds one commit object from the newest state it knows: its events' IDs
follow the previous commit's, and rotation follows the sizes that state records. An
uncontended commit is the one write of that object. Segments a commit rotated away from are
then sealed; every ``checkpoint_every`` commits the state is checkpointed, ``index.json``
updated for readers of the original format, and commits no longer needed deleted.
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from fsspec import AbstractFileSystem
from fsspec.asyn import AsyncFileSystem

from trailstore.backend import Backend, CommitSession, StreamKey, plan_rotation
from trailstore.coordinators import Coordinator
from trailstore.coordinators.conditional import ConditionalWrites, create_only_is_enforced
from trailstore.errors import FencedError, StorageError
from trailstore.lines import bounded_lines
from trailstore.store.commits import Commit, Entry, Lease, OpenSegment, TrailState, renumber
from trailstore.store.layout import Layout
from trailstore.store.log import CommitTakenError, LogStore

log = logging.getLogger("trailstore")

_FIRST_DELAY = 0.01
_MAX_DELAY = 0.1
#: IDs a ``batch`` session reserves at a time (more as it needs them)
RESERVE_BLOCK = 1024


@dataclass
class _View:
    """What a reader sees: the state and the sealed segments, taken together."""

    state: TrailState
    sealed: dict[StreamKey, dict[int, int]]


class LogBackend(Backend):
    """A trail kept as a log of commits on an fsspec filesystem."""

    supports_concurrent_processes = True
    #: how long a ``batch`` writer's lease lasts past its last commit
    lease_seconds: ClassVar[float] = 10.0
    #: commits between checkpoints
    checkpoint_every: ClassVar[int] = 64
    #: how long commits a checkpoint covers are kept; a writer idle for half of it reads the
    #: trail afresh before its next commit (it could otherwise miss a deleted one)
    log_retention_seconds: ClassVar[float] = 300.0

    def __init__(
        self,
        url: str,
        fs: AbstractFileSystem,
        root: str,
        coordinator: Coordinator | None = None,
        **storage_options: Any,
    ) -> None:
        """``coordinator`` ``None``: conditional writes where the storage enforces create-only
        writes (probed when the first writer opens), else a local lock with a warning."""
        super().__init__(url, **storage_options)
        self.fs = fs
        self.store = LogStore(fs, Layout(root), url)
        self._coordinator = coordinator
        self.writer_id = uuid.uuid4().hex[:16]
        self._session_lock = threading.Lock()
        self._state: TrailState | None = None
        self._refreshed_at = 0.0
        self._view: _View | None = None

    # -- writing -------------------------------------------------------------------------------

    @property
    def coordinator(self) -> Coordinator:
        """The coordinator; chosen by a probe of the storage the first time it is needed."""
        if self._coordinator is None:
            if create_only_is_enforced(self.fs, self.store.layout):
                self._coordinator = ConditionalWrites()
            else:
                from trailstore.coordinators.local_lock import LockedCommits  # needs fcntl

                log.warning(
                    "%s does not enforce create-only writes, so its writers are coordinated "
                    "by a lock on this host: every writer of this trail must run on it",
                    self.url,
                )
                self._coordinator = LockedCommits(self.url)
        return self._coordinator

    @property
    def exclusive_sessions(self) -> bool:
        return self.coordinator.exclusive

    @property
    def survives_fork(self) -> bool:
        return not isinstance(self.fs, AsyncFileSystem)

    @property
    def coordination(self) -> str:
        try:
            return self.coordinator.described
        except OSError as exc:  # the probe needs to write; a reader may not be allowed to
            return f"not known: the storage could not be probed ({exc})"

    def open_for_writing(self) -> None:
        with self._session_lock, _storage_errors(f"cannot open trail {self.url} for writing"):
            marker = self.coordinator.enter()
            try:
                self._repair(self._current(marker))
            finally:
                self.coordinator.leave(self._state.seq if self._state else None)

    def begin(self, *, max_segment_bytes: int, hand_out: bool = False) -> CommitSession:
        self._session_lock.acquire()
        try:
            with _storage_errors(f"cannot start a commit on trail {self.url}"):
                marker = self.coordinator.enter()
                try:
                    self._current(marker)
                except BaseException:
                    self.coordinator.leave(None)
                    raise
        except BaseException:
            self._session_lock.release()
            raise
        return LogSession(self, max_segment_bytes, hand_out=hand_out)

    def _current(self, marker: int | None) -> TrailState:
        """The state to build the next commit on: read afresh the first time (bootstrapped
        for a trail without a log) and after a long idle spell; under a lock, caught up when
        the marker shows another writer committed since; else the cached one, as a claim on a
        stale state fails and is retried on the newer one (no request before an uncontended
        commit)."""
        state = self._state
        if state is None or time.time() - self._refreshed_at > self.log_retention_seconds / 2:
            state = self.store.open_state()
            if state is None:
                state = self.store.bootstrap()
                self.store.write_checkpoint(state, retention=self.log_retention_seconds)
            self._refreshed_at = time.time()
        elif self.coordinator.exclusive and marker != state.seq:
            state = self.refresh()
        self._state = state
        return state

    def refresh(self) -> TrailState:
        """Catch up with commits made since (after a lost claim, or while waiting)."""
        assert self._state is not None
        self._state = self.store.catch_up(self._state)
        self._refreshed_at = time.time()
        return self._state

    def claim(self, commit: Commit) -> bool:
        """Make ``commit`` the trail's next and take it into the state; False, having caught
        up, if another writer's commit took its number."""
        try:
            self.coordinator.claim(self.store, commit)
        except CommitTakenError:
            self.refresh()
            return False
        self.committed(commit)
        return True

    def committed(self, commit: Commit) -> TrailState:
        """Take a claimed commit into the state; seal what it completed; checkpoint."""
        assert self._state is not None
        state = self._state.after(commit)
        self._refreshed_at = time.time()  # it had to be the newest state for the claim to win
        for stream, number, holders in state.unsealed:
            try:
                self.store.seal(stream, number, holders)
                state = state.sealed(stream, number)
                self.rotations += 1
            except (OSError, StorageError) as exc:
                log.warning(
                    "could not seal segment %d of %s in %s: %s", number, stream, self.url, exc
                )
        self._state = state
        if state.seq % self.checkpoint_every == 0:
            self._checkpoint(state)
        return state

    def _checkpoint(self, state: TrailState) -> None:
        try:
            self.store.write_checkpoint(state, retention=self.log_retention_seconds)
        except OSError as exc:
            log.warning("could not checkpoint %s at commit %d: %s", self.url, state.seq, exc)

    def end_session(self) -> None:
        """Called by a session when it ends."""
        try:
            self.coordinator.leave(self._state.seq if self._state else None)
        finally:
            self._session_lock.release()

    def _repair(self, state: TrailState) -> TrailState:
        """Open segments whose last line was left torn (by another writer, a copied trail)
        are sealed with their complete lines, the torn bytes moved to quarantine, and their
        streams continue in a new segment."""
        for stream, segment in sorted(state.streams.items()):
            if not segment.commits:
                continue
            lines = list(self.store.commit_lines(stream, segment.number, segment.commits))
            if not lines or lines[-1].endswith(b"\n"):
                continue
            torn = lines.pop()
            quarantine = self.store.layout.quarantine(stream, segment.number)
            self.fs.pipe_file(quarantine, torn + b"\n")
            self.store.write_sealed(stream, segment.number, b"".join(lines))
            log.warning(
                "repaired torn tail of %s segment %d: %d bytes moved to %s",
                stream, segment.number, len(torn), quarantine,
            )  # fmt: skip
            commit = Commit(
                seq=state.seq + 1,
                first=state.reserved_through + 1,
                last=state.reserved_through,
                writer=self.writer_id,
                entries=((stream, segment.number + 1, 0, 0),),
                lease=state.lease,
            )
            try:
                self.coordinator.claim(self.store, commit)
            except CommitTakenError:
                state = self.refresh()
                continue
            state = state.after(commit).sealed(stream, segment.number)
            self._state = state
        return state

    def close(self) -> None:
        """Checkpoint the state this writer reached (so the next open replays nothing)."""
        state = self._state
        if state is not None and state.seq % self.checkpoint_every != 0:
            self._checkpoint(state)
        if self._coordinator is not None:
            self._coordinator.close()

    def abandon(self) -> None:
        if self._coordinator is not None:
            self._coordinator.abandon()

    # -- reading -------------------------------------------------------------------------------

    def _fresh_view(self) -> _View:
        with _storage_errors(f"cannot read trail {self.url}"):
            state = self.store.open_state() or self.store.bootstrap()
            self._view = _View(state, self.store.sealed_segments())
        return self._view

    def _recent_view(self) -> _View:
        return self._view or self._fresh_view()

    def last_event_id(self) -> int:
        return self._fresh_view().state.last_event_id

    def trail_exists(self) -> bool:
        layout, fs = self.store.layout, self.store.fresh()
        if fs.exists(layout.index) or fs.exists(layout.checkpoint_directory):
            return True
        return bool(self.store.sealed_segments())

    def list_streams(self) -> list[StreamKey]:
        return _streams_of(self._fresh_view())

    def settled_streams(self) -> tuple[int, list[StreamKey]]:
        view = self._fresh_view()  # one reading of the trail for both
        return view.state.last_event_id, _streams_of(view)

    def list_segments(self, stream: StreamKey) -> list[int]:
        view = self._recent_view()
        numbers = set(view.sealed.get(stream, {}))
        numbers |= set(self.store.segment_holders(view.state).get(stream, {}))
        return sorted(numbers)

    def read_segment(self, stream: StreamKey, number: int) -> Iterator[bytes]:
        view = self._recent_view()
        if number not in view.sealed.get(stream, {}):
            holders = self.store.segment_holders(view.state).get(stream, {}).get(number)
            if holders is not None:
                try:
                    lines = list(self.store.commit_lines(stream, number, holders))
                except FileNotFoundError:
                    pass  # sealed and collected since the view was taken: read the object
                else:
                    yield from lines
                    return
        with self.store.fresh().open(self.store.layout.segment(stream, number), "rb") as raw:
            yield from bounded_lines(io.BufferedReader(raw))  # readline with a limit

    def segment_size(self, stream: StreamKey, number: int) -> int:
        view = self._recent_view()
        sealed = view.sealed.get(stream, {})
        if number in sealed:
            return sealed[number]
        return sum(len(line) for line in self.read_segment(stream, number))

    def read_range(self, stream: StreamKey, number: int, start: int, end: int | None) -> bytes:
        size = self._recent_view().sealed.get(stream, {}).get(number)
        if size is not None:
            if start >= size:  # a range from the end is refused by some stores (S3: 416)
                return b""
            path = self.store.layout.segment(stream, number)
            return bytes(self.store.fresh().cat_file(path, start=start, end=end))
        return super().read_range(stream, number, start, end)

    # -- evidence ------------------------------------------------------------------------------

    def put_evidence(self, path: str, data: bytes) -> bool:
        """Created with a create-only write; under a lock where the storage does not enforce
        one (the lock then makes check-then-write safe among this host's writers)."""
        full = self.store.layout.path(path)
        with _storage_errors(f"cannot write evidence to {self.url}"):
            with self._session_lock:  # the probe runs once
                coordinator = self.coordinator
            if coordinator.exclusive:
                with self._session_lock:
                    marker = coordinator.enter()
                    try:
                        if not self.store.fresh().exists(full):
                            self.fs.pipe_file(full, data)
                            return True
                    finally:
                        coordinator.leave(marker)
            else:  # no lock: archives write many objects at once
                try:
                    self.fs.pipe_file(full, data, mode="create")
                    return True
                except FileExistsError:
                    pass
            return bool(self.store.fresh().cat_file(full) == data)

    def get_evidence(self, path: str) -> bytes:
        return bytes(self.store.fresh().cat_file(self.store.layout.path(path)))

    def list_evidence(self, directory: str) -> list[str]:
        try:
            found = self.store.fresh().ls(self.store.layout.path(directory), detail=True)
        except FileNotFoundError:
            return []
        return sorted(
            str(info["name"]).rstrip("/").rsplit("/", 1)[-1]
            for info in found
            if info.get("type") == "file"
        )


class LogSession(CommitSession):
    """One commit of a ``LogBackend``: IDs, rotation and the commit object built from the
    newest state, claimed through the coordinator (and rebuilt on a lost claim)."""

    def __init__(self, backend: LogBackend, max_segment_bytes: int, *, hand_out: bool) -> None:
        super().__init__(hand_out=hand_out)
        self._backend = backend
        self._max_segment_bytes = max_segment_bytes
        self._queued: dict[StreamKey, list[bytes]] = {}
        self._allocated = 0
        #: ``hand_out``: the first ID of this session's reservation, and the lease it holds
        self._first: int | None = None
        self._lease: Lease | None = None
        self._open = True

    # -- the contract --------------------------------------------------------------------------

    def allocate(self, count: int) -> int:
        if not self.hand_out:
            state = self._backend._state
            assert state is not None
            first = state.reserved_through + 1 + self._allocated  # provisional
            self._allocated += count
            return first
        if self._first is None or self._first + self._allocated + count - 1 > self._through:
            self._reserve(count)
        assert self._first is not None
        first = self._first + self._allocated
        self._allocated += count
        return first

    def append(self, stream: StreamKey, lines: Sequence[bytes]) -> None:
        self._queued.setdefault(stream, []).extend(lines)

    def commit(self, *, sync: bool) -> int:
        """Claim a commit of the queued lines; object stores acknowledge every write durably,
        so ``sync`` changes nothing. Returns the first ID committed."""
        try:
            with _storage_errors(f"cannot append to trail {self._backend.url}"):
                if not self._queued and not self.hand_out:
                    state = self._backend._state
                    return state.reserved_through + 1 if state else 1
                return self._claim_data_commit()
        finally:
            self._finish()

    def abort(self) -> None:
        """End without writing: a ``batch`` session's reservation is released with its IDs
        spent (they were handed out)."""
        try:
            if self._lease is not None:
                self._queued.clear()
                self._claim_data_commit()
        finally:
            self._finish()

    # -- claiming ------------------------------------------------------------------------------

    @property
    def _through(self) -> int:
        return self._lease.through if self._lease is not None else 0

    def _reserve(self, count: int) -> None:
        """Reserve (or extend the reservation) under a lease, in a commit of its own."""
        backend = self._backend
        delay = _FIRST_DELAY
        while True:
            state = self._usable_state()
            if self._lease is not None and state.lease != self._lease:
                raise FencedError(
                    f"the lease of writer {backend.writer_id} on {backend.url} was taken over; "
                    "its handed-out IDs stay spent"
                )
            first = self._first if self._first is not None else state.reserved_through + 1
            wanted = first + self._allocated + count - 1
            through = max(wanted, self._through + RESERVE_BLOCK, first + RESERVE_BLOCK - 1)
            lease = Lease(backend.writer_id, through, round(time.time() + backend.lease_seconds, 3))
            commit = Commit(
                seq=state.seq + 1,
                first=state.last_event_id + 1,
                last=state.last_event_id,
                writer=backend.writer_id,
                lease=lease,
                takeover=self._takeover(state),
            )
            self.reserving(max(first, state.reserved_through + 1), through)
            if not backend.claim(commit):
                delay = _back_off(delay)
                continue
            self._first, self._lease = first, lease
            return

    def _claim_data_commit(self) -> int:
        backend = self._backend
        count = sum(len(lines) for lines in self._queued.values())
        delay = _FIRST_DELAY
        while True:
            state = self._usable_state()
            if self.hand_out:
                if state.lease != self._lease:
                    raise FencedError(
                        f"the lease of writer {backend.writer_id} on {backend.url} was taken "
                        "over; nothing was written, and its handed-out IDs stay spent"
                    )
                assert self._first is not None
                first, queued = self._first, self._queued
                last = first + self._allocated - 1  # every ID handed out stays spent
            else:
                first = state.reserved_through + 1
                queued = self._renumbered(first)
                last = first + count - 1
            commit = self._data_commit(state, first, last, queued)
            if not self.hand_out:
                self.reserving(first, first + count - 1)
            if not backend.claim(commit):
                delay = _back_off(delay)
                continue
            self._lease = None
            return first

    def _usable_state(self) -> TrailState:
        """The newest state once no other writer's valid lease is in the way (waiting while
        one is)."""
        backend = self._backend
        delay = _FIRST_DELAY
        state = backend._state
        assert state is not None
        while (
            state.lease is not None
            and state.lease.holder != backend.writer_id
            and not backend.coordinator.may_take_over(state.lease, time.time())
        ):
            time.sleep(
                min(random.uniform(delay / 2, delay), max(0.001, state.lease.expires - time.time()))
            )
            delay = min(delay * 2, _MAX_DELAY)
            state = backend.refresh()
        return state

    def _takeover(self, state: TrailState) -> str | None:
        lease = state.lease
        if lease is None or lease.holder == self._backend.writer_id:
            return None
        log.warning(
            "taking over the lease of writer %s on %s; IDs up to %d it reserved are skipped",
            lease.holder, self._backend.url, lease.through,
        )  # fmt: skip
        return lease.holder

    def _renumbered(self, first: int) -> dict[StreamKey, list[bytes]]:
        """The queued lines with IDs from ``first`` in the order they were allocated."""
        ordered = sorted(
            ((line, stream) for stream, lines in self._queued.items() for line in lines),
            key=lambda item: _leading_id(item[0]),
        )
        fresh = renumber([line for line, _ in ordered], first)
        by_stream: dict[StreamKey, list[bytes]] = {}
        for line, (_, stream) in zip(fresh, ordered, strict=True):
            by_stream.setdefault(stream, []).append(line)
        return by_stream

    def _data_commit(
        self, state: TrailState, first: int, last: int, queued: dict[StreamKey, list[bytes]]
    ) -> Commit:
        entries: list[Entry] = []
        lines: list[bytes] = []
        for stream, stream_lines in queued.items():
            segment = state.streams.get(stream, OpenSegment(1, 0))
            number, size = segment.number, segment.size
            for new_segment, run in plan_rotation(size, stream_lines, self._max_segment_bytes):
                if new_segment:
                    number, size = number + 1, 0
                size += sum(map(len, run))
                entries.append((stream, number, size, len(run)))
                lines.extend(run)
        return Commit(
            seq=state.seq + 1,
            first=first,
            last=last,
            writer=self._backend.writer_id,
            entries=tuple(entries),
            lines=tuple(lines),
            lease=None,
            takeover=None if self.hand_out else self._takeover(state),
        )

    def _finish(self) -> None:
        if self._open:
            self._open = False
            self._backend.end_session()


def _streams_of(view: _View) -> list[StreamKey]:
    streams = set(view.sealed) | {s for s, seg in view.state.streams.items() if seg.commits}
    streams |= {stream for stream, _, _ in view.state.unsealed}
    return sorted(streams)


def _back_off(delay: float) -> float:
    """After a lost claim, wait a random moment up to ``delay`` (so that contending writers
    spread out) and return the next, doubled, bound."""
    time.sleep(random.uniform(0, delay))
    return min(delay * 2, _MAX_DELAY)


@contextlib.contextmanager
def _storage_errors(doing: str) -> Iterator[None]:
    """Raise what the storage refused as ``StorageError`` (naming the trail)."""
    try:
        yield
    except StorageError:
        raise
    except OSError as exc:
        raise StorageError(f"{doing}: {exc}") from exc


def _leading_id(line: bytes) -> int:
    return int(line[len(b'{"event_id":') : line.index(b",")])
