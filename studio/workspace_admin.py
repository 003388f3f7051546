"""Workspace administration as service functions: members, API tokens, secrets, tool-tier
policy and the audit log — for the admin pages (and any other caller acting as a person).

Each function takes the acting identity, authorizes the action through the studio's one
authorizer (a non-member gets "not found", a member without the role "forbidden") and acts
in the actor's own workspace only: an object of another workspace is "not found". Changes
are audited. The CLI (`studio.admin`) shares the rules that live here: the last enabled
admin of a workspace keeps the role, and how a token's status is told.
"""

from __future__ import annotations

__all__ = [
    "MAX_EXPIRES_DAYS",
    "AuditRow",
    "ChainStatus",
    "MemberView",
    "TokenRow",
    "ToolPolicy",
    "audit_chain",
    "audit_entries",
    "change_member",
    "create_token",
    "delete_secret",
    "list_members",
    "list_secrets",
    "list_tokens",
    "raise_tool_floor",
    "remove_member",
    "revoke_token",
    "set_member_role",
    "set_secret",
    "token_actions_for",
    "token_status",
    "tool_policies",
]

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from auth.actions import ACTIONS, ROLE_NAMES
from auth.audit import AUDIT_ACTIONS, MAX_PAGE, AuditRecord
from auth.rbac import LastAdmin
from auth.tokens import TokenView
from auth.vault import SecretInfo
from components.base import TIERS, Tier
from components.errors import NotFound, UserError
from graphs.identity import Actor
from studio.context import Studio

MAX_EXPIRES_DAYS = 3650
TOOL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")  # as graph documents name tools


def _require(studio: Studio, actor: Actor, action: str) -> None:
    studio.manager.authz.require(actor, action)


def _may(studio: Studio, actor: Actor, action: str) -> bool:
    return studio.rbac.authorize(actor, action).allowed


# --- members ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberView:
    user_id: str
    email: str
    display_name: str
    roles: tuple[str, ...]
    disabled: bool


def change_member(
    studio: Studio, workspace_id: str, user_id: str, email: str, role: str | None
) -> set[str]:
    """Make `role` the member's only role (None: remove them); returns the roles held before.

    The workspace's last enabled admin keeps the role: the check and the change are one
    transaction (`Rbac.set_member`), so two changes at once, in any processes, cannot each
    take it from one of the last two admins.
    """
    try:
        return studio.rbac.set_member(
            workspace_id, user_id, role, counts_as_admin=lambda other: _enabled(studio, other)
        )
    except LastAdmin:
        raise UserError(
            f"{email} is the last admin of workspace {workspace_id!r}: make another member an "
            "admin first"
        ) from None


def _enabled(studio: Studio, user_id: str) -> bool:
    try:
        return studio.accounts.get_user(user_id).disabled_at is None
    except NotFound:
        return False


def _member(studio: Studio, user_id: str, roles: set[str]) -> MemberView:
    try:
        user = studio.accounts.get_user(user_id)
    except NotFound:
        return MemberView(user_id, "", "", tuple(sorted(roles)), False)
    return MemberView(
        user_id, user.email, user.display_name, tuple(sorted(roles)), user.disabled_at is not None
    )


def list_members(studio: Studio, actor: Actor) -> list[MemberView]:
    _require(studio, actor, "member:manage")
    members = studio.rbac.members(actor.workspace_id)
    rows = [_member(studio, user_id, roles) for user_id, roles in members.items()]
    return sorted(rows, key=lambda m: m.email or m.user_id)


def set_member_role(studio: Studio, actor: Actor, email: str, role: str) -> MemberView:
    """Add a member by e-mail with `role`, or change their role (to exactly that one)."""
    _require(studio, actor, "member:manage")
    if role not in ROLE_NAMES:
        raise UserError(f"unknown role {role!r}; choose one of {', '.join(ROLE_NAMES)}")
    user = studio.accounts.get_user_by_email(email)
    if user.disabled_at is not None:
        raise UserError(f"user {user.email!r} is disabled")
    workspace_id = actor.workspace_id
    held = change_member(studio, workspace_id, user.user_id, user.email, role)
    if held == {role}:
        return _member(studio, user.user_id, held)
    details: dict[str, Any] = {"email": user.email, "role": role}
    if held:
        details["previous"] = sorted(held)
    studio.audit.record(
        "member.role_changed" if held else "member.added",
        actor=actor.user_id,
        workspace_id=workspace_id,
        target=user.user_id,
        details=details,
    )
    return _member(studio, user.user_id, {role})


