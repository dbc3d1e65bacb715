"""A counting HTTP proxy on 127.0.0.1 in front of the moto server: the tests count requests
and uploaded bytes where the server sees them, not where the client thinks it sent them.

Subclasses change what the client gets back by overriding ``CountingProxy.respond``
(``_fault_proxy.FaultProxy`` injects errors, dropped connections and delays)."""

from __future__ import annotations

import http.client
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "expect", "content-length"}


@dataclass(frozen=True)
class Request:
    """One request as the proxy saw it."""

    method: str
    path: str
    body_bytes: int
    headers: Mapping[str, str]


@dataclass(frozen=True)
class Response:
    """One response, as the upstream sent it or as a subclass made it up."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


class _QuietServer(ThreadingHTTPServer):
    """Clients that hang up (killed writers, dropped connections) are not worth a traceback."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class CountingProxy:
    """Forwards every request to ``upstream`` and records it."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        self._downloaded = 0
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        """The URL clients use instead of the upstream's."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        """Forget the requests seen so far."""
        with self._lock:
            self.requests = []
            self._downloaded = 0

    def count(self, method: str) -> int:
        """Requests seen with ``method``."""
        with self._lock:
            return sum(1 for request in self.requests if request.method == method)

    def uploaded_bytes(self) -> int:
        """Payload bytes of every PUT and POST seen."""
        with self._lock:
            return sum(r.body_bytes for r in self.requests if r.method in ("PUT", "POST"))

    def downloaded_bytes(self) -> int:
        """Body bytes of every answer to a GET seen."""
        with self._lock:
            return self._downloaded

    def respond(self, request: Request, forward: Callable[[], Response]) -> Response | None:
        """The response the client gets; ``forward()`` sends the request upstream. ``None``
        closes the connection without answering."""
        return forward()

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self
        local = threading.local()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                payload = int(self.headers.get("x-amz-decoded-content-length") or length)
                request = Request(self.command, self.path, payload, dict(self.headers.items()))
                proxy._record(request)
                response = proxy.respond(request, lambda: self._upstream(body))
                if response is None:
                    self.close_connection = True
                    return
                self.send_response(response.status, response.reason)
                for key, value in response.headers:
                    if key.lower() not in _HOP_BY_HOP:
                        self.send_header(key, value)
                if self.command == "HEAD":
                    length_header = dict(response.headers).get("Content-Length", "0")
                    self.send_header("Content-Length", length_header)
                else:
                    self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(response.body)
                if self.command == "GET":
                    with proxy._lock:
                        proxy._downloaded += len(response.body)

            def _upstream(self, body: bytes) -> Response:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                if body or self.command in ("PUT", "POST"):
                    headers["Content-Length"] = str(len(body))
                connection = getattr(local, "connection", None)
                if connection is None:
                    connection = local.connection = http.client.HTTPConnection(*proxy._upstream)
                try:
                    connection.request(self.command, self.path, body=body, headers=headers)
                    response = connection.getresponse()
                except (ConnectionError, http.client.HTTPException):
                    connection.close()
                    connection.request(self.command, self.path, body=body, headers=headers)
                    response = connection.getresponse()
                data = response.read()
                return Response(response.status, response.reason, response.getheaders(), data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        return Handler
