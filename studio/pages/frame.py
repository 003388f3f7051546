"""The shared page frame and the one place page code meets identity and errors.

`signed_in()` resolves the browser's session cookie on the server; every event handler
goes through `Page.act()`, which re-resolves the session (so sign-out, a disabled account
or a removed role takes effect at once), runs the service call off the event loop, and
maps studio errors to a notification — never a stack trace in the browser.
"""

from __future__ import annotations

__all__ = ["Page", "frame", "signed_in"]

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from nicegui import run, ui
from starlette.requests import Request
from starlette.responses import RedirectResponse

from components.errors import GraphInvalid, NotFound, StudioError
from graphs.identity import Actor
from studio.context import Studio
from studio.web_auth import SESSION_COOKIE

if TYPE_CHECKING:
    from studio.app import WebStudio

log = logging.getLogger(__name__)
T = TypeVar("T")

NAV: list[tuple[str, str, str]] = [("Graphs", "/graphs", "graph:read")]
"""(label, path, action needed to see the link): pages add themselves when registered."""
NAV_BADGES: list[Callable[[Page], None]] = []
"""Small live widgets in the header (e.g. the approval count), added by their pages."""


@dataclass(frozen=True, slots=True)
class Page:
    """One page view of one signed-in browser: the web context, its cookie and identity."""

    web: WebStudio
    cookie: str
    actor: Actor  # as resolved when the page was built

    @property
    def studio(self) -> Studio:
        return self.web.studio

    def live_actor(self) -> Actor:
        """The identity now (NotFound once the session ended)."""
        return self.studio.session_actor(self.cookie)

    async def act(self, call: Callable[[Actor], T], *, success: str | None = None) -> T | None:
        """Run a service call as the current identity, off the event loop; a studio error
        becomes a notification and None."""
        return await self.act_raising(call, None, success=success)

    async def act_raising(
        self,
        call: Callable[[Actor], T],
        passes: type[StudioError] | None,
        *,
        success: str | None = None,
    ) -> T | None:
        """`act`, but errors of type `passes` reach the caller (e.g. an edit conflict the
        page resolves with a dialog)."""
        try:
            actor = await run.io_bound(self.live_actor)
        except NotFound:
            ui.navigate.to("/login")
            return None
        if actor is None:  # cancelled: the page went away or the app is stopping
            return None
        try:
            result = await run.io_bound(call, actor)
        except Exception as exc:
            if passes is not None and isinstance(exc, passes):
                raise
            _report(exc)
            return None
        if success:
            ui.notify(success, type="positive")
        return result

    def allowed(self, action: str) -> bool:
        """Whether to offer an action (a hint for the UI only: services check it again)."""
        return self.studio.rbac.authorize(self.actor, action).allowed


def _report(exc: Exception) -> None:
    """The one place page code turns an error into what the person sees."""
    if isinstance(exc, GraphInvalid):
        notify_problems(exc)
    elif isinstance(exc, StudioError):
        ui.notify(_plain(str(exc)), type="negative", multi_line=True)
    else:
        log.error("page action failed", exc_info=exc)
        ui.notify("Something went wrong; the error was logged.", type="negative")


def notify_problems(exc: GraphInvalid) -> None:
    lines = [str(p) for p in exc.problems[:8]]
    more = f" (+{len(exc.problems) - 8} more)" if len(exc.problems) > 8 else ""
    ui.notify(
        _plain("The graph is invalid: " + "; ".join(lines) + more),
        type="negative",
        multi_line=True,
    )


def _plain(text: str) -> str:
    return " ".join(text.split())[:600]


def signed_in(web: WebStudio, request: Request) -> Page | RedirectResponse:
    """The page's identity, or a redirect to the sign-in page."""
    cookie = request.cookies.get(SESSION_COOKIE, "")
    try:
        actor = web.studio.session_actor(cookie)
    except NotFound:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
    return Page(web, cookie, actor)


def frame(page: Page, title: str) -> None:
    """Header with navigation, the workspace switcher and the account menu."""
    ui.page_title(f"{title} · Agent Studio")
    studio = page.studio
    with ui.header().classes("items-center gap-4 bg-slate-800 text-white px-4 py-2"):
        ui.link("◆ Agent Studio", "/").classes("text-lg font-bold text-white no-underline")
        for label, path, action in NAV:
            if page.allowed(action):
                ui.link(label, path).classes("text-white").props(f'data-nav="{path}"')
        for badge in NAV_BADGES:
            badge(page)
        ui.space()
        _workspace_switcher(page, studio)
        user = studio.accounts.get_user(page.actor.user_id)
        ui.label(user.email).classes("text-sm opacity-80")
        with ui.element("form").props('method="post" action="/auth/logout"'):
            ui.button("Sign out").props("type=submit flat color=white dense no-caps")


def _workspace_switcher(page: Page, studio: Studio) -> None:
    ids = sorted(studio.rbac.workspaces_of(page.actor.user_id))
    options = {ws: studio.accounts.get_workspace(ws).name for ws in ids}

    async def switch(event: Any) -> None:
        if event.value == page.actor.workspace_id:
            return
        done = await page.act(lambda _actor: studio.switch_workspace(page.cookie, event.value))
        if done is not None:
            ui.navigate.to("/graphs")

    ui.select(options, value=page.actor.workspace_id, on_change=switch).props(
        'dense dark options-dense borderless data-testid="workspace"'
    ).classes("min-w-40")
