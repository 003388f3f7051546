"""Members and roles (`/admin/members`): add a member by e-mail, change a role, remove a
member (their API tokens here are revoked). The last admin keeps the role: the service
refuses, whatever the page offers."""

from __future__ import annotations

__all__ = ["register"]

from typing import TYPE_CHECKING, Any

from nicegui import ui
from starlette.requests import Request
from starlette.responses import RedirectResponse

from auth.actions import ROLE_NAMES, ROLES
from studio import workspace_admin as admin
from studio.pages.admin_access import add_nav, no_access
from studio.pages.frame import Page, frame, signed_in

if TYPE_CHECKING:
    from studio.app import WebStudio


def register(web: WebStudio) -> None:
    add_nav("Members", "/admin/members", "member:manage")

    @ui.page("/admin/members")
    async def members_page(request: Request) -> RedirectResponse | None:
        page = signed_in(web, request)
        if isinstance(page, RedirectResponse):
            return page
        frame(page, "Members")
        await MembersView(page).build()
        return None


class MembersView:
    def __init__(self, page: Page) -> None:
        self.page = page

    async def build(self) -> None:
        members = await self.page.act(lambda a: admin.list_members(self.page.studio, a))
        if members is None:
            no_access()
            return
        with ui.column().classes("w-full gap-3 p-4"):
            ui.label("Members and roles").classes("text-2xl font-semibold")
            self._add_form()
            self.area = ui.column().classes("w-full gap-1")
        self._rows(members)

    def _add_form(self) -> None:
        with ui.row().classes("items-end gap-2"):
            email = ui.input("E-mail of an existing account").props("outlined dense")
            email.classes("w-72").mark("member-email")
            role = ui.select(list(ROLE_NAMES), value="viewer", label="Role").props("outlined dense")
            role.classes("w-40").mark("member-role")

            async def add() -> None:
                address, chosen = str(email.value or "").strip(), str(role.value)
                if not address:
                    ui.notify("Enter the member's e-mail.", type="warning")
                    return
                done = await self.page.act(
                    lambda a: admin.set_member_role(self.page.studio, a, address, chosen),
                    success=f"{address} is now {chosen}",
                )
                if done is not None:
                    email.set_value("")
                    await self.refresh()

            ui.button("Add or change", icon="person_add", on_click=add).props("no-caps").mark(
                "member-add"
            )
        ui.label(" · ".join(f"{name}: {ROLES[name].description}" for name in ROLE_NAMES)).classes(
            "text-xs text-gray-500"
        )

    async def refresh(self) -> None:
        members = await self.page.act(lambda a: admin.list_members(self.page.studio, a))
        if members is None:
            self.area.clear()
            with self.area:
                no_access()
            return
        self._rows(members)

    def _rows(self, members: list[admin.MemberView]) -> None:
        self.area.clear()
        with self.area:
            for member in members:
                self._row(member)

    def _row(self, member: admin.MemberView) -> None:
        with (
            ui.row()
            .classes("w-full items-center gap-3 border-b py-1")
            .props(f'data-member="{member.user_id}"')
        ):
            ui.label(member.email or member.user_id).classes("w-72 font-medium")
            ui.label(member.display_name).classes("w-40 text-gray-600")
            role = member.roles[0] if len(member.roles) == 1 else None
            select = ui.select(list(ROLE_NAMES), value=role, label="Role")
            select.props("outlined dense").classes("w-40").mark(f"role-{member.email}")
            select.on_value_change(lambda e, m=member: self._change(m, e))
            if member.disabled:
                ui.badge("disabled", color="grey")
            ui.button(icon="person_remove", on_click=lambda m=member: self._confirm(m)).props(
                "flat dense color=negative"
            ).tooltip("Remove from the workspace").mark(f"remove-{member.email}")

    async def _change(self, member: admin.MemberView, event: Any) -> None:
        role = str(event.value or "")
        if not role or (role,) == member.roles or not member.email:
            return
        await self.page.act(
            lambda a: admin.set_member_role(self.page.studio, a, member.email, role),
            success=f"{member.email} is now {role}",
        )
        await self.refresh()

    def _confirm(self, member: admin.MemberView) -> None:
        with ui.dialog() as dialog, ui.card():
            ui.label(f"Remove {member.email or member.user_id} from the workspace?").classes(
                "font-semibold"
            )
            ui.label("Their API tokens in this workspace are revoked at once.")
            with ui.row().classes("w-full justify-end"):
                ui.button("Cancel", on_click=dialog.close).props("flat no-caps")

                async def remove() -> None:
                    dialog.close()
                    await self.page.act(
                        lambda a: admin.remove_member(self.page.studio, a, member.user_id),
                        success=f"Removed {member.email}",
                    )
                    await self.refresh()

                ui.button("Remove", on_click=remove).props("color=negative no-caps").mark(
                    "remove-confirm"
                )
        dialog.open()
