"""``index.json`` and the lease protocol that serialises commit sessions across hosts.

The index holds ``last_event_id`` (the counter of the original format) plus:

- ``writer_epoch`` — bumped by every lease acquisition; a writer whose compare-and-swap finds
  another epoch has been taken over and is fenced;
- ``lease`` — ``{"expires", "reserved_through", "owner"}`` while a session holds the trail: the
  holder may hand out IDs up to ``reserved_through`` without a request; whoever takes over an
  expired lease starts above that, so IDs handed out by a zombie are never reused;
- ``streams`` — ``{"domain/category": [open segment number, its size]}``, so that rotation is
  decided inside the same compare-and-swap that advances the counter;
- ``taken_over`` — the owners of the last leases taken over (present once one was), so that a
  writer whose compare-and-swap was answered 412 can tell a takeover from its own write that
  landed but whose answer was lost (and was then retried, or moved on from by the next writer).

Every change is a PUT with ``If-Match: <ETag>`` (``If-None-Match: *`` to create it).
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from trailstore.backend import StreamKey
from trailstore.errors import ConflictError, FencedError, StorageError
from trailstore_s3.store import ObjectStore

log = logging.getLogger("trailstore")

#: told ``(first, last)`` before a write that reserves those IDs
Reserving = Callable[[int, int], None]

_FIRST_DELAY = 0.004
_MAX_DELAY = 0.05
#: lease owners remembered in ``taken_over``
TAKEOVERS_KEPT = 16


@dataclass(frozen=True)
class Lease:
    """A session's hold on the trail."""

    expires: float
    reserved_through: int
    #: random per acquisition, so that no two acquisitions write the same bytes (same ETag)
    owner: str


@dataclass(frozen=True)
class OpenSegment:
    """The segment of a stream that receives chunks, and its committed size in bytes."""

    number: int
    size: int


