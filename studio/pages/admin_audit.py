"""The audit log (`/admin/audit`): the workspace's entries, newest first, filtered by action,
actor (e-mail) and time, with the status of the hash chain (`AuditLog.verify`). Details are
shown as JSON text."""

from __future__ import annotations

__all__ = ["register"]

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from nicegui import ui
from starlette.requests import Request
from starlette.responses import RedirectResponse

from auth.audit import AUDIT_ACTIONS
from studio import workspace_admin as admin
from studio.pages.admin_access import add_nav, no_access
from studio.pages.approval_card import when
from studio.pages.frame import Page, frame, signed_in

if TYPE_CHECKING:
    from studio.app import WebStudio

PAGE = 50
ANY = ""


def register(web: WebStudio) -> None:
    add_nav("Audit log", "/admin/audit", "audit:read")

    @ui.page("/admin/audit")
    async def audit_page(request: Request) -> RedirectResponse | None:
        page = signed_in(web, request)
        if isinstance(page, RedirectResponse):
            return page
        frame(page, "Audit log")
        await AuditView(page).build()
        return None


def _day(text: str | None, *, end: bool = False) -> datetime | None:
    """'YYYY-MM-DD' as the start of that day (UTC); `end`: the start of the next day."""
    if not text:
        return None
    try:
        day = datetime.strptime(text.strip(), "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        ui.notify(f"{text!r} is not a date like 2026-11-26; the filter is ignored.")
        return None
    return day + timedelta(days=1) if end else day


class AuditView:
    def __init__(self, page: Page) -> None:
        self.page = page
        self.pages: list[int] = [0]  # before_seq of each page walked (0: the newest)
        self.last_seq = 0

    async def build(self) -> None:
        rows = await self.page.act(lambda a: admin.audit_entries(self.page.studio, a, limit=PAGE))
        if rows is None:
            no_access()
            return
        with ui.column().classes("w-full gap-3 p-4"):
            with ui.row().classes("w-full items-center gap-3"):
                ui.label("Audit log").classes("text-2xl font-semibold")
                self.chain = ui.label("Checking the hash chain…").mark("chain-status")
                ui.button("Verify again", on_click=self.verify).props("flat dense no-caps")
            self._filters()
            self.area = ui.column().classes("w-full gap-0")
            with ui.row().classes("w-full justify-center"):
                ui.button("Newest", on_click=self._first).props("flat no-caps")
                self.older = ui.button("Older", on_click=self._older).props("flat no-caps")
                self.older.mark("audit-older")
        self._rows(rows)
        ui.timer(0, self.verify, once=True)

    def _filters(self) -> None:
        options = {ANY: "any action", **{name: name for name in AUDIT_ACTIONS}}
        with ui.row().classes("items-end gap-2"):
            self.action = ui.select(options, value=ANY, label="Action").props("outlined dense")
            self.action.classes("w-56").mark("audit-action")
            self.actor = ui.input("Actor (e-mail, or system)").props("outlined dense")
            self.actor.classes("w-64").mark("audit-actor")
            self.since = ui.input("From (YYYY-MM-DD)").props("outlined dense").mark("audit-since")
            self.until = ui.input("To (YYYY-MM-DD)").props("outlined dense").mark("audit-until")
            ui.button("Filter", icon="filter_list", on_click=self._first).props("no-caps").mark(
                "audit-filter"
            )

    async def verify(self) -> None:
        status = await self.page.act(lambda a: admin.audit_chain(self.page.studio, a))
        if status is not None:
            self.chain.set_text(status.message)
            self.chain.classes(replace="text-green-700" if status.ok else "text-red-700 font-bold")

    async def load(self) -> None:
        action = str(self.action.value or "") or None
        by = str(self.actor.value or "").strip() or None
        since, until = _day(self.since.value), _day(self.until.value, end=True)
        before = self.pages[-1]
        rows = await self.page.act(
            lambda a: admin.audit_entries(
                self.page.studio,
                a,
                action=action,
                by_email=by,
                since=since,
                until=until,
                before_seq=before,
                limit=PAGE,
            )
        )
        if rows is not None:
            self._rows(rows)

    def _rows(self, rows: list[admin.AuditRow]) -> None:
        self.area.clear()
        self.last_seq = rows[-1].entry.seq if rows else 0
        self.older.set_enabled(len(rows) == PAGE)
        with self.area:
            if not rows:
                ui.label("No entries match.").classes("text-gray-500 p-2")
            for row in rows:
                entry = row.entry
                with ui.row().classes("w-full items-start gap-3 border-b py-1 text-sm"):
                    ui.label(when(entry.at)).classes("w-48 text-gray-500")
                    ui.label(row.actor_email).classes("w-56")
                    ui.label(entry.action).classes("w-44 font-mono")
                    ui.label(entry.target).classes("w-64 break-all")
                    details = json.dumps(entry.details, ensure_ascii=False, sort_keys=True)
                    ui.label(details).classes("font-mono text-xs break-all grow")

    async def _first(self) -> None:
        self.pages = [0]
        await self.load()

    async def _older(self) -> None:
        if self.last_seq:
            self.pages.append(self.last_seq)
            await self.load()
