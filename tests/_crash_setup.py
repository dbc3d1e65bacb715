"""Set-up run in the crash kit's writer processes of the local tests (``CrashKit.setup``)."""

from __future__ import annotations

import random
import time
from typing import Any

from trailstore.store import appending

_real_write_all = appending.write_all


def short_writes() -> None:
    """Segment writes go out a few bytes per ``write`` call and take a moment (a legal short
    write on a slow disk), so a kill often lands between two parts of a line."""

    def slowly(fd: int, data: Any) -> None:
        view = memoryview(data)
        while view:
            piece = view[: random.randint(1, 48)]
            _real_write_all(fd, bytes(piece))
            view = view[len(piece) :]
            time.sleep(0.0002)

    appending.write_all = slowly
