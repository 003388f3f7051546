"""The thread behind one event stream: `RunManager.iter_events` blocks, so each stream's
`EventPump` runs it in its own thread and hands encoded frames to the event loop through a
`Mailbox` (one loop wake-up per burst). `FrameCache` encodes each event once for all clients.

The pump stays through waiting states (a run paused for a person resumes streaming), ends
after the final status event and whatever the run's worker published before letting go, and
re-checks the token and the actor's access every `recheck_s`. `stop()` makes it leave within
`window_s`, dropping its subscriptions.
"""

from __future__ import annotations

__all__ = ["EventPump", "FrameCache", "Mailbox", "SseOptions", "frame"]

import asyncio
import json
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from components.errors import StudioError
from graphs.events import RunEventView
from graphs.identity import Actor
from graphs.runs import FINAL_STATUSES
from studio.api.deps import reverify
from studio.api.errors import status_for
from studio.context import Studio

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SseOptions:
    heartbeat_s: float = 15.0  # a comment line when nothing was sent for this long
    window_s: float = 2.0  # longest a pump stays inside one iter_events call
    recheck_s: float = 5.0  # token and access re-checked at least this often
    settle_s: float = 2.0  # how long a final status waits for its event
    retry_ms: int = 3000  # the reconnection delay clients are told
    max_streams: int = 500  # open streams per API; more get a 503


class FrameCache:
    """Each event is encoded once, however many clients stream it (bounded, FIFO)."""

    def __init__(self, size: int = 4096) -> None:
        self._frames: dict[tuple[str, int], bytes] = {}
        self._size = size
        self._lock = threading.Lock()

    def get(self, event: RunEventView) -> bytes:
        key = (event.run_id, event.seq)
        cached = self._frames.get(key)
        if cached is None:
            cached = frame(event)
            with self._lock:
                self._frames[key] = cached
                if len(self._frames) > self._size:
                    del self._frames[next(iter(self._frames))]
        return cached


def frame(event: RunEventView) -> bytes:
    body = {
        "run_id": event.run_id,
        "seq": event.seq,
        "kind": event.kind,
        "node_id": event.node_id,
        "at": (event.at if event.at.tzinfo else event.at.replace(tzinfo=UTC)).isoformat(),
        "data": event.data,
    }
    data = json.dumps(body, default=str)  # JSON text has no raw line breaks
    return f"id: {event.seq}\nevent: {event.kind}\ndata: {data}\n\n".encode()


class Mailbox:
    """Frames from a pump thread to the event loop: the loop is woken once per burst (when
    the box turns non-empty), not once per frame, and takes everything waiting at once."""

    def __init__(self) -> None:
        self._items: deque[bytes | None] = deque()
        self._lock = threading.Lock()
        self._ready = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def put(self, item: bytes | None) -> bool:
        """False when the loop is gone (nobody will read)."""
        assert self._loop is not None
        with self._lock:
            wake = not self._items
            self._items.append(item)
        if wake:
            try:
                self._loop.call_soon_threadsafe(self._ready.set)
            except RuntimeError:
                return False
        return True

    async def take(self, timeout_s: float) -> list[bytes | None]:
        """Everything waiting (an empty list when `timeout_s` passed with nothing)."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        except TimeoutError:
            return []
        with self._lock:
            items = list(self._items)
            self._items.clear()
            self._ready.clear()
        return items


def _is_final(event: RunEventView) -> bool:
    return event.kind == "run_status" and event.data.get("status") in FINAL_STATUSES


class EventPump:
    """One stream's thread: runs `iter_events` and hands frames to the event loop."""

    def __init__(
        self,
        studio: Studio,
        actor: Actor,
        token: str,
        run_id: str,
        after: int,
        opts: SseOptions,
        cache: FrameCache,
    ) -> None:
        self.studio, self.actor, self.token, self.cache = studio, actor, token, cache
        self.run_id, self.last, self.opts = run_id, after, opts
        self.frames = Mailbox()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sse-{run_id[:8]}", daemon=True)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.frames.bind(loop)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def _put(self, item: bytes | None) -> None:
        if not self.frames.put(item):  # the loop is gone: nobody listens any more
            self._stop.set()

    def _send(self, events: Iterable[RunEventView]) -> bool:
        """Send events after `last`; True when the run's final status was among them."""
        it = iter(events)
        try:
            for event in it:
                if event.seq <= self.last:
                    continue
                self._put(self.cache.get(event))
                self.last = event.seq
                if _is_final(event):
                    return True
                if self._stop.is_set():
                    return False
            return False
        finally:  # closing the generator drops iter_events' subscription at once
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def _run(self) -> None:
        try:
            self._pump()
        except StudioError as exc:  # access ended mid-stream: say why, then close
            status, title = status_for(exc)
            problem = {"title": title, "status": status, "detail": str(exc)}
            redacted = self.studio.redactor.redact(json.dumps(problem))
            self._put(f"event: error\ndata: {redacted}\n\n".encode())
        except Exception:
            log.exception("event stream of run %s failed", self.run_id)
            self._put(b'event: error\ndata: {"title": "Internal error", "status": 500}\n\n')
        finally:
            self._put(None)

    def _pump(self) -> None:
        m = self.studio.manager
        wake = m.events.subscribe(self.run_id)  # wakes the pump while the run is settled
        try:
            final_since: float | None = None
            checked = -math.inf
            while not self._stop.is_set():
                window = self.opts.window_s if final_since is None else 0.0
                events = m.iter_events(self.actor, self.run_id, after=self.last, timeout_s=window)
                if self._send(events):
                    self._settle()
                    return
                now = time.monotonic()
                if final_since is not None:  # final in the database, its event not seen
                    if now - final_since >= self.opts.settle_s:
                        return  # sent before this stream began, or lost in a crash
                    self._wait_for_news(wake, final_since + self.opts.settle_s - now)
                    continue
                if now - checked >= self.opts.recheck_s:
                    checked = now
                    final_since = self._final_since(now)
                    if final_since is not None:
                        continue
                self._wait_for_news(wake, self.opts.recheck_s)
        finally:
            m.events.unsubscribe(self.run_id, wake)

    def _final_since(self, now: float) -> float | None:
        """Re-check the token and access; when the run is final, since when (monotonic)."""
        self.actor = reverify(self.studio, self.token)
        view = self.studio.manager.get(self.actor, self.run_id)
        if view.status not in FINAL_STATUSES:
            return None
        finished = view.finished_at or datetime.now(UTC)
        if finished.tzinfo is None:
            finished = finished.replace(tzinfo=UTC)
        age = max(0.0, (datetime.now(UTC) - finished).total_seconds())
        return now - age

    def _settle(self) -> None:
        """After the final status: wait until the run's worker let go, send what it left."""
        m = self.studio.manager
        m.wait(self.actor, self.run_id, timeout_s=self.opts.settle_s)
        self._send(m.iter_events(self.actor, self.run_id, after=self.last, timeout_s=0.0))

    def _wait_for_news(self, wake: queue.Queue[RunEventView], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                event = wake.get(timeout=0.2)
            except queue.Empty:
                continue
            if event.seq > self.last:
                return
