"""The dashboards (`/analytics`): cost and tokens, latency, errors, the response cache,
budget burn-down and approvals of the workspace, as plotly charts with a table of their
rows and CSV / Parquet downloads. Clicking a point lists the runs behind it.

The nav link shows to roles with ``analytics:read``; every answer is authorized again on
the server (`studio.pages.analytics_data`), so a person without it — or from another
workspace — gets nothing but "not available". Controls change what the page asks for
(`Ask`); each change refreshes the DuckDB store and asks again, off the event loop, and a
newer answer wins over an older one still on its way.
"""

from __future__ import annotations

__all__ = ["NAV_ENTRY", "DashboardView", "register"]

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from nicegui import ui
from starlette.requests import Request
from starlette.responses import RedirectResponse

from analytics import export as exports
from analytics.rows import RunRef
from analytics.store import AnalyticsUnavailable
from components.errors import Forbidden, NotFound
from graphs.identity import Actor
from studio.pages import analytics_data as data
from studio.pages.admin_access import add_nav, no_access
from studio.pages.analytics_data import CHARTS, PRESETS, Ask, Choices, Shown, usd
from studio.pages.frame import Page, frame, signed_in

if TYPE_CHECKING:
    from studio.app import WebStudio

NAV_ENTRY = ("Dashboards", "/analytics", "analytics:read")
CLICK_JS = (
    "(e) => emit({customdata: e && e.points && e.points.length ? e.points[0].customdata : null})"
)
MEDIA = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}
DIMS = {"graph_id": "all graphs", "user_id": "everyone", "model": "all models",
        "node_id": "all nodes"}  # fmt: skip
EMPTY = (
    "No usage recorded in this workspace yet. Run a graph (open Graphs and press Run): its "
    "model calls, tool calls and approvals show up here within seconds."
)


def register(web: WebStudio) -> None:
    add_nav(*NAV_ENTRY)

    @ui.page("/analytics")
    async def analytics_page(request: Request) -> RedirectResponse | None:
        page = signed_in(web, request)
        if isinstance(page, RedirectResponse):
            return page
        frame(page, "Dashboards")
        await DashboardView(page, web).build()
        return None


@dataclass(frozen=True, slots=True)
class Refused:
    """The service refused the dashboards to this person (the reason is safe to show)."""

    reason: str


def _refused(refused: Refused | None) -> None:
    """Show nothing of the workspace's data: the reason, and "not available"."""
    if refused is not None:
        ui.notify(refused.reason, type="negative", multi_line=True)
    no_access()


