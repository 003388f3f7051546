"""One run: its status and output, Cancel and Retry, the live activity (tokens as they
stream, steps as they start and end, tool calls, approvals) pushed while the page is open,
and the run's timeline (see `run_steps`). A finished run shows the same page from history.
"""

from __future__ import annotations

__all__ = ["register"]

from dataclasses import dataclass
from typing import TYPE_CHECKING

from nicegui import ui
from starlette.requests import Request
from starlette.responses import RedirectResponse

from components.errors import StudioError
from graphs.events import RunEventView
from graphs.forks import RETRYABLE_STATUSES, ForkInfo, fork_of, retry_run
from graphs.identity import Actor
from graphs.library import VersionView
from graphs.runs import FINAL_STATUSES, RunView
from studio.context import Studio
from studio.pages.frame import Page, frame, signed_in
from studio.pages.run_live import LiveFeed
from studio.pages.run_steps import PathCanvas, TimelineView, json_block

if TYPE_CHECKING:
    from studio.app import WebStudio

MAX_LINES = 300
STATUS_COLORS = {
    "succeeded": "positive",
    "failed": "negative",
    "budget_exceeded": "negative",
    "cancelled": "grey",
    "waiting_approval": "warning",
}


def register(web: WebStudio) -> None:
    @ui.page("/runs/{run_id}")
    async def run_page(request: Request, run_id: str) -> RedirectResponse | None:
        page = signed_in(web, request)
        if isinstance(page, RedirectResponse):
            return page
        frame(page, "Run")
        found = await page.act(lambda actor: _load(page.studio, actor, run_id))
        if found is None:
            ui.label("This run does not exist in your workspace.").classes("p-8 text-lg")
            ui.link("Back to the runs", "/runs").classes("px-8")
            return None
        await RunPage(page, found).build()
        return None


def _load(studio: Studio, actor: Actor, run_id: str) -> Loaded:
    manager = studio.manager
    run = manager.get(actor, run_id)  # a foreign run is not found
    version = manager.library.version(actor, run.version_id)
    try:
        starter = studio.accounts.get_user(run.started_by).email
    except StudioError:  # a headless user: the id is all there is
        starter = run.started_by
    return Loaded(run, fork_of(manager, actor, run_id), version, starter)


@dataclass(frozen=True, slots=True)
class Loaded:
    run: RunView
    origin: ForkInfo | None
    version: VersionView
    starter: str