def remove_member(studio: Studio, actor: Actor, user_id: str) -> int:
    """Remove a member (every role) and revoke their tokens here; returns how many tokens."""
    _require(studio, actor, "member:manage")
    workspace_id = actor.workspace_id
    if not studio.rbac.roles_of(workspace_id, user_id):
        raise NotFound(f"member {user_id!r} not found")
    email = _member(studio, user_id, set()).email or user_id
    held = change_member(studio, workspace_id, user_id, email, None)
    if not held:
        raise NotFound(f"member {user_id!r} not found")  # removed a moment ago
    revoked = studio.tokens.revoke_owner_tokens(user_id, workspace_id=workspace_id)
    studio.audit.record(
        "member.removed",
        actor=actor.user_id,
        workspace_id=workspace_id,
        target=user_id,
        details={"email": email, "roles": sorted(held), "tokens_revoked": revoked},
    )
    return revoked


# --- API tokens ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenRow:
    token: TokenView
    owner: str  # e-mail
    status: str  # active | expired | revoked


def token_status(view: TokenView, now: datetime | None = None) -> str:
    if view.revoked_at is not None:
        return "revoked"
    expires = view.expires_at
    if expires is not None:
        expires = expires.replace(tzinfo=UTC) if expires.tzinfo is None else expires
        if expires <= (now or datetime.now(UTC)):
            return "expired"
    return "active"


def token_actions_for(studio: Studio, actor: Actor) -> list[str]:
    """The actions a new token of the actor may carry: what their role allows now."""
    _require(studio, actor, "token:manage")
    return [name for name in ACTIONS if _may(studio, actor, name)]


def list_tokens(studio: Studio, actor: Actor) -> list[TokenRow]:
    """The actor's own tokens; every member's with `member:manage`. Never a value."""
    _require(studio, actor, "token:manage")
    views = studio.tokens.list_tokens(actor, all_owners=_may(studio, actor, "member:manage"))
    owners: dict[str, str] = {}
    rows = []
    for view in views:
        if view.user_id not in owners:
            owners[view.user_id] = _member(studio, view.user_id, set()).email or view.user_id
        rows.append(TokenRow(view, owners[view.user_id], token_status(view)))
    return rows


def create_token(
    studio: Studio,
    actor: Actor,
    *,
    name: str,
    actions: list[str],
    expires_days: int | None = None,
) -> tuple[str, TokenView]:
    """A new token of the actor's own; returns (value, view): the value exists only here."""
    allowed = set(token_actions_for(studio, actor))
    unknown = sorted(set(actions) - ACTIONS.keys())
    if unknown:
        raise UserError(f"unknown action(s) {', '.join(map(repr, unknown))}")
    beyond = sorted(set(actions) - allowed)
    if beyond:
        raise UserError(f"your role does not allow {', '.join(beyond)}; leave them out")
    expires_in = None
    if expires_days is not None:
        if not 0 < expires_days <= MAX_EXPIRES_DAYS:
            raise UserError(f"a token expires after 1 to {MAX_EXPIRES_DAYS} days (or never)")
        expires_in = timedelta(days=expires_days)
    value, view = studio.tokens.create_token(
        actor, name=name, actions=list(actions), expires_in=expires_in
    )
    studio.audit.record(
        "token.created",
        actor=actor.user_id,
        workspace_id=actor.workspace_id,
        target=view.token_id,
        details={
            "name": view.name,
            "owner": view.user_id,
            "actions": list(view.actions),
            "expires_at": view.expires_at.isoformat() if view.expires_at else None,
        },
    )
    return value, view


def revoke_token(studio: Studio, actor: Actor, token_id: str) -> TokenView:
    """Revoke at once: one's own token, or anyone's with `member:manage`. Idempotent."""
    _require(studio, actor, "token:manage")
    any_owner = _may(studio, actor, "member:manage")
    mine = studio.tokens.list_tokens(actor, all_owners=any_owner)
    before = next((t for t in mine if t.token_id == token_id), None)
    view = studio.tokens.revoke_token(actor, token_id, any_owner=any_owner)
    if before is not None and before.revoked_at is None:
        studio.audit.record(
            "token.revoked",
            actor=actor.user_id,
            workspace_id=actor.workspace_id,
            target=view.token_id,
            details={"name": view.name, "owner": view.user_id},
        )
    return view


# --- secrets ---------------------------------------------------------------------------


def list_secrets(studio: Studio, actor: Actor) -> list[SecretInfo]:
    """Names and dates only: a value never leaves the vault for a page."""
    _require(studio, actor, "secret:manage")
    return studio.vault.list_secrets(actor)


