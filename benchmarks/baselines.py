"""The writers trailstore is compared against, each a faithful model of a real alternative."""

from __future__ import annotations

import itertools
import json
import logging
import logging.handlers
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from trailstore.backend import parse_segment_name, segment_name
from trailstore.events import AuditEvent


def _line(event_id: int, fields: dict[str, Any]) -> str:
    """The event as one compact JSON line, the cheapest way: ``json.dumps`` of plain data.

    The harness hands baselines plain dicts (see ``plain_fields``), so they pay for no model.
    """
    return json.dumps(
        {"event_id": event_id, "timestamp": time.time(), **fields}, separators=(",", ":")
    )


def plain_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """An event's keywords as plain JSON data (payload dumped, enums as strings)."""
    event = AuditEvent(event_id=0, timestamp=0, **fields)
    plain = event.model_dump(mode="json", exclude_none=True)
    return {key: plain[key] for key in fields if key in plain}


class NaiveWriter:
    """The simple original writer: per event, bump the counter and rewrite ``index.json``
    (temp + fsync + rename), list the stream's directory for its newest segment, stat it,
    open it in append mode, write one line, close."""

    def __init__(self, root: Path, segment_bytes: int) -> None:
        self.root = root
        self.segment_bytes = segment_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        self.counter = 0
        self.lock = threading.Lock()

    def append(self, fields: dict[str, Any]) -> None:
        with self.lock:
            self.counter += 1
            temporary = self.root / f"index.json.{uuid.uuid4().hex}.tmp"
            with open(temporary, "w") as out:
                json.dump({"last_event_id": self.counter}, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.root / "index.json")
            line = _line(self.counter, fields) + "\n"
            directory = self.root / fields["domain"] / fields["category"]
            directory.mkdir(parents=True, exist_ok=True)
            numbers = [n for n in map(parse_segment_name, os.listdir(directory)) if n]
            number = max(numbers, default=1)
            path = directory / segment_name(number)
            if path.exists() and path.stat().st_size + len(line) > self.segment_bytes:
                path = directory / segment_name(number + 1)
            with open(path, "a") as out:
                out.write(line)

    def close(self) -> None:
        """Nothing is buffered."""


class RotatingHandlerWriter:
    """What many users reach for instead: stdlib logging's ``RotatingFileHandler``, one JSON line
    per event, no fsync."""

    def __init__(self, root: Path, segment_bytes: int) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.handler = logging.handlers.RotatingFileHandler(
            root / "audit.jsonl", maxBytes=segment_bytes, backupCount=10_000
        )
        self.logger = logging.getLogger(f"bench.{uuid.uuid4().hex}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self.handler)
        self.next_id = itertools.count(1).__next__  # atomic under the GIL

    def append(self, fields: dict[str, Any]) -> None:
        self.logger.info(_line(self.next_id(), fields))

    def close(self) -> None:
        self.handler.close()


class BareLoopWriter:
    """The physical ceiling: serialise each event and write it to one buffered file."""

    def __init__(self, root: Path, segment_bytes: int) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.out = open(root / "bare.jsonl", "w")  # noqa: SIM115 - closed in close()
        self.counter = 0
        self.lock = threading.Lock()

    def append(self, fields: dict[str, Any]) -> None:
        with self.lock:
            self.counter += 1
            self.out.write(_line(self.counter, fields) + "\n")

    def close(self) -> None:
        self.out.close()


class NaiveS3Writer:
    """The object-store analogue of the naive writer: one PUT of a new object per event plus a
    PUT of the index, no batching."""

    def __init__(self, bucket: str, prefix: str, client: Any) -> None:
        self.bucket, self.prefix, self.client = bucket, prefix, client
        self.next_id = itertools.count(1).__next__  # atomic under the GIL

    def append(self, fields: dict[str, Any]) -> None:
        event_id = self.next_id()
        body = _line(event_id, fields).encode() + b"\n"
        key = f"{self.prefix}/{fields['domain']}/{fields['category']}/{event_id:012d}.json"
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body)
        index = json.dumps({"last_event_id": event_id}).encode()
        self.client.put_object(Bucket=self.bucket, Key=f"{self.prefix}/index.json", Body=index)

    def close(self) -> None:
        """Nothing is buffered."""
