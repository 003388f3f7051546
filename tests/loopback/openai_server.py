"""A loopback server speaking the OpenAI chat-completions HTTP API, scripted per test.

Runs a `ThreadingHTTPServer` on 127.0.0.1 (port 0) in a background thread. Each request to
``POST /v1/chat/completions`` takes the next canned response from a queue:

- `Answer`: text and/or tool calls with the given usage, as JSON or as an SSE stream
  (``stream: true``) shaped like OpenAI's: a role chunk, content pieces, tool calls in
  pieces (id + name first, then argument fragments), a finish chunk, a usage chunk with
  ``choices: []`` when ``stream_options.include_usage`` is true, then ``data: [DONE]``.
  A `ToolCall` whose ``arguments`` is a string is sent verbatim (malformed tool calls).
- `HttpError`: a status with an OpenAI-style error body and optional Retry-After.
- `Stall`: waits longer than the client's timeout before answering.
- `CutStream`: streams a few events, then drops the connection mid-body (or, with
  ``clean=True``, ends the body properly but without a finish chunk or ``[DONE]``).

Every request is recorded (lower-cased headers and JSON body) in ``server.requests``. A
request that finds the queue empty gets a 500 naming the problem, so tests see it.

    with openai_server() as server:
        server.enqueue(Answer(text="hi", prompt_tokens=7, completion_tokens=1))
        ChatOpenAI(base_url=server.base_url, api_key="k", model="m").invoke("hello")
"""

from __future__ import annotations

__all__ = [
    "MALFORMED_ARGUMENTS",
    "Answer",
    "Canned",
    "CutStream",
    "HttpError",
    "OpenAILoopback",
    "RecordedRequest",
    "Stall",
    "ToolCall",
    "openai_loopback",
    "openai_server",
]

import json
import logging
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

logger = logging.getLogger(__name__)

MALFORMED_ARGUMENTS = '{"city": "Paris",, "days": }'
"""Tool-call arguments that are not JSON, not even a JSON prefix."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call; a `str` ``arguments`` is sent as-is (use it for malformed calls)."""

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def arguments_text(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments)


@dataclass(frozen=True, slots=True)
class Answer:
    """A successful completion with the usage the server reports."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    prompt_tokens: int = 11
    completion_tokens: int = 7
    cached_tokens: int = 0
    arg_fragment_chars: int = 6
    report_usage: bool = True
    """False: the server sends no usage at all (some self-hosted servers don't)."""

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"

    def usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        }


@dataclass(frozen=True, slots=True)
class HttpError:
    """An error status with an OpenAI-style error body."""

    status: int
    retry_after: str | None = None
    message: str = "loopback error"
    error_type: str = "server_error"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Stall:
    """Wait `seconds` (longer than the client's timeout), then send `then`."""

    seconds: float
    then: Answer = Answer(text="too late")


@dataclass(frozen=True, slots=True)
class CutStream:
    """Stream the first `after_events` SSE events of `answer`, then stop mid-answer."""

    answer: Answer
    after_events: int = 2
    clean: bool = False


Canned = Answer | HttpError | Stall | CutStream


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float


def _text_pieces(text: str) -> list[str]:
    """Word-sized pieces (with their leading spaces) whose concatenation is `text`."""
    return re.findall(r"\s*\S+|\s+$", text)


