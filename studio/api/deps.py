"""Request dependencies: the studio, and the acting identity of the bearer token.

The actor's workspace is the token's, never one named by the request. A missing, malformed,
unknown, expired or revoked token is a 401 with the same message for every case.
"""

from __future__ import annotations

__all__ = [
    "ActorDep",
    "StudioDep",
    "api_path",
    "bearer",
    "get_actor",
    "get_studio",
    "reverify",
    "safe",
]

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from auth.redact import redact_payload
from auth.tokens import REJECTED
from components.errors import NotFound
from graphs.identity import Actor
from studio.api.errors import NotAuthenticated
from studio.context import Studio

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiToken",
    description="An API token of the workspace: `Authorization: Bearer sk_...`.",
)


def get_studio(request: Request) -> Studio:
    studio: Studio = request.app.state.get_studio()
    return studio


def get_actor(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Actor:
    """Sync on purpose: FastAPI runs it in its thread pool (the look-up is a query)."""
    if credentials is None or not credentials.credentials:
        raise NotAuthenticated("send an API token: 'Authorization: Bearer <token>'")
    token = credentials.credentials
    actor = reverify(get_studio(request), token)
    request.state.api_token = token  # long event streams check it again now and then
    return actor


def reverify(studio: Studio, token: str) -> Actor:
    """The token's actor now (401 when it was revoked or expired meanwhile)."""
    try:
        return studio.token_actor(token)
    except NotFound:
        raise NotAuthenticated(REJECTED) from None


StudioDep = Annotated[Studio, Depends(get_studio)]
ActorDep = Annotated[Actor, Depends(get_actor)]


def api_path(request: Request, *parts: str) -> str:
    """A path under the API's mount point (`/api/runs/...` when mounted at `/api`)."""
    root = str(request.scope.get("root_path", "")).rstrip("/")
    return root + "/" + "/".join(parts)


def safe(studio: Studio, value: object) -> object:
    """`value` with every known secret value replaced (a last guard before a response)."""
    return redact_payload(studio.redactor, value)
