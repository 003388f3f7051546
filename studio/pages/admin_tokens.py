"""API tokens (`/admin/tokens`): create one (its value is shown once, in a dialog that is
deleted when closed), list them (never a value: the prefix only), revoke at once.

Everyone with `token:manage` sees and revokes their own tokens; with `member:manage`, every
member's. A new token carries at most what the creator's role allows."""

from __future__ import annotations

__all__ = ["register"]

from typing import TYPE_CHECKING

from nicegui import ui
from starlette.requests import Request
from starlette.responses import RedirectResponse

from auth.tokens import TokenView
from studio import workspace_admin as admin
from studio.pages.admin_access import add_nav, no_access
from studio.pages.approval_card import when
from studio.pages.frame import Page, frame, signed_in

if TYPE_CHECKING:
    from studio.app import WebStudio


def register(web: WebStudio) -> None:
    add_nav("API tokens", "/admin/tokens", "token:manage")

    @ui.page("/admin/tokens")
    async def tokens_page(request: Request) -> RedirectResponse | None:
        page = signed_in(web, request)
        if isinstance(page, RedirectResponse):
            return page
        frame(page, "API tokens")
        await TokensView(page).build()
        return None


class TokensView:
    def __init__(self, page: Page) -> None:
        self.page = page

    async def build(self) -> None:
        studio = self.page.studio
        actions = await self.page.act(lambda a: admin.token_actions_for(studio, a))
        rows = await self.page.act(lambda a: admin.list_tokens(studio, a))
        if actions is None or rows is None:
            no_access()
            return
        with ui.column().classes("w-full gap-3 p-4"):
            ui.label("API tokens").classes("text-2xl font-semibold")
            self._create_form(actions)
            self.area = ui.column().classes("w-full gap-1")
        self._rows(rows)

    def _create_form(self, actions: list[str]) -> None:
        with ui.row().classes("items-end gap-2"):
            name = ui.input("Name").props("outlined dense").classes("w-56").mark("token-name")
            scopes = ui.select(actions, multiple=True, label="Actions", value=[])
            scopes.props("outlined dense use-chips").classes("min-w-72").mark("token-actions")
            days = ui.number("Expires after days (empty: never)", min=1, precision=0)
            days.props("outlined dense").classes("w-56").mark("token-days")

            async def create() -> None:
                title, chosen = str(name.value or ""), list(scopes.value or [])
                expires = int(days.value) if days.value else None
                made = await self.page.act(
                    lambda a: admin.create_token(
                        self.page.studio, a, name=title, actions=chosen, expires_days=expires
                    )
                )
                if made is not None:
                    name.set_value("")
                    scopes.set_value([])
                    _show_once(*made)
                    await self.refresh()

            ui.button("Create token", icon="key", on_click=create).props("no-caps").mark(
                "token-create"
            )

    async def refresh(self) -> None:
        rows = await self.page.act(lambda a: admin.list_tokens(self.page.studio, a))
        self.area.clear()
        if rows is None:
            with self.area:
                no_access()
            return
        self._rows(rows)

    def _rows(self, rows: list[admin.TokenRow]) -> None:
        self.area.clear()
        with self.area:
            if not rows:
                ui.label("No API tokens yet.").classes("text-gray-500")
            for row in rows:
                self._row(row)

    def _row(self, row: admin.TokenRow) -> None:
        token = row.token
        with (
            ui.row()
            .classes("w-full items-center gap-3 border-b py-1")
            .props(f'data-token="{token.token_id}"')
        ):
            ui.label(token.name).classes("w-48 font-medium")
            ui.label(f"sk_{token.prefix}_…").classes("font-mono w-36")
            ui.label(row.owner).classes("w-56 text-gray-600")
            ui.label(", ".join(token.actions)).classes("text-xs w-72")
            ui.badge(row.status, color="positive" if row.status == "active" else "grey")
            expires = when(token.expires_at) or "never"
            ui.label(f"expires {expires}").classes("text-xs text-gray-500")
            used = when(token.last_used_at) or "never"
            ui.label(f"last used {used}").classes("text-xs text-gray-500")
            if row.status == "active":
                ui.button("Revoke", on_click=lambda t=token: self._revoke(t.token_id)).props(
                    "flat dense no-caps color=negative"
                ).mark(f"revoke-{token.name}")

    async def _revoke(self, token_id: str) -> None:
        await self.page.act(
            lambda a: admin.revoke_token(self.page.studio, a, token_id), success="Revoked"
        )
        await self.refresh()


def _show_once(value: str, view: TokenView) -> None:
    """The token's value, once: the dialog (and the value with it) is deleted on close."""
    with ui.dialog().props("persistent") as dialog, ui.card().classes("w-[36rem] max-w-full"):
        ui.label(f"Token {view.name!r} created").classes("text-lg font-semibold")
        ui.label(
            "Copy the value now: it is shown only this once (the studio keeps a hash only)."
        ).classes("text-sm")
        ui.input(value=value).props("readonly outlined dense input-class=font-mono").classes(
            "w-full"
        ).mark("token-value")
        with ui.row().classes("w-full justify-end"):
            ui.button(
                "Copy", icon="content_copy", on_click=lambda: ui.clipboard.write(value)
            ).props("flat no-caps")
            ui.button("I stored it", on_click=dialog.delete).props("no-caps").mark("token-done")
    dialog.open()
