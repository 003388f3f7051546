"""A loopback HTTP receiver that behaves like a payment API with idempotency keys.

Runs a `ThreadingHTTPServer` on 127.0.0.1 (port 0) in a background thread. Every request is
recorded (method, target, path, query, lower-cased headers, body, parsed JSON). Answers come
from per-path `Route`s (fixed JSON, status, delay, huge body, redirect); unknown paths get
a 404.

Effects: a request whose method changes things (not GET/HEAD/OPTIONS) and whose route
answers 2xx applies one effect (appended to ``.effects``). Like a real payment API, the
first request carrying an ``Idempotency-Key`` applies the effect and its response is
stored; later requests with the same key get the stored response (with header
``Idempotent-Replayed: true``) and no new effect. The effect is applied *before* the
route's delay, so a client that times out has still caused it, exactly like a crash
between the effect and recording it. All bookkeeping is under one lock.

    with HttpReceiver() as receiver:
        receiver.route("/refunds", status=201, body={"refund": "r_1"})
        ...  # call receiver.url + "/refunds"; allow receiver.host_port in HttpPolicy
        assert len(receiver.effects) == 1
"""

from __future__ import annotations

__all__ = ["Effect", "HttpReceiver", "RecordedRequest", "Route"]

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_REQUEST_BODY = 10_000_000
_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Route:
    """How one path answers."""

    status: int = 200
    body: Any = field(default_factory=lambda: {"ok": True})
    delay_s: float = 0.0
    huge_body_bytes: int = 0
    declare_length: bool = True
    redirect_to: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the receiver saw it."""

    method: str
    target: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    json: Any


@dataclass(frozen=True, slots=True)
class Effect:
    """One applied side effect."""

    method: str
    path: str
    idempotency_key: str | None
    json: Any


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    huge_body_bytes: int = 0
    declare_length: bool = True


def _reply_for(route: Route) -> _Reply:
    if route.redirect_to is not None:
        status = route.status if 300 <= route.status < 400 else 302
        headers = (("Location", route.redirect_to), *route.headers)
        return _Reply(status, headers, b"")
    headers = (("Content-Type", route.content_type), *route.headers)
    if route.huge_body_bytes:
        return _Reply(route.status, headers, b"", route.huge_body_bytes, route.declare_length)
    raw = route.body if isinstance(route.body, bytes) else json.dumps(route.body).encode()
    return _Reply(route.status, headers, raw)


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


class HttpReceiver:
    """Records requests, answers by route, dedupes effects by ``Idempotency-Key``."""

    def __init__(self, default: Route | None = None) -> None:
        self._lock = threading.Lock()
        self._routes: dict[str, Route] = {}
        self._default = default or Route(status=404, body={"error": "no route for this path"})
        self._requests: list[RecordedRequest] = []
        self._effects: list[Effect] = []
        self._replies: dict[str, _Reply] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- configuration ---------------------------------------------------------------------

    def route(self, path: str, **settings: Any) -> None:
        """Answer `path` (no query) as `Route(**settings)` describes."""
        with self._lock:
            self._routes[path] = Route(**settings)

    # -- what happened -----------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def effects(self) -> list[Effect]:
        with self._lock:
            return list(self._effects)

    # -- addresses ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the receiver is not running; use it as a context manager")
        return int(self._server.server_address[1])

    @property
    def host_port(self) -> str:
        """``127.0.0.1:<port>``, the entry to put in ``HttpPolicy.allow_hosts``."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host_port}"

    def url_for(self, path: str) -> str:
        return self.url + path

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> HttpReceiver:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.receiver = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- request handling (called from server threads) ----------------------------------

    def _answer(self, request: RecordedRequest) -> tuple[Route, _Reply, bool]:
        """Record the request; apply its effect at most once per key. (route, reply, replayed)"""
        with self._lock:
            self._requests.append(request)
            route = self._routes.get(request.path, self._default)
            key = request.headers.get("idempotency-key")
            if key is not None and key in self._replies:
                return route, self._replies[key], True
            reply = _reply_for(route)
            effectful = request.method not in SAFE_METHODS and 200 <= reply.status < 300
            if effectful:
                self._effects.append(Effect(request.method, request.path, key, request.json))
                if key is not None:
                    self._replies[key] = reply
            return route, reply, False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # bursts of concurrent clients must not hit the default of 5
    receiver: HttpReceiver


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _record(self) -> RecordedRequest:
        length = min(int(self.headers.get("Content-Length") or 0), MAX_REQUEST_BODY)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        return RecordedRequest(
            method=self.command,
            target=self.path,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            json=_parse_json(body),
        )

    def _handle(self) -> None:
        route, reply, replayed = self.server.receiver._answer(self._record())
        if route.delay_s:
            time.sleep(route.delay_s)
        try:
            self._send(reply, replayed)
        except (BrokenPipeError, ConnectionResetError):
            logger.debug("client went away before the answer to %s was sent", self.path)

    def _send(self, reply: _Reply, replayed: bool) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        if replayed:
            self.send_header("Idempotent-Replayed", "true")
        size = reply.huge_body_bytes or len(reply.body)
        if reply.declare_length:
            self.send_header("Content-Length", str(size))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        if not reply.huge_body_bytes:
            self.wfile.write(reply.body)
            return
        chunk = b"x" * _CHUNK
        for start in range(0, size, _CHUNK):
            self.wfile.write(chunk[: min(_CHUNK, size - start)])

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("http receiver: " + format, *args)