class DashboardView:
    def __init__(self, page: Page, web: WebStudio) -> None:
        self.page = page
        self.web = web
        self.ask = Ask()
        self.shown: Shown | None = None
        self.choices = Choices({}, {}, {}, {})
        self.asked = 0  # a newer answer wins over an older one still on its way

    async def build(self) -> None:
        try:
            found = await self.page.act_raising(self._load(self.ask), AnalyticsUnavailable)
        except AnalyticsUnavailable as exc:
            ui.label(f"The dashboards are unavailable: {exc}").classes("p-8").mark("no-store")
            return
        if not isinstance(found, Shown):
            _refused(found)
            return
        self.root = ui.column().classes("w-full gap-2 p-4")
        with self.root:
            self._controls()
            self.note = ui.label("").classes("text-sm text-gray-600").mark("analytics-note")
            self.empty = ui.column().classes("p-4 gap-1").mark("analytics-empty")
            with self.empty:
                ui.label(EMPTY).classes("text-lg")
                ui.link("Go to Graphs", "/graphs")
            self.main = ui.column().classes("w-full gap-2")
            with self.main:
                self._chart_area()
        self._show(found, self.ask)

    def _load(self, ask: Ask) -> Callable[[Actor], Shown | Refused]:
        web, studio = self.web, self.page.studio

        def load(actor: Actor) -> Shown | Refused:
            try:
                return data.load(web.analytics, studio, actor, ask)
            except (Forbidden, NotFound) as exc:  # no (longer) analytics:read, or no member
                return Refused(str(exc))

        return load

    async def reload(self) -> None:
        self.asked += 1
        mine, ask = self.asked, self.ask
        found = await self.page.act(self._load(ask))
        if mine != self.asked:
            return
        if isinstance(found, Refused):  # e.g. a role revoked while the page is open
            self.shown = None
            self.root.clear()
            with self.root:
                _refused(found)
        elif found is not None:
            self._show(found, ask)

    # --- controls --------------------------------------------------------------------
    def _controls(self) -> None:
        with ui.row().classes("w-full items-end gap-2"):
            ui.label("Dashboards").classes("text-2xl font-semibold")
            ui.space()
            ui.select(PRESETS, value=self.ask.preset, label="Time range",
                      on_change=self._preset).props("dense outlined options-dense").classes(
                "w-40").mark("range")  # fmt: skip
            self.custom = ui.row().classes("items-end gap-2")
            with self.custom:
                self.since = _date_input("From", "range-since")
                self.until = _date_input("To", "range-until")
                ui.button("Apply", on_click=self._apply_dates).props("no-caps dense").mark(
                    "range-apply"
                )
            self.custom.set_visibility(False)
            self.dims = {name: self._dim_select(name, label) for name, label in DIMS.items()}
            ui.button(icon="refresh", on_click=self.reload).props("flat dense").mark(
                "refresh"
            ).tooltip("Load new data")

    def _dim_select(self, name: str, everything: str) -> ui.select:
        async def changed(event: Any) -> None:
            value = str(event.value or "") or None
            if value != getattr(self.ask, name):
                change: dict[str, Any] = {name: value}
                self.ask = replace(self.ask, **change)
                await self.reload()

        select = ui.select({"": everything}, value="", on_change=changed)
        return select.props("dense outlined options-dense").classes("w-44").mark(f"filter-{name}")

    async def _preset(self, event: Any) -> None:
        preset = str(event.value)
        if preset == self.ask.preset:
            return
        self.custom.set_visibility(preset == "custom")
        if preset == "custom":  # start from the last 7 days; Apply asks for other days
            today = datetime.now(UTC).date()
            self.since.set_value(self.since.value or (today - timedelta(days=6)).isoformat())
            self.until.set_value(self.until.value or today.isoformat())
        self.ask = replace(self.ask, preset=preset, since=str(self.since.value or ""),
                           until=str(self.until.value or ""))  # fmt: skip
        await self.reload()

    async def _apply_dates(self) -> None:
        self.ask = replace(self.ask, since=str(self.since.value or ""),
                           until=str(self.until.value or ""))  # fmt: skip
        await self.reload()

    def _set_choices(self, choices: Choices) -> None:
        self.choices = choices
        found = {"graph_id": choices.graphs, "user_id": choices.users, "model": choices.models,
                 "node_id": choices.nodes}  # fmt: skip
        for name, select in self.dims.items():
            current = getattr(self.ask, name)
            options = {"": DIMS[name], **found[name]}
            if current and current not in options:  # keep the choice the page still uses
                options[current] = choices.names.get(current, current)
            select.set_options(options, value=current or "")

    # --- the chart area --------------------------------------------------------------
    def _chart_area(self) -> None:
        with ui.tabs().classes("w-full") as tabs:
            for name, chart in CHARTS.items():
                ui.tab(name, chart.label).mark(f"tab-{name}")
        tabs.set_value(self.ask.chart)
        tabs.on_value_change(self._tab)  # after the first value: no second load
        with ui.row().classes("w-full items-center gap-3"):
            self.about = ui.label("").classes("text-gray-700")
            ui.space()
            self.by = (
                ui.select({}, label="By", on_change=self._by)
                .props("dense outlined options-dense")
                .classes("w-40")
                .mark("chart-by")
            )
        self.summary = ui.label("").classes("font-medium").mark("chart-summary")
        self.charts = ui.column().classes("w-full gap-2")
        self.drill = ui.column().classes("w-full gap-1").mark("drill")
        with ui.row().classes("w-full items-center gap-2"):
            ui.label("Rows").classes("text-lg font-semibold")
            ui.space()
            for fmt in MEDIA:
                ui.button(fmt.upper() if fmt == "csv" else fmt.capitalize(), icon="download",
                          on_click=lambda f=fmt: self.download(f)).props(
                    "flat dense no-caps").mark(f"download-{fmt}")  # fmt: skip
        self.table = ui.column().classes("w-full")

    async def _tab(self, event: Any) -> None:
        if event.value != self.ask.chart:
            self.ask = replace(self.ask, chart=str(event.value), by="")
            await self.reload()

    async def _by(self, event: Any) -> None:
        if event.value and event.value != self.ask.by:
            self.ask = replace(self.ask, by=str(event.value))
            await self.reload()

    def _show(self, shown: Shown, ask: Ask) -> None:
        self.shown = shown
        self.ask = replace(self.ask, by=shown.by)
        if shown.choices is not None:
            self.ask = replace(self.ask, choices_for=ask.range_key(shown.workspace_id))
            self._set_choices(shown.choices)
        start, end = shown.filters.start, shown.filters.end
        behind = " · still loading older usage; totals may grow" if shown.behind else ""
        self.note.set_text(f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC{behind}")
        self.empty.set_visibility(not shown.has_data)
        self.main.set_visibility(shown.has_data)
        chart = CHARTS[shown.chart]
        self.about.set_text(chart.about)
        self.by.set_options({b: b for b in chart.by}, value=shown.by or None)
        self.by.set_visibility(bool(chart.by))
        self.summary.set_text(shown.summary)
        self.charts.clear()
        with self.charts:
            for at, figure in enumerate(shown.figures):
                plot = ui.plotly(figure).classes("w-full h-96")
                plot.on("plotly_click", self._clicked, js_handler=CLICK_JS, throttle=0.3)
                name = f"chart-{shown.chart}-{at}"
                plot.mark("chart", f"chart-{shown.chart}", name).props(f'data-testid="{name}"')
        self.drill.clear()
        self._table(shown)

    def _table(self, shown: Shown) -> None:
        names, cells = exports.table(shown.rows, CHARTS[shown.chart].row_type)
        columns = [{"name": n, "label": n, "field": n, "align": "left"} for n in names]
        rows = [
            {"_row": at, **{n: cell or "—" for n, cell in zip(names, line, strict=True)}}
            for at, line in enumerate(cells)
        ]
        self.table.clear()
        with self.table:
            if not rows:
                ui.label("No rows in this range.").classes("text-gray-500").mark("no-rows")
                return
            ui.table(columns=columns, rows=rows, row_key="_row", pagination=15).props(
                "dense flat bordered"
            ).classes("w-full").mark("chart-table")

    # --- drill-down and downloads ----------------------------------------------------
    async def _clicked(self, event: Any) -> None:
        shown = self.shown
        clicked = event.args.get("customdata") if isinstance(event.args, dict) else None
        if shown is None:
            return
        analytics = self.web.analytics
        runs = await self.page.act(
            lambda actor: data.drill_down(analytics, actor, shown.filters, clicked)
        )
        if runs is not None and shown is self.shown:
            approvals = isinstance(clicked, dict) and clicked.get("source") == "approvals"
            self._runs(runs, approvals=approvals)

    def _runs(self, runs: list[RunRef], *, approvals: bool) -> None:
        names = self.choices.names
        self.drill.clear()
        with self.drill:
            ui.label(f"Runs behind this point: {len(runs)}").classes("font-semibold").mark(
                "drill-title"
            )
            if not runs:
                ui.label("No run in this range.").classes("text-gray-500")
            for run in runs:
                with (
                    ui.row()
                    .classes("w-full items-center gap-3 text-sm")
                    .mark("drill-run", f"drill-run-{run.run_id}")
                ):
                    ui.link(run.run_id[:8], f"/runs/{run.run_id}").classes("font-mono")
                    ui.label(names.get(run.graph_id, run.graph_id))
                    ui.label(names.get(run.user_id, run.user_id)).classes("text-gray-600")
                    what = "approval" if approvals else "call"
                    counted = f"{run.rows} {what}{'' if run.rows == 1 else 's'}"
                    ui.label(counted if approvals else f"{counted} · {usd(run.cost_usd)}")
                    ui.label(f"{run.last_at:%Y-%m-%d %H:%M:%S} UTC").classes("text-gray-600")

    async def download(self, fmt: str) -> None:
        shown = self.shown
        if shown is None:
            return
        analytics = self.web.analytics
        found = await self.page.act(lambda actor: data.export(analytics, actor, shown, fmt))
        if found is not None:
            content, filename = found
            ui.download.content(content, filename, MEDIA[fmt])


def _date_input(label: str, marker: str) -> ui.input:
    """A YYYY-MM-DD text field with a calendar to pick from."""
    with (
        ui.input(label, placeholder="YYYY-MM-DD")
        .props("dense outlined")
        .classes("w-36")
        .mark(marker) as field
    ):
        with ui.menu().props("no-parent-event") as menu, ui.date().bind_value(field):
            ui.button("Close", on_click=menu.close).props("flat")
        with field.add_slot("append"):
            ui.icon("edit_calendar").on("click", menu.open).classes("cursor-pointer")
    return field
