"""Where a trail's files and objects live below its root, on any fsspec filesystem.

```
<root>/index.json                                  {"last_event_id": N}, as the original format
<root>/<domain>/<category>/audit-000001.jsonl      a segment (sealed, where storage can't append)
<root>/<domain>/<category>/audit-000001.jsonl.torn bytes moved aside by a repair
<root>/.trailstore/log/<commit, 20 digits>.jsonl   a commit: one object, created once
<root>/.trailstore/checkpoints/<commit>-<time>.json the state as of a commit
```
(The last two only where storage cannot append: object stores, fsspec's memory filesystem.)

Names starting with a dot are never streams, so readers of the original format, which list
``<domain>/<category>/audit-*.jsonl``, see none of the control objects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trailstore.backend import INDEX_NAME, StreamKey, parse_segment_name, segment_name

CONTROL = ".trailstore"
TORN_SUFFIX = ".torn"
_SEQUENCE_NAME = re.compile(r"(\d{20})\.jsonl")
_CHECKPOINT_NAME = re.compile(r"(\d{20})-(\d{12})\.json")


def sequence_name(seq: int, suffix: str) -> str:
    """The 20-digit, zero-padded name of commit ``seq``: listing order is commit order."""
    return f"{seq:020d}{suffix}"


def parse_sequence_name(name: str) -> int | None:
    """The commit number of a commit object's name, ``None`` for any other name."""
    match = _SEQUENCE_NAME.fullmatch(name)
    return int(match.group(1)) if match else None


def parse_checkpoint_name(name: str) -> tuple[int, int] | None:
    """``(commit number, Unix seconds written)`` of a checkpoint's name, else ``None``."""
    match = _CHECKPOINT_NAME.fullmatch(name)
    return (int(match.group(1)), int(match.group(2))) if match else None


@dataclass(frozen=True)
class Layout:
    """The paths of one trail, as the fsspec filesystem names them (no protocol)."""

    root: str

    def _join(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts]) if self.root else "/".join(parts)

    def path(self, relative: str) -> str:
        """A path below the root, given as ``a/b/c``."""
        return self._join(*relative.split("/"))

    @property
    def index(self) -> str:
        return self._join(INDEX_NAME)

    @property
    def log_directory(self) -> str:
        return self._join(CONTROL, "log")

    @property
    def checkpoint_directory(self) -> str:
        return self._join(CONTROL, "checkpoints")

    def log(self, seq: int) -> str:
        return self._join(CONTROL, "log", sequence_name(seq, ".jsonl"))

    def checkpoint(self, seq: int, written: int) -> str:
        return self._join(CONTROL, "checkpoints", f"{seq:020d}-{written:012d}.json")

    def stream_directory(self, stream: StreamKey) -> str:
        return self._join(stream.domain, stream.category)

    def segment(self, stream: StreamKey, number: int) -> str:
        return self._join(stream.domain, stream.category, segment_name(number))

    def quarantine(self, stream: StreamKey, number: int) -> str:
        return self.segment(stream, number) + TORN_SUFFIX

    def relative(self, path: str) -> list[str]:
        """The components of ``path`` below the root (``[]`` for a path outside it)."""
        prefix = self.root.rstrip("/") + "/" if self.root else ""
        return path[len(prefix) :].split("/") if path.startswith(prefix) else []

    def parse_segment_path(self, path: str) -> tuple[StreamKey, int] | None:
        """The stream and number of a segment path; ``None`` for any other path."""
        parts = self.relative(path)
        if len(parts) != 3 or any(part.startswith(".") for part in parts[:2]):
            return None
        number = parse_segment_name(parts[2])
        return None if number is None else (StreamKey(parts[0], parts[1]), number)
