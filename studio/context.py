"""The studio's one context: engine, identity, RBAC, vault, audit and the run manager.

`open_studio()` builds it at start-up (nothing heavy happens at import time). Every
service the runtime exposes is authorized here: `StudioAuthorizer` asks Casbin RBAC — and,
for API tokens, the token's scopes too — before any graph, run or approval service acts.
The local workspace is the machine operator's: whoever can run the `studio` command on the
database owns it, so it is not role-checked (admin-tier calls still need a second person).
"""

from __future__ import annotations

__all__ = ["LOCAL_WORKSPACE", "Studio", "StudioAuthority", "StudioAuthorizer", "open_studio"]

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from analytics.budgets import Budgets
from analytics.db import migrate as migrate_analytics
from analytics.meter import SqlMeter
from auth.accounts import Accounts
from auth.audit import AuditLog
from auth.db import migrate as migrate_auth
from auth.rbac import Rbac, RbacApprovalAuthority
from auth.redact import Redactor, install_log_redaction, redact_payload
from auth.sessions import WebSessions
from auth.tokens import ApiTokens
from auth.vault import Vault, key_file_for, load_keyring
from components.base import HttpPolicy, SecretResolver
from components.errors import Forbidden, NotFound, StudioError
from components.registry import default_registry
from graphs.approvals import ApprovalView, SeparationOfDuties
from graphs.db import make_engine
from graphs.db import migrate as migrate_graphs
from graphs.headless import LOCAL_WORKSPACE, checkpoint_path_for, signing_key_for
from graphs.identity import Actor
from graphs.outbox import OutboxDispatcher, SmtpSettings
from graphs.runs import RunManager, env_secrets
from studio.settings import Settings


class StudioAuthorizer:
    """RBAC for every workspace but the operator's local one; tokens are also held to
    their scopes."""

    def __init__(self, rbac: Rbac) -> None:
        self._rbac = rbac

    def require(self, actor: Actor, action: str) -> None:
        if actor.scopes is not None and action not in actor.scopes:
            raise Forbidden(f"this API token is not allowed {action!r}")
        if actor.workspace_id == LOCAL_WORKSPACE and actor.scopes is None:
            return
        decision = self._rbac.authorize(actor, action)
        if decision.allowed:
            return
        if not self._rbac.roles_of(actor.workspace_id, actor.user_id):
            raise NotFound(f"workspace {actor.workspace_id!r} not found")  # no hint to outsiders
        raise Forbidden(decision.reason)


class StudioAuthority:
    """Who may decide an approval: separation of duties locally, RBAC elsewhere, and a
    token only with the matching decide scope."""

    def __init__(self, rbac: Rbac) -> None:
        self._rbac = RbacApprovalAuthority(rbac)
        self._local = SeparationOfDuties()

    def refusal(self, actor: Actor, approval: ApprovalView) -> str | None:
        if actor.scopes is not None:
            needed = f"approval:decide:{approval.tier}"
            if needed not in actor.scopes:
                return f"this API token does not carry {needed!r}"
        if actor.workspace_id == LOCAL_WORKSPACE and actor.scopes is None:
            return self._local.refusal(actor, approval)
        return self._rbac.refusal(actor, approval)


class StudioApprovers:
    """The approval timeouts' directory: the e-mail of every active member of the workspace
    who may decide a `tier` call (for ``admin``: not the run's starter)."""

    def __init__(self, rbac: Rbac, accounts: Accounts) -> None:
        self._rbac = rbac
        self._accounts = accounts

    def emails(self, workspace_id: str, tier: str, starter: str) -> list[str]:
        found = []
        for user_id in sorted(self._rbac.members(workspace_id)):
            if tier == "admin" and user_id == starter:
                continue
            actor = Actor(workspace_id, user_id)
            if not self._rbac.authorize(actor, f"approval:decide:{tier}").allowed:
                continue
            try:
                user = self._accounts.get_user(user_id)
            except NotFound:
                continue
            if user.disabled_at is None:
                found.append(user.email)
        return found


