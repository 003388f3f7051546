"""Who is acting, and who may: every service function takes an `Actor`, scopes by its
workspace, and asks an `Authorizer` before acting.

`graphs` does not know roles: the studio passes its RBAC (Casbin) as the authorizer. The
headless runtime, which serves one local user, uses `LocalAuthorizer`.
"""

from __future__ import annotations

__all__ = ["Actor", "Authorizer", "LocalAuthorizer"]

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Actor:
    workspace_id: str
    user_id: str


class Authorizer(Protocol):
    """Raises `Forbidden` (with the reason) unless `actor` may do `action` in its workspace."""

    def require(self, actor: Actor, action: str) -> None: ...


class LocalAuthorizer:
    """Headless use: the local user may do everything in their own workspace.

    Separation of duties for admin-tier approvals still applies (see graphs.approvals).
    """

    def require(self, actor: Actor, action: str) -> None:
        return None
