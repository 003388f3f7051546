"""`GET /runs/{run_id}/events`: a run's events as Server-Sent Events.

Each event is sent as ``id: <seq>``, ``event: <kind>``, ``data: <json>``; a client resumes
with the ``Last-Event-ID`` header (or ``?after=``) and gets every later event exactly once.
The stream stays open while the run waits for a person and ends after the run's final
status event (and anything published before its worker let go). Idle streams get a comment
line as a heartbeat.

`RunManager.iter_events` blocks, so each stream has its own `EventPump` thread
(`studio.api.pump`); the event loop only forwards bytes. However the response ends — the
run is over, the client went away, the server stops — it stops its pump, which leaves within
`window_s` and drops its subscriptions.
"""

from __future__ import annotations

__all__ = ["EventStream", "SseOptions", "StreamSlots", "router"]

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from studio.api.deps import ActorDep, StudioDep
from studio.api.errors import Unavailable
from studio.api.models import problems
from studio.api.pump import EventPump, FrameCache, SseOptions
from studio.api.runs import RunId

router = APIRouter(tags=["runs"])


class StreamSlots:
    """Counts open streams (tests read `active`)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.active >= self.limit:
                return False
            self.active += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self.active -= 1


class EventStream(StreamingResponse):
    """Starts its pump when the response starts; stops it however the response ends."""

    def __init__(self, pump: EventPump, slots: StreamSlots, opts: SseOptions) -> None:
        self.pump, self.slots, self.opts = pump, slots, opts
        super().__init__(
            self._frames(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            self.pump.start(asyncio.get_running_loop())
            await super().__call__(scope, receive, send)
        finally:
            self.pump.stop()
            self.slots.give_back()

    async def _frames(self) -> AsyncIterator[bytes]:
        yield f"retry: {self.opts.retry_ms}\n\n".encode()
        while True:
            items = await self.pump.frames.take(self.opts.heartbeat_s)
            if not items:
                yield b": keepalive\n\n"
                continue
            chunk = b"".join(item for item in items if item is not None)
            if chunk:
                yield chunk
            if None in items:
                return


def _start_seq(last_event_id: str, after: int) -> int:
    if last_event_id:
        return int(last_event_id)  # the header's pattern admits digits only
    return after


_SSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "`text/event-stream`: `id: <seq>`, `event: <kind>` (run_status, "
        "node_started, node_finished, token, approval_requested, approval_decided, "
        "approval_warned, approval_escalated, approval_overdue), "
        "`data: <json>`; `: keepalive` comments while idle; `event: error` when access ends.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
    **problems(401, 403, 404, 422, 503),
}


@router.get(
    "/runs/{run_id}/events",
    response_class=StreamingResponse,
    responses=_SSE_DOC,
    summary="Stream a run's events (SSE)",
)
async def run_events(
    run_id: RunId,
    request: Request,
    actor: ActorDep,
    studio: StudioDep,
    after: Annotated[int, Query(ge=0, le=10**15, description="Resume after this seq.")] = 0,
    last_event_id: Annotated[
        str,
        Header(
            alias="Last-Event-ID",
            pattern=r"^[0-9]{1,15}$",
            description="The `id` of the last event received: resume after it.",
        ),
    ] = "",
) -> StreamingResponse:
    """Every event after `Last-Event-ID` (or `after`), then live ones, until the run ends."""
    start = _start_seq(last_event_id, after)
    await run_in_threadpool(studio.manager.get, actor, run_id)  # 404/403 before the stream
    opts: SseOptions = request.app.state.sse_options
    slots: StreamSlots = request.app.state.sse_slots
    if not slots.take():
        raise Unavailable("too many open event streams; retry in a moment or poll the run")
    token: str = request.state.api_token
    cache: FrameCache = request.app.state.sse_frames
    pump = EventPump(studio, actor, token, run_id, start, opts, cache)
    return EventStream(pump, slots, opts)