@dataclass(frozen=True, slots=True)
class Studio:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    manager: RunManager
    rbac: Rbac
    vault: Vault
    audit: AuditLog
    accounts: Accounts
    web_sessions: WebSessions
    tokens: ApiTokens
    redactor: Redactor
    meter: SqlMeter
    budgets: Budgets

    def disable_user(self, user_id: str, *, by: str = "system") -> None:
        """Disable an account at once: no login, sessions ended, tokens revoked, roles
        removed in every workspace — so a paused run they started fails closed at its next
        side effect, and they decide nothing."""
        self.accounts.disable_user(user_id)
        workspaces = self.rbac.forget_user(user_id)
        self.tokens.revoke_owner_tokens(user_id)
        targets: list[str | None] = [*sorted(workspaces)] or [None]
        for workspace_id in targets:
            self.audit.record("user.disabled", actor=by, workspace_id=workspace_id, target=user_id)

    def login(
        self,
        email: str,
        password: str,
        *,
        workspace_id: str | None = None,
        client_ip: str,
        replaces: str | None = None,
    ) -> tuple[str, Actor]:
        """Sign in with a password into a workspace the user belongs to (default: the
        first of theirs by id): a new session id every time (the old cookie ends), audited
        either way. Returns (cookie, actor)."""
        try:
            user = self.accounts.authenticate(email, password, client_ip=client_ip)
            workspace_id = workspace_id or self.first_workspace(user.user_id)
            if not workspace_id or not self.rbac.roles_of(workspace_id, user.user_id):
                raise Forbidden("e-mail or password is wrong")  # no hint about workspaces
        except StudioError as exc:
            self.audit.record(
                "login_failed",
                actor="anonymous",
                workspace_id=None,
                target=email.strip().lower()[:254],
                details={"reason": str(exc)},
            )
            raise
        return self.start_web_session(user.user_id, workspace_id, replaces=replaces)

    def start_web_session(
        self, user_id: str, workspace_id: str, *, replaces: str | None = None
    ) -> tuple[str, Actor]:
        """A signed-in user's new web session (a new id; `replaces` ends the old one),
        audited as a login. Returns (cookie, actor)."""
        cookie, session = self.web_sessions.start_session(user_id, workspace_id, replaces=replaces)
        self.audit.record("login", actor=user_id, workspace_id=workspace_id, target=user_id)
        return cookie, Actor(session.workspace_id, session.user_id)

    def first_workspace(self, user_id: str) -> str | None:
        """The workspace a sign-in lands in: the first of the user's by id."""
        return min(self.rbac.workspaces_of(user_id), default=None)

    def logout(self, cookie: str) -> None:
        try:
            session = self.web_sessions.resolve_session(cookie)
        except NotFound:
            return
        self.web_sessions.end_session(cookie)
        self.audit.record(
            "logout",
            actor=session.user_id,
            workspace_id=session.workspace_id,
            target=session.user_id,
        )

    def session_actor(self, cookie: str) -> Actor:
        """The acting identity of a web session cookie (NotFound when it is not live)."""
        session = self.web_sessions.resolve_session(cookie)
        return Actor(session.workspace_id, session.user_id)

    def switch_workspace(self, cookie: str, workspace_id: str) -> Actor:
        """Make another of the user's workspaces current for this web session; a workspace
        they are not a member of is "not found"."""
        session = self.web_sessions.resolve_session(cookie)
        if not self.rbac.roles_of(workspace_id, session.user_id):
            raise NotFound(f"workspace {workspace_id!r} not found")
        session = self.web_sessions.switch_workspace(cookie, workspace_id)
        return Actor(session.workspace_id, session.user_id)

    def token_actor(self, token: str) -> Actor:
        """The acting identity of an API token (its workspace, never the request's)."""
        principal = self.tokens.verify_token(token)
        return Actor(principal.workspace_id, principal.user_id, frozenset(principal.actions))


def _secrets_for(vault: Vault) -> Any:
    def resolver_for(workspace_id: str) -> SecretResolver:
        from_vault = vault.resolver(workspace_id)

        def resolve(name: str) -> str:
            try:
                return from_vault(name)
            except NotFound:
                if workspace_id == LOCAL_WORKSPACE:  # the operator may also use the env
                    return env_secrets(name)
                raise

        return resolve

    return resolver_for


def _audit_hook(audit: AuditLog) -> Any:
    def record(actor: Actor, action: str, target: str, details: Mapping[str, Any]) -> None:
        audit.record(
            action,
            actor=actor.user_id,
            workspace_id=actor.workspace_id,
            target=target,
            details=dict(details),
        )

    return record


@contextmanager
def open_studio(
    settings: Settings | None = None,
    *,
    db_path: Path | None = None,
    http: HttpPolicy | None = None,
    smtp: SmtpSettings | None = None,
    resume: bool = True,
    **manager_options: Any,
) -> Iterator[Studio]:
    """Open the studio on its database (creating and migrating it when needed)."""
    settings = settings or Settings()
    path = db_path or settings.db_path
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{path}")
    migrate_graphs(engine)
    migrate_auth(engine)
    migrate_analytics(engine)
    sessions = sessionmaker(engine, expire_on_commit=False)
    redactor = Redactor()
    uninstall = install_log_redaction(redactor)
    audit = AuditLog(sessions, redactor=redactor)
    rbac = Rbac(engine)
    rbac.sync_role_templates()
    vault = Vault(
        sessions,
        load_keyring(key_file_for(path)),
        redactor=redactor,
        on_use=lambda ws, name: audit.record(
            "secret.used", actor="system", workspace_id=ws, target=name
        ),
        on_change=lambda actor, action, name: audit.record(
            action, actor=actor.user_id, workspace_id=actor.workspace_id, target=name
        ),
    )
    vault.register_all()
    policy = http or HttpPolicy(allow_hosts=settings.allow_hosts())
    outbox = OutboxDispatcher(
        engine, smtp=smtp or settings.smtp(), http=policy, signing_key=signing_key_for(path)
    )
    meter = SqlMeter(engine)
    manager = RunManager(
        engine,
        checkpoint_path_for(path),
        default_registry(),
        max_concurrency=manager_options.pop("max_concurrency", settings.max_concurrency),
        lease_ttl_s=manager_options.pop("lease_ttl_s", settings.lease_ttl_s),
        secrets=_secrets_for(vault),
        http=policy,
        tier_floor=rbac.tool_floor,
        authority=StudioAuthority(rbac),
        authorizer=StudioAuthorizer(rbac),
        outbox=outbox,
        audit=_audit_hook(audit),
        redact=lambda value: redact_payload(redactor, value),
        meter=meter,
        **manager_options,
    )
    studio = Studio(
        settings=settings,
        engine=engine,
        sessions=sessions,
        manager=manager,
        rbac=rbac,
        vault=vault,
        audit=audit,
        accounts=Accounts(sessions),
        web_sessions=WebSessions(sessions),
        tokens=ApiTokens(sessions),
        redactor=redactor,
        meter=meter,
        budgets=Budgets(
            engine,
            StudioAuthorizer(rbac),
            on_change=meter.invalidate,
            audit=_audit_hook(audit),
        ),
    )
    manager.timeouts.approvers = StudioApprovers(rbac, studio.accounts)
    if resume:
        manager.start()
    try:
        yield studio
    finally:
        manager.close()
        uninstall()
        engine.dispose()