class RunPage:
    def __init__(self, page: Page, loaded: Loaded) -> None:
        self.page = page
        self.run = loaded.run
        self.origin = loaded.origin
        self.version = loaded.version
        self.starter = loaded.starter
        self.tokens: dict[str, ui.label] = {}
        self.stale = False

    async def build(self) -> None:
        run = self.run
        with ui.column().classes("w-full p-4 gap-3"):
            self._header(run)
            self.actions = ui.row().classes("gap-2")
            self.summary = ui.column().classes("w-full gap-1")
            with ui.card().classes("w-full"):
                ui.label("Live activity").classes("font-semibold")
                self.streams = ui.column().classes("w-full gap-1").mark("tokens")
                self.log = ui.column().classes("w-full gap-0 max-h-80 overflow-auto").mark("log")
            self.graph = PathCanvas(self.page, self.version.document.model_dump(mode="json"))
            ui.label("Timeline").classes("text-lg font-semibold")
            self.timeline = TimelineView(self.page, run.run_id)
        self._show(run)
        await self._refresh_timeline()
        self.feed = LiveFeed(self.page, run.run_id, self.on_events, self.on_end)
        ui.timer(0.5, self._refresh_if_stale)

    def _header(self, run: RunView) -> None:
        with ui.row().classes("w-full items-center gap-3"):
            ui.label(f"Run {run.run_id[:8]}").classes("text-2xl font-semibold font-mono")
            self.badge = ui.badge(run.status).mark("status")
            ui.link(self.version.document.name, f"/graphs/{run.graph_id}").mark("graph-link")
            ui.label(f"v{self.version.number}").classes("text-sm text-gray-600")
            ui.label(f"started by {self.starter} · {run.created_at:%Y-%m-%d %H:%M:%S}").classes(
                "text-sm text-gray-600"
            )
        origin = self.origin
        if origin is not None:
            kind = "retry of" if origin.kind == "retry" else "forked from"
            edited = ", ".join(sorted(origin.edits))
            with ui.row().classes("items-center gap-1 text-sm"):
                ui.label(
                    f"{kind} run {origin.origin_run_id[:8]} at step {origin.step}"
                    + (f", state edited: {edited}" if edited else "")
                ).mark("origin")
                ui.link("(open)", f"/runs/{origin.origin_run_id}")

    def _show(self, run: RunView) -> None:
        """Status, actions, error and output for the run as it is now."""
        self.run = run
        self.badge.text = run.status
        self.badge.props(f"color={STATUS_COLORS.get(run.status, 'primary')}")
        self.actions.clear()
        with self.actions:
            if run.status not in FINAL_STATUSES and self.page.allowed("run:cancel"):
                ui.button("Cancel", icon="stop", on_click=self.cancel).props(
                    "outline no-caps color=negative"
                ).mark("cancel")
            if run.status in RETRYABLE_STATUSES and self.page.allowed("run:start"):
                ui.button("Retry from the failed step", icon="replay", on_click=self.retry).props(
                    "no-caps"
                ).mark("retry")
        self.summary.clear()
        with self.summary:
            if run.error:
                ui.label(f"Error: {run.error}").classes("text-red-700").mark("run-error")
            if run.output is not None:
                ui.label("Output").classes("font-semibold")
                json_block(run.output).mark("run-output")

    # --- live events ------------------------------------------------------------------------
    def on_events(self, events: list[RunEventView]) -> None:
        with self.log:
            for event in events:
                if event.kind == "token":
                    self._token(event)
                    continue
                ui.label(_line(event)).classes("text-xs font-mono").mark("event", event.kind)
                if event.kind in ("node_finished", "run_status", "approval_requested"):
                    self.stale = True
                if event.kind == "run_status":
                    self.badge.text = str(event.data.get("status", ""))
        overflow = len(self.log.default_slot.children) - MAX_LINES
        for child in list(self.log.default_slot.children)[: max(0, overflow)]:
            self.log.remove(child)

    def _token(self, event: RunEventView) -> None:
        node = event.node_id or "model"
        label = self.tokens.get(node)
        if label is None:
            with self.streams, ui.row().classes("w-full gap-2 items-start"):
                ui.label(f"{node}:").classes("text-xs font-semibold")
                label = ui.label("").classes("text-sm whitespace-pre-wrap grow").mark("stream")
            self.tokens[node] = label
        label.text = (label.text + str(event.data.get("text", "")))[-20_000:]

    def on_end(self, reason: str) -> None:
        self.stale = True
        if reason.startswith("stopped"):
            ui.label(reason).classes("text-xs text-gray-500")

    async def _refresh_if_stale(self) -> None:
        if not self.stale:
            return
        self.stale = False
        manager = self.page.studio.manager
        run = await self.page.act(lambda actor: manager.get(actor, self.run.run_id))
        if self.badge.is_deleted:  # the tab closed meanwhile
            return
        if run is not None:
            self._show(run)
        await self._refresh_timeline()

    async def _refresh_timeline(self) -> None:
        timeline = await self.timeline.refresh()
        if timeline is not None:
            self.graph.mark(timeline)

    # --- actions ------------------------------------------------------------------------
    async def cancel(self) -> None:
        manager = self.page.studio.manager
        run = await self.page.act(
            lambda actor: manager.cancel(actor, self.run.run_id), success="Run cancelled"
        )
        if run is not None:
            self._show(run)

    async def retry(self) -> None:
        manager = self.page.studio.manager
        new_run = await self.page.act(
            lambda actor: retry_run(manager, actor, self.run.run_id, stream_tokens=True)
        )
        if new_run is not None:
            ui.navigate.to(f"/runs/{new_run}")


def _line(event: RunEventView) -> str:
    """One line of the activity log (plain text)."""
    data = event.data
    where = f" {event.node_id}" if event.node_id else ""
    if event.kind == "node_finished":
        parts = [f"{data.get('ms', '?')} ms"]
        if data.get("input_tokens") is not None or data.get("output_tokens") is not None:
            parts.append(f"{data.get('input_tokens')}→{data.get('output_tokens')} tokens")
        if data.get("tool_calls"):
            parts.append("calls " + ", ".join(map(str, data["tool_calls"])))
        if data.get("error"):
            parts.append(f"error: {data['error']}")
        if data.get("paused"):
            parts.append("paused")
        detail = " · ".join(parts)
    elif event.kind == "run_status":
        detail = f" {data.get('status', '')}" + (f": {data['error']}" if data.get("error") else "")
    elif event.kind.startswith("approval_"):
        detail = " " + " ".join(f"{k}={v}" for k, v in sorted(data.items()))
    else:
        detail = ""
    return f"{event.at:%H:%M:%S} #{event.seq} {event.kind}{where} {detail}".rstrip()
