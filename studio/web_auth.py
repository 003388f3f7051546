"""Sign-in and sign-out for the web studio: form posts that set an HttpOnly session cookie.

The cookie holds a random session id (the database keeps its hash); pages and event
handlers resolve it on the server for every action, so a sign-out, a disabled account or a
revoked role takes effect at once. State-changing requests here are POSTs whose `Origin`
(or `Referer`) must be this studio's own (login CSRF); the cookie is `SameSite=Lax`.
OIDC providers configured in the settings get their routes from `auth.oidc`.
"""

from __future__ import annotations

__all__ = ["SESSION_COOKIE", "auth_routes", "client_ip", "safe_next"]

import logging
from collections.abc import Callable
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from auth.oidc import VerifiedIdentity, build_oauth, link_or_find, oidc_routes
from components.errors import Forbidden
from graphs.runs import env_secrets
from studio.context import Studio
from studio.settings import Settings

log = logging.getLogger(__name__)
SESSION_COOKIE = "studio_session"
MAX_FORM_BYTES = 8_192


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "0.0.0.0"  # noqa: S104 - a label only


def safe_next(target: object) -> str:
    """Only a local path may follow a sign-in (no open redirect)."""
    text = str(target or "/")
    parts = urlsplit(text)
    if parts.scheme or parts.netloc or not text.startswith("/") or text.startswith("//"):
        return "/"
    return text if "\\" not in text else "/"


def _same_origin(request: Request) -> bool:
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return False
    origin = urlsplit(source)
    return f"{origin.scheme}://{origin.netloc}" == f"{request.url.scheme}://{request.url.netloc}"


def _set_cookie(response: Response, cookie: str, settings: Settings) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path="/",
    )


def auth_routes(get_studio: Callable[[], Studio], settings: Settings) -> list[BaseRoute]:
    """`POST /auth/login`, `POST /auth/logout` and one pair of OIDC routes per provider."""

    async def login(request: Request) -> Response:
        if not _same_origin(request):
            return PlainTextResponse("cross-site sign-in refused", status_code=403)
        if int(request.headers.get("content-length") or 0) > MAX_FORM_BYTES:
            return PlainTextResponse("form too large", status_code=413)
        form = await request.form()
        target = safe_next(form.get("next"))
        try:
            cookie, _actor = await run_in_threadpool(
                get_studio().login,
                str(form.get("email") or "")[:320],
                str(form.get("password") or "")[:1024],
                client_ip=client_ip(request),
                replaces=request.cookies.get(SESSION_COOKIE),
            )
        except Forbidden as exc:
            code = "throttled" if "try again" in str(exc) else "invalid"
            return RedirectResponse(f"/login?error={code}", status_code=303)
        response = RedirectResponse(target, status_code=303)
        _set_cookie(response, cookie, settings)
        return response

    async def logout(request: Request) -> Response:
        if not _same_origin(request):
            return PlainTextResponse("cross-site sign-out refused", status_code=403)
        if cookie := request.cookies.get(SESSION_COOKIE):
            await run_in_threadpool(get_studio().logout, cookie)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    routes: list[BaseRoute] = [
        Route("/auth/login", login, methods=["POST"]),
        Route("/auth/logout", logout, methods=["POST"]),
    ]
    if settings.oidc_providers:
        routes += _oidc(get_studio, settings)
    return routes


def _oidc(get_studio: Callable[[], Studio], settings: Settings) -> list[BaseRoute]:
    def on_login(identity: VerifiedIdentity, request: Request) -> Response:
        studio = get_studio()
        user_id = link_or_find(studio.sessions, identity)
        if user_id is None:
            raise Forbidden("no account is linked to this login; ask an administrator")
        workspace_id = studio.first_workspace(user_id)
        if workspace_id is None:
            raise Forbidden("your account is not a member of any workspace yet")
        cookie, _ = studio.start_web_session(
            user_id, workspace_id, replaces=request.cookies.get(SESSION_COOKIE)
        )
        response = RedirectResponse("/", status_code=303)
        _set_cookie(response, cookie, settings)
        return response

    oauth = build_oauth(settings.oidc_providers, resolve_secret=env_secrets)
    return list(oidc_routes(oauth, settings.oidc_providers, on_login, base_url=settings.public_url))