@dataclass(frozen=True)
class IndexState:
    """The decoded content of ``index.json``."""

    last_event_id: int = 0
    writer_epoch: int = 0
    lease: Lease | None = None
    streams: dict[StreamKey, OpenSegment] = field(default_factory=dict)
    #: owners of the most recent leases that were taken over, oldest first
    taken_over: tuple[str, ...] = ()
    #: False for an index written by another writer (no ``streams``): reconcile with the data
    complete: bool = True

    @property
    def highest_reserved(self) -> int:
        """The highest ID anybody may have handed out."""
        reserved = self.lease.reserved_through if self.lease else 0
        return max(self.last_event_id, reserved)

    def encode(self) -> bytes:
        """Compact JSON."""
        document: dict[str, Any] = {
            "last_event_id": self.last_event_id,
            "writer_epoch": self.writer_epoch,
        }
        if self.lease is not None:
            document["lease"] = {
                "expires": self.lease.expires,
                "reserved_through": self.lease.reserved_through,
                "owner": self.lease.owner,
            }
        document["streams"] = {
            str(stream): [segment.number, segment.size]
            for stream, segment in sorted(self.streams.items())
        }
        if self.taken_over:
            document["taken_over"] = list(self.taken_over)
        return json.dumps(document, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes, url: str) -> IndexState:
        """Parse ``index.json``; the original ``{"last_event_id": N}`` gives an incomplete state."""
        try:
            document = json.loads(data)
            lease = document.get("lease")
            streams = {}
            for name, (number, size) in document.get("streams", {}).items():
                domain, category = name.split("/")
                streams[StreamKey(domain, category)] = OpenSegment(int(number), int(size))
            return cls(
                last_event_id=int(document["last_event_id"]),
                writer_epoch=int(document.get("writer_epoch", 0)),
                lease=Lease(
                    float(lease["expires"]), int(lease["reserved_through"]), str(lease["owner"])
                )
                if lease
                else None,
                streams=streams,
                taken_over=tuple(str(owner) for owner in document.get("taken_over", [])),
                complete="streams" in document,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StorageError(f"unreadable index.json in {url}: {exc}") from exc


@dataclass(frozen=True)
class HeldLease:
    """A lease this process holds: the state it last wrote and that write's ETag."""

    state: IndexState
    etag: str


class IndexStore:
    """Reads and compare-and-swaps ``index.json``; remembers the last version seen."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        self._key = store.location.index_key
        self._url = store.location.url
        self._seen: tuple[IndexState, str | None] | None = None
        #: owner tokens of leases this process wrote, or tried to write without learning
        #: whether the write landed: a failed session may have left one behind
        self._owned: set[str] = set()

    def read(self) -> tuple[IndexState, str | None]:
        """The current state and its ETag (``None`` if there is no index yet)."""
        try:
            data, etag = self._store.get(self._key)
        except FileNotFoundError:
            seen: tuple[IndexState, str | None] = (IndexState(complete=False), None)
        else:
            seen = (IndexState.decode(data, self._url), etag)
        self._seen = seen
        return seen

    def acquire(
        self,
        reserve: int,
        seconds: float,
        *,
        create: bool = False,
        reserving: Reserving | None = None,
    ) -> HeldLease:
        """Take the lease (waiting while another holder's is valid), reserving ``reserve`` IDs.

        An expired lease, or one this process left behind, is taken over: its reserved IDs are
        skipped, never reused. A missing index is created only with ``create`` (the caller then
        reconciles it with the data).
        """
        state, etag = self._seen or self.read()
        delay = _FIRST_DELAY
        while True:
            if etag is None and not create:
                raise StorageError(f"{self._key} of {self._url} vanished; reopen the writer")
            now = time.time()
            lease = state.lease
            mine = lease is not None and lease.owner in self._owned
            if lease is not None and lease.expires > now and not mine:
                time.sleep(min(random.uniform(delay / 2, delay), lease.expires - now + 0.001))
                delay = min(delay * 2, _MAX_DELAY)
                state, etag = self.read()
                continue
            if lease is not None:
                log.warning(
                    "taking over the %s lease of writer_epoch %d of %s; IDs %d..%d it "
                    "reserved are skipped",
                    "unfinished own" if mine else "expired",
                    state.writer_epoch,
                    self._url,
                    state.last_event_id + 1,
                    lease.reserved_through,
                )
            base = state.highest_reserved
            taken_over = state.taken_over
            if lease is not None:
                taken_over = (*taken_over, lease.owner)[-TAKEOVERS_KEPT:]
            wanted = replace(
                state,
                last_event_id=base,
                writer_epoch=state.writer_epoch + 1,
                lease=Lease(round(now + seconds, 3), base + reserve, secrets.token_hex(4)),
                taken_over=taken_over,
            )
            if reserving is not None and reserve > 0:
                reserving(base + 1, base + reserve)
            try:
                return HeldLease(wanted, self._write(wanted, etag))
            except ConflictError:
                state, etag = self.read()
                if state == wanted and etag is not None:
                    return HeldLease(wanted, etag)
                time.sleep(random.uniform(0, delay))

    def swap(self, held: HeldLease, wanted: IndexState) -> HeldLease:
        """Replace the state ``held`` wrote by ``wanted``; ``FencedError`` if it was taken over.

        A 412 can also answer the retry of our own write that landed (its answer was lost):
        the index then holds ``wanted`` or, if ``wanted`` released the lease, what later
        writers made of it; unless ``held``'s lease is listed as taken over, that is success.
        The returned lease is not to be swapped again after a release.
        """
        try:
            return HeldLease(wanted, self._write(wanted, held.etag))
        except ConflictError:
            current, etag = self.read()
            if etag is not None and (current == wanted or _moved_on_from(held, wanted, current)):
                self._owned = {wanted.lease.owner} if wanted.lease else set()
                return HeldLease(wanted, etag)
            raise FencedError(
                f"the lease of writer_epoch {held.state.writer_epoch} on {self._url} was taken "
                f"over (writer_epoch is now {current.writer_epoch}); nothing was written"
            ) from None

    def _write(self, state: IndexState, etag: str | None) -> str:
        if state.lease is not None:
            self._owned.add(state.lease.owner)
        try:
            new_etag = self._store.put(self._key, state.encode(), if_match=etag)
        except FileNotFoundError:  # If-Match on a deleted index: AWS answers 404, not 412
            raise ConflictError(f"{self._key} of {self._url} vanished") from None
        self._seen = (state, new_etag)
        self._owned = {state.lease.owner} if state.lease else set()
        return new_etag


def _moved_on_from(held: HeldLease, wanted: IndexState, current: IndexState) -> bool:
    """Whether ``current`` was made by later writers from ``wanted``, a release of ``held``'s
    lease, rather than by one that took ``held``'s lease over."""
    lease = held.state.lease
    return (
        lease is not None
        and wanted.lease is None
        and lease.owner not in current.taken_over
        and current.writer_epoch > held.state.writer_epoch
        and current.last_event_id >= wanted.last_event_id
    )
