"""Workspace policy (`/admin/policy`): raise a tool's approval tier for every graph of the
workspace. A floor only goes up, and only above what the graphs already declare; the
service refuses anything else (lowering is an operator's deliberate act, not a page's)."""

from __future__ import annotations

__all__ = ["register"]

from typing import TYPE_CHECKING

from nicegui import ui
from starlette.requests import Request
from starlette.responses import RedirectResponse

from components.base import TIERS
from studio import workspace_admin as admin
from studio.pages.admin_access import add_nav, no_access
from studio.pages.frame import Page, frame, signed_in

if TYPE_CHECKING:
    from studio.app import WebStudio

TIER_HELP = {
    "free": "runs without asking",
    "confirm": "the run's starter or an approver confirms",
    "admin": "an approver who did not start the run decides",
}


def register(web: WebStudio) -> None:
    add_nav("Policy", "/admin/policy", "policy:manage")

    @ui.page("/admin/policy")
    async def policy_page(request: Request) -> RedirectResponse | None:
        page = signed_in(web, request)
        if isinstance(page, RedirectResponse):
            return page
        frame(page, "Policy")
        await PolicyView(page).build()
        return None


class PolicyView:
    def __init__(self, page: Page) -> None:
        self.page = page

    async def build(self) -> None:
        found = await self.page.act(lambda a: admin.tool_policies(self.page.studio, a))
        if found is None:
            no_access()
            return
        with ui.column().classes("w-full gap-3 p-4"):
            ui.label("Workspace policy: tool approval tiers").classes("text-2xl font-semibold")
            ui.label(" · ".join(f"{tier}: {text}" for tier, text in TIER_HELP.items())).classes(
                "text-sm text-gray-600"
            )
            self.area = ui.column().classes("w-full gap-1")
            self._other_tool()
        self._rows(found)

    async def refresh(self) -> None:
        found = await self.page.act(lambda a: admin.tool_policies(self.page.studio, a))
        self.area.clear()
        if found is None:
            with self.area:
                no_access()
            return
        self._rows(found)

    def _rows(self, policies: list[admin.ToolPolicy]) -> None:
        self.area.clear()
        with self.area:
            if not policies:
                ui.label("No graph declares a tool yet.").classes("text-gray-500")
            for policy in policies:
                self._row(policy)

    def _row(self, policy: admin.ToolPolicy) -> None:
        with (
            ui.row()
            .classes("w-full items-center gap-3 border-b py-1")
            .props(f'data-tool="{policy.tool_name}"')
        ):
            ui.label(policy.tool_name).classes("w-48 font-mono font-medium")
            ui.badge(f"workspace floor: {policy.floor}").props("outline")
            graphs = ", ".join(f"{name} ({tier})" for name, tier in policy.graphs)
            ui.label(graphs or "no graph declares it").classes("text-sm text-gray-600 grow")
            if not policy.raisable:
                ui.label("already at the highest tier the graphs allow raising to").classes(
                    "text-xs text-gray-500"
                )
                return
            choice = ui.select(list(policy.raisable), value=policy.raisable[0], label="Raise to")
            choice.props("outlined dense").classes("w-32").mark(f"tier-{policy.tool_name}")
            ui.button(
                "Raise",
                on_click=lambda: self._raise(policy.tool_name, str(choice.value)),
            ).props("no-caps").mark(f"raise-{policy.tool_name}")

    def _other_tool(self) -> None:
        with ui.row().classes("items-end gap-2 pt-4"):
            name = ui.input("Another tool's name").props("outlined dense").mark("other-tool")
            tier = ui.select(list(TIERS[1:]), value="confirm", label="Tier").props("outlined dense")
            tier.mark("other-tier")
            ui.button(
                "Raise", on_click=lambda: self._raise(str(name.value or ""), str(tier.value))
            ).props("no-caps outline").mark("other-raise")

    async def _raise(self, tool_name: str, tier: str) -> None:
        await self.page.act(
            lambda a: admin.raise_tool_floor(self.page.studio, a, tool_name, tier),
            success=f"{tool_name} now needs at least {tier} in this workspace",
        )
        await self.refresh()
