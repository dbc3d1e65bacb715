"""The core conformance suite against a real moto server, plus the endpoint's own conformance:
conditional writes must be enforced (run this file against MinIO/R2/S3 to check a service)."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pytest
from trailstore_s3.backend import S3Backend
from trailstore_s3.layout import chunk_name
from trailstore_s3.store import ObjectStore

from trailstore.backend import StreamKey
from trailstore.errors import ConflictError
from trailstore.testing import BackendConformance


class TestS3Conformance(BackendConformance):
    @pytest.fixture
    def trail_url(self, fresh_trail_url: str) -> str:
        return fresh_trail_url

    @pytest.fixture
    def storage_options(self, s3_options: dict[str, Any]) -> dict[str, Any]:
        return s3_options

    def damage_tail(
        self,
        trail_url: str,
        storage_options: dict[str, Any],
        domain: str,
        category: str,
        data: bytes,
    ) -> None:
        """Add a chunk holding ``data`` to the stream's newest segment, bypassing the writer."""
        backend = S3Backend(trail_url, **storage_options)
        stream = StreamKey(domain, category)
        newest = backend.list_segments(stream)[-1]
        name = chunk_name(backend.last_event_id() + 1)
        backend.store.put(backend.location.chunk_key(stream, newest, name), data)


class TestConditionalWrites:
    """What the protocol needs from the endpoint; a service failing these is not safe to use."""

    @pytest.fixture
    def store(self, fresh_trail_url: str, s3_options: dict[str, Any]) -> ObjectStore:
        return S3Backend(fresh_trail_url, **s3_options).store

    def test_a_second_create_only_put_of_the_same_key_fails(self, store: ObjectStore) -> None:
        key = store.location.key("probe")
        store.put(key, b"first")
        with pytest.raises(ConflictError):
            store.put(key, b"second")
        assert store.get(key)[0] == b"first"

    def test_a_put_with_a_stale_etag_fails(self, store: ObjectStore) -> None:
        key = store.location.key("probe")
        first = store.put(key, b"first")
        second = store.put(key, b"second", if_match=first)
        with pytest.raises(ConflictError):
            store.put(key, b"third", if_match=first)
        assert store.get(key) == (b"second", second)

    def test_concurrent_create_only_puts_of_one_key_have_one_winner(
        self, store: ObjectStore
    ) -> None:
        key = store.location.key("race")
        start = threading.Barrier(8)
        winners: list[int] = []

        def race(writer: int) -> None:
            start.wait()
            with contextlib.suppress(ConflictError):
                store.put(key, b"%d" % writer)
                winners.append(writer)

        threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(winners) == 1
        assert store.get(key)[0] == b"%d" % winners[0]