def set_secret(studio: Studio, actor: Actor, name: str, value: str) -> SecretInfo:
    """Create or replace a secret (the vault audits it, by name)."""
    _require(studio, actor, "secret:manage")
    return studio.vault.set_secret(actor, name.strip(), value)


def delete_secret(studio: Studio, actor: Actor, name: str) -> None:
    _require(studio, actor, "secret:manage")
    studio.vault.delete_secret(actor, name)


# --- workspace policy ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolPolicy:
    tool_name: str
    floor: Tier  # the workspace's floor ("free": none)
    graphs: tuple[tuple[str, str], ...]  # (graph name, tier the graph declares)

    @property
    def raisable(self) -> tuple[Tier, ...]:
        """Tiers a floor may be raised to: above the floor and above what graphs declare."""
        declared = [t for _, t in self.graphs if t in TIERS]
        lowest = min([TIERS.index(t) for t in declared], default=0)
        start = max(TIERS.index(self.floor), lowest) + 1
        return TIERS[start:]


def tool_policies(studio: Studio, actor: Actor) -> list[ToolPolicy]:
    """Every tool the workspace's graphs declare (newest version each) and every floor set."""
    _require(studio, actor, "policy:manage")
    floors = studio.rbac.tool_floors(actor.workspace_id)
    library = studio.manager.library
    used: dict[str, list[tuple[str, str]]] = {name: [] for name in floors}
    for graph in library.list(actor):
        document = library.head(actor, graph.graph_id).document
        for tool in document.tools:
            used.setdefault(tool.name, []).append((graph.name, tool.tier or "free"))
    return [
        ToolPolicy(name, floors.get(name, "free"), tuple(sorted(used[name])))
        for name in sorted(used)
    ]


def raise_tool_floor(studio: Studio, actor: Actor, tool_name: str, tier: str) -> Tier:
    """Raise a tool's approval tier in the workspace; lowering (or no change) is refused."""
    _require(studio, actor, "policy:manage")
    if tier not in TIERS:
        raise UserError(f"unknown tier {tier!r}; choose one of {', '.join(TIERS)}")
    name = tool_name.strip()
    if not TOOL_NAME.fullmatch(name):
        raise UserError(
            f"{tool_name[:80]!r} is not a tool name: a letter, then letters, digits or _"
        )
    current = studio.rbac.tool_floor(actor.workspace_id, name)
    if TIERS.index(tier) <= TIERS.index(current):
        raise UserError(
            f"tool {name!r} already needs {current!r} here; workspace policy only raises tiers"
        )
    done = studio.rbac.set_tool_floor(actor.workspace_id, name, tier)
    studio.audit.record(
        "policy.tier_raised",
        actor=actor.user_id,
        workspace_id=actor.workspace_id,
        target=name,
        details={"from": current, "to": done},
    )
    return done


# --- audit log -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditRow:
    entry: AuditRecord
    actor_email: str  # the actor's e-mail, or the actor as recorded ("system", an id)


@dataclass(frozen=True, slots=True)
class ChainStatus:
    ok: bool
    message: str


def audit_entries(
    studio: Studio,
    actor: Actor,
    *,
    action: str | None = None,
    by_email: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_seq: int = 0,
    limit: int = 50,
) -> list[AuditRow]:
    """The workspace's entries, newest first, filtered; page with the last seq shown."""
    _require(studio, actor, "audit:read")
    if action is not None and action not in AUDIT_ACTIONS:
        raise UserError(f"unknown audit action {action!r}")
    by = None
    if by_email:
        try:
            by = studio.accounts.get_user_by_email(by_email).user_id
        except NotFound:
            by = by_email.strip()  # e.g. "system", or an id
    entries = studio.audit.entries(
        actor,
        action=action,
        by=by,
        since=since,
        until=until,
        before_seq=before_seq,
        limit=max(1, min(limit, MAX_PAGE)),
    )
    emails: dict[str, str] = {}
    for entry in entries:
        if entry.actor not in emails:
            emails[entry.actor] = _member(studio, entry.actor, set()).email or entry.actor
    return [AuditRow(entry, emails[entry.actor]) for entry in entries]


def audit_chain(studio: Studio, actor: Actor) -> ChainStatus:
    """Whether the hash chain verifies. The chain spans every workspace, so positions and
    counts (which would tell about other workspaces) are left to the operator's CLI."""
    _require(studio, actor, "audit:read")
    result = studio.audit.verify()
    if result.ok:
        return ChainStatus(True, "The audit log's hash chain is intact.")
    return ChainStatus(
        False,
        "The audit log's hash chain is BROKEN: an entry was changed, removed or inserted. "
        "Ask the studio operator to run `studio audit verify`.",
    )
