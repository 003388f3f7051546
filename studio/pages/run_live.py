"""A run page's live feed: a background thread follows `RunManager.iter_events` and a
`ui.timer` drains what it found into the page — the event loop never waits for the run.

The thread acts as the session's live identity (a sign-out or a removed role stops the feed
at its next turn) and ends when the run is final or the browser tab is gone. It only reads:
closing the tab never touches the run.
"""

from __future__ import annotations

__all__ = ["LiveFeed"]

import logging
import queue
import threading
from collections.abc import Callable

from nicegui import context, ui

from components.errors import StudioError
from graphs.events import RunEventView
from graphs.runs import FINAL_STATUSES
from studio.pages.frame import Page

log = logging.getLogger(__name__)

FOLLOW_S = 2.0  # one `iter_events` call at most this long, then the identity is checked again
IDLE_S = 1.0  # pause between calls while the run waits for a person
BATCH = 200  # events handed to the page per timer tick


class LiveFeed:
    def __init__(
        self,
        page: Page,
        run_id: str,
        on_events: Callable[[list[RunEventView]], None],
        on_end: Callable[[str], None],
    ) -> None:
        self._page = page
        self._run_id = run_id
        self._on_events = on_events
        self._on_end = on_end
        self._found: queue.Queue[RunEventView | str] = queue.Queue()
        self._stop = threading.Event()
        self.after = 0
        context.client.on_delete(self._stop.set)
        self._timer = ui.timer(0.1, self._drain)
        self._thread = threading.Thread(target=self._follow, name="run-page-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    # --- the background thread -------------------------------------------------------------
    def _follow(self) -> None:
        try:
            while not self._stop.is_set():
                status = self._follow_once()
                if status in FINAL_STATUSES:
                    self._found.put(status)
                    return
                self._stop.wait(IDLE_S if status == "waiting_approval" else 0.05)
        except StudioError as exc:  # signed out, role removed, run gone: the feed ends
            self._found.put(f"stopped: {exc}")
        except Exception:
            log.exception("run %s: the live feed failed", self._run_id)
            self._found.put("stopped: the live view failed; reload the page")

    def _follow_once(self) -> str:
        manager = self._page.studio.manager
        actor = self._page.live_actor()
        events = manager.iter_events(actor, self._run_id, after=self.after, timeout_s=FOLLOW_S)
        try:
            for event in events:
                self._found.put(event)
                self.after = event.seq
                if self._stop.is_set():
                    break
        finally:
            close = getattr(events, "close", None)  # a generator: closing unsubscribes at once
            if close is not None:
                close()
        return manager.get(actor, self._run_id).status

    # --- the page side (event loop) ----------------------------------------------------------
    def _drain(self) -> None:
        batch: list[RunEventView] = []
        end: str | None = None
        while len(batch) < BATCH:
            try:
                item = self._found.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, str):
                end = item
                break
            batch.append(item)
        if batch:
            self._on_events(batch)
        if end is not None:
            self._timer.cancel()
            self._on_end(end)