def _chunk(
    completion_id: str, model: str, delta: dict[str, Any], finish: str | None
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_loopback",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def _call_id(call: ToolCall, index: int) -> str:
    return call.id or f"call_loopback_{index}"


def _tool_call_deltas(answer: Answer) -> Iterator[dict[str, Any]]:
    for index, call in enumerate(answer.tool_calls):
        yield {
            "tool_calls": [
                {
                    "index": index,
                    "id": _call_id(call, index),
                    "type": "function",
                    "function": {"name": call.name, "arguments": ""},
                }
            ]
        }
        args = call.arguments_text()
        step = max(answer.arg_fragment_chars, 1)
        for start in range(0, len(args), step):
            fragment = args[start : start + step]
            yield {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}


def stream_events(answer: Answer, model: str, include_usage: bool) -> list[dict[str, Any]]:
    """The SSE payloads of one streamed answer, in order (without ``[DONE]``)."""
    completion_id = f"chatcmpl-loopback-{time.monotonic_ns()}"
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    deltas += [{"content": piece} for piece in _text_pieces(answer.text)]
    deltas += list(_tool_call_deltas(answer))
    events = [_chunk(completion_id, model, delta, None) for delta in deltas]
    events.append(_chunk(completion_id, model, {}, answer.finish_reason))
    if include_usage and answer.report_usage:
        for event in events:
            event["usage"] = None
        usage_event = _chunk(completion_id, model, {}, None)
        usage_event["choices"] = []
        usage_event["usage"] = answer.usage()
        events.append(usage_event)
    return events


def completion_body(answer: Answer, model: str) -> dict[str, Any]:
    """The JSON body of one non-streamed answer."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": answer.text or None,
        "refusal": None,
    }
    if answer.tool_calls:
        message["tool_calls"] = [
            {
                "id": _call_id(call, index),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_text()},
            }
            for index, call in enumerate(answer.tool_calls)
        ]
    return {
        "id": f"chatcmpl-loopback-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_loopback",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": answer.finish_reason,
            }
        ],
        **({"usage": answer.usage()} if answer.report_usage else {}),
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # idle keep-alive connections end on their own
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("loopback: " + format, *args)

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"_unparsed": raw.decode("utf-8", "replace")}
        self.server.owner._record(self, body)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})
            return
        canned = self.server.owner._next()
        if canned is None:
            error = HttpError(500, message="loopback server: no canned response queued")
            self._send_error(error)
            return
        self._respond(canned, body)

    def _respond(self, canned: Canned, body: dict[str, Any]) -> None:
        if isinstance(canned, HttpError):
            self._send_error(canned)
        elif isinstance(canned, Stall):
            if not self.server.owner._stopping.wait(canned.seconds):
                self._answer(canned.then, body)
        elif isinstance(canned, CutStream):
            self._stream(canned.answer, body, cut=canned)
        else:
            self._answer(canned, body)

    def _answer(self, answer: Answer, body: dict[str, Any]) -> None:
        if body.get("stream"):
            self._stream(answer, body, cut=None)
        else:
            self._send_json(200, completion_body(answer, str(body.get("model", ""))))

    def _send_error(self, error: HttpError) -> None:
        headers = list(error.headers)
        if error.retry_after is not None:
            headers.append(("Retry-After", error.retry_after))
        payload = {
            "error": {
                "message": error.message,
                "type": error.error_type,
                "param": None,
                "code": None,
            }
        }
        self._send_json(error.status, payload, headers)

    def _send_json(
        self, status: int, payload: dict[str, Any], headers: list[tuple[str, str]] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            for name, value in headers or []:
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up (timeout)
            self.close_connection = True

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _stream(self, answer: Answer, body: dict[str, Any], cut: CutStream | None) -> None:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = stream_events(answer, str(body.get("model", "")), include_usage)
        if cut is not None:
            events = events[: cut.after_events]
        try:
            self._write_stream(events, cut)
        except OSError:  # the client gave up (timeout)
            self.close_connection = True

    def _write_stream(self, events: list[dict[str, Any]], cut: CutStream | None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in events:
            self._write_chunk(f"data: {json.dumps(event)}\n\n".encode())
        if cut is not None and not cut.clean:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if cut is None:
            self._write_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: OpenAILoopback


class OpenAILoopback:
    """The running server: its `base_url`, the canned-response queue, the recorded requests."""

    def __init__(self) -> None:
        self._queue: deque[Canned] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.requests: list[RecordedRequest] = []
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def enqueue(self, *responses: Canned) -> None:
        """Append canned responses; each request consumes one, in order."""
        with self._lock:
            self._queue.extend(responses)

    @property
    def pending(self) -> int:
        """How many canned responses no request has consumed yet."""
        with self._lock:
            return len(self._queue)

    def _next(self) -> Canned | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def _record(self, handler: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        headers = {name.lower(): value for name, value in handler.headers.items()}
        request = RecordedRequest(handler.command, handler.path, headers, body, time.monotonic())
        with self._lock:
            self.requests.append(request)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@contextmanager
def openai_server() -> Iterator[OpenAILoopback]:
    """Run a loopback OpenAI-compatible server for the duration of the block."""
    server = OpenAILoopback()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def openai_loopback() -> Iterator[OpenAILoopback]:
    """Pytest fixture around `openai_server()` (import it into a test module or conftest)."""
    with openai_server() as server:
        yield server
