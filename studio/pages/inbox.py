"""The approval inbox (`/approvals`): every pending approval of the workspace, newest first,
across runs and graphs, paged, refreshed live; decided ones move to the history tab.

The first page is rendered with the page itself; a timer then polls a cheap stamp (pending
count, newest arrival, latest decision) and reloads the page when it changes. Deciding is a
button → `Page.act` → `studio.approval_inbox.decide`; a card being decided is locked, so a
double click sends one decision, and the service's compare-and-set answers anyone else
("already approved by …"). People who may not decide see the cards read-only.
"""

from __future__ import annotations

__all__ = ["POLL_S", "InboxView", "pending_badge", "register"]

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nicegui import ui
from starlette.requests import Request
from starlette.responses import RedirectResponse

from components.errors import Conflict
from graphs.approvals import Decision, InboxStamp
from studio import approval_inbox as inbox
from studio.pages.approval_card import ApprovalCard
from studio.pages.approval_dialogs import answer_dialog, edit_dialog, reject_dialog
from studio.pages.frame import NAV, NAV_BADGES, Page, frame, signed_in

if TYPE_CHECKING:
    from studio.app import WebStudio

POLL_S = 3.0
BADGE_POLL_S = 10.0
NAV_ENTRY = ("Approvals", "/approvals", "approval:read")


def register(web: WebStudio) -> None:
    if NAV_ENTRY not in NAV:
        NAV.append(NAV_ENTRY)
    _add_badge(pending_badge)

    @ui.page("/approvals")
    async def inbox_page(request: Request) -> RedirectResponse | None:
        page = signed_in(web, request)
        if isinstance(page, RedirectResponse):
            return page
        frame(page, "Approvals")
        await InboxView(page).build()
        return None


def _add_badge(badge: Callable[[Page], None]) -> None:
    """Add the header widget once, or replace an older copy of it (a re-imported module)."""
    name = (badge.__module__, badge.__qualname__)
    for at, known in enumerate(NAV_BADGES):
        if (known.__module__, known.__qualname__) == name:
            NAV_BADGES[at] = badge
            return
    NAV_BADGES.append(badge)


def pending_badge(page: Page) -> None:
    """The header's pending-approvals count (for those who may read the inbox)."""
    if not page.allowed("approval:read"):
        return
    link = ui.link("", "/approvals").classes("no-underline").props('data-testid="approvals"')
    with link:
        badge = ui.badge("…", color="orange").props("rounded").mark("approval-badge")

    async def update() -> None:
        stamp = await page.act(lambda actor: inbox.inbox_stamp(page.studio, actor))
        if stamp is None:
            poll.deactivate()
            return
        badge.set_text(str(stamp.pending))
        badge.props(f"color={'orange' if stamp.pending else 'grey'}")

    ui.timer(0, update, once=True)
    poll = ui.timer(BADGE_POLL_S, update)


