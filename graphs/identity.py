"""Who is acting, and who may: every service function takes an `Actor`, scopes by its
workspace, and asks an `Authorizer` before acting.

`graphs` does not know roles: the studio passes its RBAC (Casbin) as the authorizer. The
headless runtime, which serves one local user, uses `LocalAuthorizer`.
"""

from __future__ import annotations

__all__ = [
    "Actor",
    "AuditHook",
    "Authorizer",
    "LocalAuthorizer",
    "Redact",
    "no_audit",
    "no_redaction",
]

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts, in which workspace. `scopes` is set when acting through an API token: the
    token never does more than both its scopes and its owner's current role allow."""

    workspace_id: str
    user_id: str
    scopes: frozenset[str] | None = None


AuditHook = Callable[[Actor, str, str, Mapping[str, Any]], None]
"""(actor, action, target, details) → records an audit entry."""
Redact = Callable[[Any], Any]
"""Returns its argument with every known secret value replaced (identity when none)."""


def no_audit(_actor: Actor, _action: str, _target: str, _details: Mapping[str, Any]) -> None:
    return None


def no_redaction(value: Any) -> Any:
    return value


class Authorizer(Protocol):
    """Raises `Forbidden` (with the reason) unless `actor` may do `action` in its workspace."""

    def require(self, actor: Actor, action: str) -> None: ...


class LocalAuthorizer:
    """Headless use: the local user may do everything in their own workspace.

    Separation of duties for admin-tier approvals still applies (see graphs.approvals).
    """

    def require(self, actor: Actor, action: str) -> None:
        return None
