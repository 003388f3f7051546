"""The run console's list: the workspace's runs, filtered by graph, status, who started
them and when; each links to its page (`run_detail`)."""

from __future__ import annotations

__all__ = ["STATUSES", "TIME_RANGES", "register"]

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from nicegui import ui
from starlette.requests import Request
from starlette.responses import RedirectResponse

from components.errors import StudioError
from graphs.run_search import RunFilter, run_starters, search_runs
from graphs.runs import RunView
from studio.pages.frame import NAV, Page, frame, signed_in

if TYPE_CHECKING:
    from studio.app import WebStudio

STATUSES = (
    "queued",
    "running",
    "waiting_approval",
    "succeeded",
    "failed",
    "cancelled",
    "budget_exceeded",
)
TIME_RANGES = {
    "": "any time",
    "1h": "last hour",
    "24h": "last 24 hours",
    "7d": "last 7 days",
    "30d": "last 30 days",
}
_SPANS = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7)}
_SPANS["30d"] = timedelta(days=30)


NAV_ENTRY = ("Runs", "/runs", "run:read")


def register(web: WebStudio) -> None:
    if NAV_ENTRY not in NAV:
        NAV.append(NAV_ENTRY)

    @ui.page("/runs")
    async def runs_page(
        request: Request, graph: str = "", status: str = "", by: str = "", since: str = ""
    ) -> RedirectResponse | None:
        page = signed_in(web, request)
        if isinstance(page, RedirectResponse):
            return page
        frame(page, "Runs")
        view = RunList(page, {"graph": graph, "status": status, "by": by, "since": since})
        await view.build()
        return None


class RunList:
    def __init__(self, page: Page, initial: dict[str, str]) -> None:
        self.page = page
        self.filters = dict(initial)
        self.graph_names: dict[str, str] = {}
        self.people: dict[str, str] = {}
        self.asked = 0

    async def build(self) -> None:
        manager = self.page.studio.manager
        found = await self.page.act(
            lambda actor: (
                {g.graph_id: g.name for g in manager.library.list(actor)},
                self._people(run_starters(manager, actor)),
            )
        )
        if found is None:
            return
        self.graph_names, self.people = found
        with ui.row().classes("w-full items-center gap-2 p-4"):
            ui.label("Runs").classes("text-2xl font-semibold")
            ui.space()
            self._select("graph", {"": "all graphs", **self.graph_names}, "w-56")
            self._select("status", {"": "any status", **{s: s for s in STATUSES}}, "w-44")
            self._select("by", {"": "anyone", **self.people}, "w-56")
            self._select("since", TIME_RANGES, "w-40")
        self.table = ui.column().classes("w-full px-4 gap-1").mark("runs")
        await self.refresh()

    def _people(self, user_ids: list[str]) -> dict[str, str]:
        """Who started runs, by e-mail where the account is known (else the id)."""
        accounts = self.page.studio.accounts
        people = {}
        for user_id in user_ids:
            try:
                people[user_id] = accounts.get_user(user_id).email
            except StudioError:  # a headless or removed user: show the id
                people[user_id] = user_id
        return people

    def _select(self, key: str, options: dict[str, str], width: str) -> None:
        if self.filters.get(key, "") not in options:
            self.filters[key] = ""

        async def changed(event: Any) -> None:
            self.filters[key] = str(event.value or "")
            await self.refresh()

        ui.select(options, value=self.filters[key], on_change=changed).props(
            "dense outlined options-dense"
        ).classes(width).mark(f"filter-{key}")

    def _where(self) -> RunFilter:
        span = _SPANS.get(self.filters.get("since", ""))
        return RunFilter(
            graph_id=self.filters.get("graph") or None,
            status=self.filters.get("status") or None,
            started_by=self.filters.get("by") or None,
            since=datetime.now(UTC) - span if span else None,
            limit=200,
        )

    async def refresh(self) -> None:
        manager = self.page.studio.manager
        where = self._where()
        self.asked += 1
        asked = self.asked
        runs = await self.page.act(lambda actor: search_runs(manager, actor, where))
        if asked != self.asked:  # the filters changed while this query ran: a newer one shows
            return
        self.table.clear()
        with self.table:
            if not runs:
                ui.label("No run matches these filters.").classes("text-gray-500 p-4")
                return
            for run in runs:
                self._row(run)

    def _row(self, run: RunView) -> None:
        card = ui.card().classes("w-full py-1").mark("run-row", f"run-{run.run_id}")
        with card, ui.row().classes("w-full items-center gap-3"):
            ui.link(run.run_id[:8], f"/runs/{run.run_id}").classes("font-mono")
            ui.badge(run.status).props("outline")
            ui.label(self.graph_names.get(run.graph_id, "(deleted graph)")).classes("font-medium")
            ui.label(self.people.get(run.started_by, run.started_by)).classes(
                "text-sm text-gray-600"
            )
            ui.label(f"{run.created_at:%Y-%m-%d %H:%M:%S}").classes("text-sm text-gray-600")
            if run.finished_at is not None:
                seconds = (run.finished_at - run.created_at).total_seconds()
                ui.label(f"{seconds:.1f} s").classes("text-sm text-gray-600")
            if run.error:
                ui.label(run.error[:160]).classes("text-sm text-red-700 truncate max-w-96")