class InboxView:
    def __init__(self, page: Page) -> None:
        self.page = page
        self.history = False
        self.cursors: list[inbox.Cursor | None] = [None]  # the pages walked so far
        self.next_cursor: inbox.Cursor | None = None
        self.stamp: InboxStamp | None = None
        self.deciding: set[str] = set()
        self.cards: dict[str, ApprovalCard] = {}
        self.loads = 0  # a newer load's answer wins over an older one still on its way

    async def build(self) -> None:
        with ui.row().classes("w-full items-center gap-3 px-4 pt-4"):
            ui.label("Approvals").classes("text-2xl font-semibold")
            self.count = ui.label("").classes("text-gray-600").mark("pending-count")
        with ui.tabs().classes("px-4") as tabs:
            ui.tab("pending", "Pending").mark("tab-pending")
            ui.tab("history", "History").mark("tab-history")
        tabs.set_value("pending")
        tabs.on_value_change(self._on_tab)  # after the first value: no second load
        self.list_area = ui.column().classes("w-full gap-3 px-4")
        with ui.row().classes("w-full justify-center gap-2 p-4"):
            self.newer = ui.button("Newer", icon="chevron_left", on_click=self._newer)
            self.newer.props("flat no-caps").mark("newer")
            self.older = ui.button("Older", icon="chevron_right", on_click=self._older)
            self.older.props("flat no-caps").mark("older")
        self.dialogs = ui.element("div")
        if await self.load():
            self.timer = ui.timer(POLL_S, self.poll)

    # --- loading ---------------------------------------------------------------------
    async def load(self) -> bool:
        studio, history, before = self.page.studio, self.history, self.cursors[-1]
        self.loads += 1
        mine = self.loads
        loaded = await self.page.act(
            lambda actor: (
                inbox.inbox_stamp(studio, actor),
                inbox.inbox_page(studio, actor, history=history, before=before),
            )
        )
        if mine != self.loads:
            return True
        self.list_area.clear()
        if loaded is None:
            with self.list_area:
                ui.label("The approval inbox is not available to you.").classes("p-4")
            return False
        stamp, found = loaded
        self.stamp = stamp
        self.count.set_text(f"{stamp.pending} pending")
        self.next_cursor = found.next_cursor
        self.cards.clear()
        with self.list_area:
            if not found.cards:
                empty = "No decisions yet." if history else "Nothing is waiting for a decision."
                ui.label(empty).classes("text-gray-500 p-4")
            for card in found.cards:
                shown = ApprovalCard(card, None if history else self.on_decision)
                self.cards[card.approval.approval_id] = shown
        self.newer.set_enabled(len(self.cursors) > 1)
        self.older.set_enabled(found.next_cursor is not None)
        self.list_area.mark("inbox-loaded")
        return True

    async def poll(self) -> None:
        stamp = await self.page.act(lambda actor: inbox.inbox_stamp(self.page.studio, actor))
        if stamp is None:
            self.timer.deactivate()  # signed out or no longer allowed: stop asking
            return
        if stamp != self.stamp and not self.deciding:
            await self.load()

    async def _on_tab(self, event: Any) -> None:
        self.history = event.value == "history"
        self.cursors = [None]
        await self.load()

    async def _older(self) -> None:
        if self.next_cursor is not None:
            self.cursors.append(self.next_cursor)
            await self.load()

    async def _newer(self) -> None:
        if len(self.cursors) > 1:
            self.cursors.pop()
            await self.load()

    # --- deciding --------------------------------------------------------------------
    async def on_decision(self, card: inbox.InboxCard, decision: str) -> None:
        if decision == "approve":
            await self.decide(card, "approve")
        elif decision == "edit":
            await self.edit(card)
        elif decision == "reject":
            await self.reject(card)
        elif decision == "respond":
            await self.respond(card)

    async def edit(self, card: inbox.InboxCard) -> None:
        approval_id = card.approval.approval_id
        schema = await self.page.act(
            lambda actor: inbox.edit_schema(self.page.studio, actor, approval_id)
        )

        async def submit(args: dict[str, Any]) -> None:
            await self.decide(card, "edit", args=args)

        with self.dialogs:
            edit_dialog(card, schema, submit)

    async def reject(self, card: inbox.InboxCard) -> None:
        async def submit(feedback: str) -> None:
            await self.decide(card, "reject", feedback=feedback)

        with self.dialogs:
            reject_dialog(card, submit)

    async def respond(self, card: inbox.InboxCard) -> None:
        async def submit(answer: str) -> None:
            await self.decide(card, "respond", args={"response": answer})

        with self.dialogs:
            answer_dialog(card, submit)

    async def decide(
        self,
        card: inbox.InboxCard,
        decision: Decision,
        *,
        args: dict[str, Any] | None = None,
        feedback: str | None = None,
    ) -> None:
        """Send one decision for the card; while it is on its way the card is locked."""
        approval_id = card.approval.approval_id
        if approval_id in self.deciding:
            return  # a second click while the first is on its way
        self.deciding.add(approval_id)
        shown = self.cards.get(approval_id)
        if shown is not None:
            shown.set_busy(True)
        studio = self.page.studio
        try:
            done = await self.page.act_raising(
                lambda actor: inbox.decide(
                    studio, actor, approval_id, decision, args=args, feedback=feedback
                ),
                Conflict,
                success=_DONE[decision],
            )
        except Conflict:
            await self._already_decided(approval_id)
            done = None
        finally:
            self.deciding.discard(approval_id)
        if done is None and shown is not None and not shown.is_deleted:
            shown.set_busy(False)
        await self.load()

    async def _already_decided(self, approval_id: str) -> None:
        found = await self.page.act(
            lambda actor: inbox.decided_by(self.page.studio, actor, approval_id)
        )
        if found is None:
            return
        status, who = found
        by = f" by {who}" if who else ""
        ui.notify(f"Already {status}{by}: nothing was changed.", type="warning")


_DONE: dict[str, str] = {
    "approve": "Approved: the run continues.",
    "edit": "Approved with your edits: the run continues.",
    "reject": "Rejected: the run continues with your feedback.",
    "respond": "Answer sent: the run continues.",
}
