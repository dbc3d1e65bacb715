"""A fault-injecting HTTP proxy on 127.0.0.1 in front of the moto server.

At a configurable rate a request meets one fault, chosen from a seeded random generator:

- ``500`` / ``503`` — an ``InternalError`` / ``ServiceUnavailable`` answer; the request never
  reaches the server;
- ``slowdown`` — a 503 ``SlowDown`` answer with S3's XML error body, not forwarded either;
- ``drop_before`` — the connection is closed without an answer, the request not forwarded;
- ``drop_after`` — the request IS forwarded and takes effect, then the connection is closed
  without an answer: the client cannot tell it from ``drop_before`` and must retry safely;
- ``delay`` — the request is forwarded and the answer held back for a moment.

A request counts as retried when its ``amz-sdk-invocation-id`` was seen before: botocore's
own retries (``amz-sdk-request: attempt=N``, N > 1) and aiohttp's silent resend of an
idempotent request (PUT included) whose kept-alive connection was closed (same attempt).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from _s3_proxy import CountingProxy, Request, Response

FAULTS = ("500", "503", "slowdown", "drop_before", "drop_after", "delay")
#: botocore's backoff before retry N is up to 2**(N-1) seconds; the fault tests scale it by this
BACKOFF_SCALE = 0.02

_ERRORS = {
    "500": (500, "Internal Server Error", "InternalError", "We encountered an internal error."),
    "503": (503, "Service Unavailable", "ServiceUnavailable", "Please reduce your request rate."),
    "slowdown": (503, "Slow Down", "SlowDown", "Please reduce your request rate."),
}


def s3_error(status: int, reason: str, code: str, message: str) -> Response:
    """An S3 error response with the usual XML body."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        "<RequestId>FAULTPROXY</RequestId></Error>"
    ).encode()
    return Response(status, reason, [("Content-Type", "application/xml")], body)


class FaultProxy(CountingProxy):
    """A ``CountingProxy`` that injects a fault into ``rate`` of the requests.

    ``kinds`` picks the faults (uniformly); ``delay`` bounds the held-back time of ``delay``
    faults. Nothing is injected while ``enabled`` is false.
    """

    def __init__(
        self,
        upstream: str,
        *,
        rate: float,
        seed: int,
        kinds: tuple[str, ...] = FAULTS,
        delay: tuple[float, float] = (0.01, 0.15),
    ) -> None:
        super().__init__(upstream)
        unknown = set(kinds) - set(FAULTS)
        assert not unknown, f"unknown fault kinds {unknown}"
        self.rate = rate
        self.kinds = kinds
        self.delay = delay
        self.enabled = True
        self._random = random.Random(seed)
        self._decide = threading.Lock()
        #: faults injected, by kind
        self.injected: Counter[str] = Counter()
        #: requests that were a retry: ``botocore`` (attempt > 1) or ``aiohttp`` (same attempt)
        self.retried: Counter[str] = Counter()
        self._seen: set[tuple[str, int]] = set()
        #: 412 answers to PUTs: failed preconditions, including retries of PUTs that landed
        self.precondition_failed = 0

    def respond(self, request: Request, forward: Callable[[], Response]) -> Response | None:
        invocation, attempt = _invocation(request)
        with self._decide:
            if invocation and (invocation, attempt) in self._seen:
                self.retried["aiohttp"] += 1
            elif attempt > 1:
                self.retried["botocore"] += 1
            self._seen.add((invocation, attempt))
            roll = self._random.random()
            kind = self._random.choice(self.kinds)
            pause = self._random.uniform(*self.delay)
            if not self.enabled or roll >= self.rate:
                kind = ""
            else:
                self.injected[kind] += 1
        if kind in _ERRORS:
            return s3_error(*_ERRORS[kind])
        if kind == "drop_before":
            return None
        response = forward()
        if response.status == 412 and request.method == "PUT":
            with self._decide:
                self.precondition_failed += 1
        if kind == "drop_after":
            return None
        if kind == "delay":
            time.sleep(pause)
        return response

    def summary(self) -> dict[str, object]:
        """Requests seen, faults injected by kind and requests retried, for reports."""
        return {
            "requests": len(self.requests),
            "faults": dict(sorted(self.injected.items())),
            "faults_total": sum(self.injected.values()),
            "retried": sum(self.retried.values()),
            "retried_by": dict(sorted(self.retried.items())),
            "put_412": self.precondition_failed,
        }


def scaled_backoff(original: Callable[..., Any], factor: float) -> Callable[..., float]:
    """botocore's ``retryhandler.delay_exponential`` scaled by ``factor``: which requests are
    retried, and how often, is unchanged; the delay function is bound when a client is made."""

    def delay_exponential(base: Any, growth_factor: float, attempts: int) -> float:
        return float(original(base, growth_factor, attempts)) * factor

    return delay_exponential


def _invocation(request: Request) -> tuple[str, int]:
    """botocore's invocation ID and attempt number (``amz-sdk-request: attempt=2; max=5``)."""
    headers = {key.lower(): value for key, value in request.headers.items()}
    attempt = 1
    for part in headers.get("amz-sdk-request", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == "attempt" and value.isdigit():
            attempt = int(value)
    return headers.get("amz-sdk-invocation-id", ""), attempt
