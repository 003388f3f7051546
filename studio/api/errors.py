"""The one place where errors become HTTP responses: RFC 9457 problem documents.

Every `StudioError` maps to a status by its class (`STATUS`); request validation, unknown
routes and anything unexpected get a problem document too. A response never carries a stack
trace, and every text in it passes the studio's redactor, so no secret value leaves.
"""

from __future__ import annotations

__all__ = [
    "PROBLEM_TYPE",
    "STATUS",
    "NotAuthenticated",
    "TooLarge",
    "Unavailable",
    "install_error_handlers",
    "problem_response",
    "status_for",
    "studio_problem",
]

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from auth.redact import redact_payload
from components.errors import (
    Conflict,
    Forbidden,
    GraphInvalid,
    NotFound,
    RunFailure,
    StudioError,
    UserError,
)

log = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"


class NotAuthenticated(StudioError):
    """No API token, or one that is not (or no longer) valid."""


class TooLarge(UserError):
    """A request body over the API's size limit."""


class Unavailable(StudioError):
    """The server is at a limit (e.g. open event streams); try again later."""


# First match wins: subclasses before their parents.
STATUS: tuple[tuple[type[StudioError], int, str], ...] = (
    (NotAuthenticated, 401, "Not authenticated"),
    (NotFound, 404, "Not found"),
    (Forbidden, 403, "Forbidden"),
    (Conflict, 409, "Conflict"),
    (TooLarge, 413, "Content too large"),
    (GraphInvalid, 422, "Invalid graph document"),
    (UserError, 422, "Invalid request"),
    (Unavailable, 503, "Unavailable"),
    (RunFailure, 500, "Run failure"),
    (StudioError, 400, "Bad request"),
)


def status_for(exc: StudioError) -> tuple[int, str]:
    for cls, status, title in STATUS:
        if isinstance(exc, cls):
            return status, title
    return 400, "Bad request"  # unreachable: StudioError is the last row


def _redact(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    try:
        redactor = request.app.state.get_studio().redactor
    except Exception:  # no studio (yet): nothing registered to hide
        return body
    redacted: dict[str, Any] = redact_payload(redactor, body)
    return redacted


def problem_response(
    request: Request,
    status: int,
    title: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem document (`type`, `title`, `status`, `detail` and any `extra` members)."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    all_headers = dict(headers or {})
    if status == 401:
        all_headers.setdefault("WWW-Authenticate", 'Bearer realm="agent-studio"')
    return JSONResponse(
        _redact(request, body), status_code=status, headers=all_headers, media_type=PROBLEM_TYPE
    )


def studio_problem(request: Request, exc: StudioError, **extra: Any) -> JSONResponse:
    status, title = status_for(exc)
    if isinstance(exc, GraphInvalid):
        extra.setdefault(
            "problems",
            [
                {"where": p.where, "message": p.message, "node_id": p.node_id, "edge_id": p.edge_id}
                for p in exc.problems
            ],
        )
    headers = {"Retry-After": "5"} if status == 503 else None
    return problem_response(request, status, title, str(exc), headers=headers, **extra)


async def _on_studio_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StudioError)
    return studio_problem(request, exc)


def _validation_item(error: Mapping[str, Any]) -> dict[str, Any]:
    # no `input` or `ctx`: they would echo what the client sent, secrets included
    return {"loc": [str(part) for part in error.get("loc", ())], "message": error.get("msg", "")}


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_validation_item(e) for e in exc.errors()]
    shown = "; ".join(f"{'.'.join(e['loc'])}: {e['message']}" for e in errors[:5])
    return problem_response(
        request, 422, "Invalid request", shown or "invalid request", errors=errors
    )


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else "request refused"
    title = {404: "Not found", 405: "Method not allowed", 413: "Content too large"}
    headers = dict(exc.headers or {})
    if exc.status_code == 405:  # every method of the path (Starlette names one route's)
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return problem_response(
        request,
        exc.status_code,
        title.get(exc.status_code, "HTTP error"),
        detail,
        headers=headers,
    )


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("API %s %s failed", request.method, request.url.path, exc_info=exc)
    return problem_response(
        request, 500, "Internal error", "the server failed; the error is in its log"
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StudioError, _on_studio_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
