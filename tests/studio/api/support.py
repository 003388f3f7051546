"""Test helpers for the API: a real uvicorn server on loopback, and an SSE reader.

Shared by the API tests and `tests/bench/bench_sse.py`.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp


def mounted(api: ASGIApp) -> Starlette:
    """The API under `/api`, as the web shell mounts it."""
    return Starlette(routes=[Mount("/api", app=api)])


class LiveServer:
    """uvicorn serving `app` on a free loopback port, in a thread."""

    def __init__(self, app: ASGIApp) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2, backlog=512
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


@dataclass(frozen=True, slots=True)
class SseEvent:
    id: str | None
    event: str
    data: str

    @property
    def json(self) -> Any:
        return json.loads(self.data)

    @property
    def seq(self) -> int:
        assert self.id is not None
        return int(self.id)


class SseParser:
    """Feed lines (without their line break); `feed` returns an event or a comment when one
    is complete."""

    def __init__(self) -> None:
        self._id: str | None = None
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> SseEvent | str | None:
        if line == "":
            if not self._data:
                self._event = ""
                return None
            event = SseEvent(self._id, self._event or "message", "\n".join(self._data))
            self._id, self._event, self._data = None, "", []
            return event
        if line.startswith(":"):
            return line[1:].strip()
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            self._id = value
        elif name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


def sse_items(lines: Iterable[str]) -> Iterator[SseEvent | str]:
    """Events and comments (as `str`) of a text/event-stream."""
    parser = SseParser()
    for line in lines:
        item = parser.feed(line)
        if item is not None:
            yield item


async def asse_items(lines: AsyncIterator[str]) -> AsyncIterator[SseEvent | str]:
    parser = SseParser()
    async for line in lines:
        item = parser.feed(line)
        if item is not None:
            yield item


def gated_line_document(nodes: int) -> dict[str, Any]:
    """A human approval gate, then `nodes` scripted model calls in a line: a run waits at
    the gate until someone approves, so listeners can connect before its events flow."""
    ids = [f"n{i}" for i in range(1, nodes + 1)]
    llm = [
        {
            "id": node_id,
            "type": "llm",
            "config": {
                "provider": "scripted",
                "prompt": f"Step {i}: say something short.",
                "provider_config": {
                    "model": "scripted-1",
                    "script": [{"text": f"Step {i} is done and the next one may start."}],
                },
            },
        }
        for i, node_id in enumerate(ids, start=1)
    ]
    gate = {"id": "gate", "type": "human_approval", "config": {"title": "Start the line?"}}
    chain = ["gate", *ids, "__end__"]
    return {
        "schema_version": 1,
        "name": f"Gated line of {nodes}",
        "entry": "gate",
        "nodes": [gate, *llm],
        "edges": [{"source": a, "target": b} for a, b in itertools.pairwise(chain)],
    }
