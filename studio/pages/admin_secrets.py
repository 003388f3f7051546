"""Secrets (`/admin/secrets`): create or replace a secret, delete one. A value goes in
through a password field that is emptied once it is stored; the page only ever lists names,
dates and who changed them — the vault never hands a value back to a page."""

from __future__ import annotations

__all__ = ["register"]

from typing import TYPE_CHECKING

from nicegui import ui
from starlette.requests import Request
from starlette.responses import RedirectResponse

from auth.vault import SecretInfo
from studio import workspace_admin as admin
from studio.pages.admin_access import add_nav, no_access
from studio.pages.approval_card import when
from studio.pages.frame import Page, frame, signed_in

if TYPE_CHECKING:
    from studio.app import WebStudio


def register(web: WebStudio) -> None:
    add_nav("Secrets", "/admin/secrets", "secret:manage")

    @ui.page("/admin/secrets")
    async def secrets_page(request: Request) -> RedirectResponse | None:
        page = signed_in(web, request)
        if isinstance(page, RedirectResponse):
            return page
        frame(page, "Secrets")
        await SecretsView(page).build()
        return None


class SecretsView:
    def __init__(self, page: Page) -> None:
        self.page = page

    async def build(self) -> None:
        found = await self.page.act(lambda a: admin.list_secrets(self.page.studio, a))
        if found is None:
            no_access()
            return
        with ui.column().classes("w-full gap-3 p-4"):
            ui.label("Secrets").classes("text-2xl font-semibold")
            ui.label(
                "Graphs refer to secrets by name. Values are encrypted at rest and are never "
                "shown again: to change one, store a new value under the same name."
            ).classes("text-sm text-gray-600")
            self._form()
            self.area = ui.column().classes("w-full gap-1")
        self._rows(found)

    def _form(self) -> None:
        with ui.row().classes("items-end gap-2"):
            self.name = ui.input("Name (e.g. PAYMENTS_KEY)").props("outlined dense")
            self.name.classes("w-64").mark("secret-name")
            value = ui.input("Value", password=True).props('outlined dense autocomplete="off"')
            value.classes("w-80").mark("secret-value")

            async def save() -> None:
                name, secret = str(self.name.value or "").strip(), str(value.value or "")
                value.set_value("")  # the value leaves the page's state right away
                if not name or not secret:
                    ui.notify("Enter a name and a value.", type="warning")
                    return
                info = await self.page.act(
                    lambda a: admin.set_secret(self.page.studio, a, name, secret),
                    success=f"Secret {name} stored",
                )
                if info is not None:
                    self.name.set_value("")
                await self.refresh()

            ui.button("Save", icon="lock", on_click=save).props("no-caps").mark("secret-save")

    async def refresh(self) -> None:
        found = await self.page.act(lambda a: admin.list_secrets(self.page.studio, a))
        if found is None:
            self.area.clear()
            with self.area:
                no_access()
            return
        self._rows(found)

    def _rows(self, secrets: list[SecretInfo]) -> None:
        self.area.clear()
        with self.area:
            if not secrets:
                ui.label("No secrets yet.").classes("text-gray-500")
            for info in secrets:
                with (
                    ui.row()
                    .classes("w-full items-center gap-3 border-b py-1")
                    .props(f'data-secret="{info.name}"')
                ):
                    ui.label(info.name).classes("w-64 font-mono font-medium")
                    ui.label("••••••••").classes("text-gray-400")
                    ui.label(f"updated {when(info.updated_at)}").classes("text-xs text-gray-500")
                    ui.button(
                        "Replace value", on_click=lambda i=info: self.name.set_value(i.name)
                    ).props("flat dense no-caps").mark(f"replace-{info.name}")
                    ui.button(icon="delete", on_click=lambda i=info: self._confirm(i.name)).props(
                        "flat dense color=negative"
                    ).tooltip("Delete").mark(f"delete-{info.name}")

    def _confirm(self, name: str) -> None:
        with ui.dialog() as dialog, ui.card():
            ui.label(f"Delete the secret {name}?").classes("font-semibold")
            ui.label("Runs that use it fail at the step that needs it.")
            with ui.row().classes("w-full justify-end"):
                ui.button("Cancel", on_click=dialog.close).props("flat no-caps")

                async def delete() -> None:
                    dialog.close()
                    await self.page.act(
                        lambda a: admin.delete_secret(self.page.studio, a, name),
                        success=f"Deleted {name}",
                    )
                    await self.refresh()

                ui.button("Delete", on_click=delete).props("color=negative no-caps").mark(
                    "delete-confirm"
                )
        dialog.open()
