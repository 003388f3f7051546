"""The sign-in page: a local-account form (a real form post) and one button per OIDC provider."""

from __future__ import annotations

__all__ = ["register"]

from typing import TYPE_CHECKING

from nicegui import ui
from starlette.requests import Request
from starlette.responses import RedirectResponse

from components.errors import NotFound
from studio.web_auth import SESSION_COOKIE, safe_next

if TYPE_CHECKING:
    from studio.app import WebStudio

MESSAGES = {
    "invalid": "E-mail or password is wrong.",
    "throttled": "Too many attempts. Wait a little, then try again.",
}


def register(web: WebStudio) -> None:
    @ui.page("/login")
    def login_page(request: Request) -> RedirectResponse | None:
        target = safe_next(request.query_params.get("next"))
        try:
            web.studio.session_actor(request.cookies.get(SESSION_COOKIE, ""))
            return RedirectResponse(target, status_code=303)  # already signed in
        except NotFound:
            pass
        ui.page_title("Sign in · Agent Studio")
        with ui.card().classes("absolute-center w-96 p-6 gap-3"):
            ui.label("◆ Agent Studio").classes("text-2xl font-bold")
            ui.label("Sign in to your workspace").classes("text-gray-600")
            error = MESSAGES.get(request.query_params.get("error", ""))
            if error:
                ui.label(error).classes("text-red-700").props('data-testid="login-error"')
            with (
                ui.element("form")
                .props('method="post" action="/auth/login"')
                .classes("w-full flex flex-col gap-3")
            ):
                ui.input("E-mail").props(
                    "name=email type=email autocomplete=username autofocus outlined"
                ).classes("w-full")
                ui.input("Password", password=True).props(
                    "name=password autocomplete=current-password outlined"
                ).classes("w-full")
                ui.element("input").props.update(type="hidden", name="next", value=target)
                ui.button("Sign in").props("type=submit color=primary no-caps").classes("w-full")
            for provider in web.settings.oidc_providers:
                ui.button(
                    f"Sign in with {provider.title or provider.name}",
                    on_click=lambda p=provider: ui.navigate.to(f"/auth/oidc/{p.name}/login"),
                ).props("outline no-caps").classes("w-full")
        return None
