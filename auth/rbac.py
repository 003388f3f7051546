"""Casbin RBAC with domains (workspace = domain): the one `authorize()` entry point.

Policy, in the ``casbin_rule`` table through `sqlalchemy_adapter`:

- role templates, one ``p`` line per (role, action) in the template domain ``*`` (written
  from `auth.actions` by `Rbac.sync_role_templates()`), and
- one ``g`` line per (user, role, workspace): ``g, alice, role:editor, acme``.

Roles are stored as ``role:<name>`` and user ids may not start with ``role:`` (Casbin's
``g()`` treats equal names as linked, so a user called ``admin`` must never meet a role
called ``admin``).

Speed (pycasbin evaluates the matcher once per policy line, see shared/NOTES.md): one
enforcer per workspace holding only the templates and that workspace's ``g`` lines, loaded on
first use by one indexed query, and a decision cache per workspace. Every change made through
`Rbac` bumps a policy version in the same transaction and drops the workspace's enforcer and
decisions before returning, so the very next decision is right. Changes made by another
process (the CLI) are picked up by a poll of the version table at most every
``poll_interval_s``; `refresh()` (and ``authorize(..., fresh=True)``, which the approval
authority uses) checks at once.
"""

from __future__ import annotations

__all__ = [
    "MODEL",
    "ApprovalLike",
    "CasbinRule",
    "Decision",
    "LastAdmin",
    "PolicyVersion",
    "Rbac",
    "RbacApprovalAuthority",
    "Resource",
    "WorkspaceToolTier",
    "create_tables",
]

import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import casbin
from sqlalchemy import (
    Connection,
    Engine,
    Index,
    Integer,
    String,
    and_,
    delete,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy_adapter import Adapter

from auth.actions import ACTIONS, ROLE_NAMES, Action, role_actions
from auth.base import ActorLike, Base
from components.base import TIERS, Tier
from components.errors import Forbidden, NotFound, UserError
from components.expressions import PARSE_LOCK

MODEL = """
[request_definition]
r = sub, dom, obj, act

[policy_definition]
p = sub, dom, obj, act

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = r.act == p.act && r.obj == p.obj && (p.dom == "*" || p.dom == r.dom) \
&& g(r.sub, p.sub, r.dom)
"""
TEMPLATES = "*"
ROLE_PREFIX = "role:"
_GLOBAL = "@global"
_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+:=-]{0,254}")


class CasbinRule(Base):
    """Casbin's policy lines (the layout `sqlalchemy_adapter` expects), on our own base."""

    __tablename__ = "casbin_rule"
    __table_args__ = (
        Index("ix_casbin_rule_domain", "ptype", "v2", "v0", "v1"),
        Index("ix_casbin_rule_template", "ptype", "v1"),
        Index("ix_casbin_rule_subject", "ptype", "v0"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ptype: Mapped[str] = mapped_column(String(255))
    v0: Mapped[str | None] = mapped_column(String(255))
    v1: Mapped[str | None] = mapped_column(String(255))
    v2: Mapped[str | None] = mapped_column(String(255))
    v3: Mapped[str | None] = mapped_column(String(255))
    v4: Mapped[str | None] = mapped_column(String(255))
    v5: Mapped[str | None] = mapped_column(String(255))

    def __str__(self) -> str:  # the adapter's unfiltered load_policy parses this line
        values = (self.v0, self.v1, self.v2, self.v3, self.v4, self.v5)
        return ", ".join([self.ptype, *(v for v in values if v is not None)])


class PolicyVersion(Base):
    """A counter per scope (workspace id, ``*`` for templates, ``@global`` for the latest)."""

    __tablename__ = "rbac_policy_version"
    scope: Mapped[str] = mapped_column(String(255), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class WorkspaceToolTier(Base):
    """A workspace's floor for a tool's approval tier: it raises the graph's tier, never lowers."""

    __tablename__ = "workspace_tool_tier"
    workspace_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    tool_name: Mapped[str] = mapped_column(String(255), primary_key=True)
    tier: Mapped[str] = mapped_column(String(16))


def create_tables(engine: Engine) -> None:
    """Create this module's tables (tests; production uses the `auth` migrations)."""
    tables = [CasbinRule.__table__, PolicyVersion.__table__, WorkspaceToolTier.__table__]
    Base.metadata.create_all(engine, tables=tables)  # type: ignore[arg-type]


class ApprovalLike(Protocol):
    """What the authority reads of `graphs.approvals.ApprovalView`."""

    @property
    def tier(self) -> str: ...
    @property
    def run_started_by(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Resource:
    kind: str
    workspace_id: str
    object_id: str


NOT_FOUND = Decision(False, "not found")


def _valid_id(value: str) -> bool:
    return bool(_ID.fullmatch(value)) and not value.startswith(ROLE_PREFIX)


def _check_id(what: str, value: str) -> None:
    if not _valid_id(value):
        raise UserError(
            f"{what} {value!r} is not usable: use 1-255 letters, digits and _ . @ + : = - "
            f"(starting with a letter, digit or _, not with {ROLE_PREFIX!r})"
        )


def _check_role(role: str) -> None:
    if role not in ROLE_NAMES:
        raise UserError(f"unknown role {role!r}; choose one of {', '.join(ROLE_NAMES)}")


class LastAdmin(UserError):
    """A membership change that would leave a workspace without an admin."""


@dataclass(frozen=True, slots=True)
class _Domain:
    """The filter for one workspace: the templates and the workspace's own lines."""

    workspace_id: str


class _DomainAdapter(Adapter):  # type: ignore[misc]
    """`sqlalchemy_adapter.Adapter` with a fast filtered load for one domain.

    The stock filtered load is an AND over columns (templates and ``g`` lines of a domain
    need two calls), builds ORM objects and re-parses each line from a string (~10x slower).
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine, db_class=CasbinRule, filtered=True, create_table=False)

    def load_filtered_policy(self, model: Any, policy_filter: Any) -> None:
        if not isinstance(policy_filter, _Domain):
            super().load_filtered_policy(model, policy_filter)
            return
        workspace_id = policy_filter.workspace_id
        t = CasbinRule.__table__.c
        query = select(t.ptype, t.v0, t.v1, t.v2, t.v3).where(
            or_(
                and_(t.ptype == "p", t.v1.in_((TEMPLATES, workspace_id))),
                and_(t.ptype == "g", t.v2 == workspace_id),
            )
        )
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        p = dict.fromkeys((r.v0, r.v1, r.v2, r.v3) for r in rows if r.ptype == "p")
        g = dict.fromkeys((r.v0, r.v1, r.v2) for r in rows if r.ptype == "g")
        model.get_policy("p", "p").extend(list(rule) for rule in p)
        model.get_policy("g", "g").extend(list(rule) for rule in g)
        self._filtered = True


@dataclass(slots=True)
class _Workspace:
    """A loaded workspace: its enforcer, the versions it was loaded at, cached decisions."""

    versions: tuple[int, int]
    enforcer: Any
    decisions: dict[tuple[str, str], Decision] = field(default_factory=dict)


class Rbac:
    """Roles per workspace, and the decisions that follow from them.

    `poll_interval_s` bounds how long a change made by another process can go unseen
    (0: check on every decision). At most `max_workspaces` enforcers stay loaded (about
    160 KB each for 100 members), each caching at most `max_decisions` decisions; the cache
    of a workspace belongs to the policy version it was loaded at, so its keys are in effect
    (workspace, policy version, user, action).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        poll_interval_s: float = 0.1,
        max_workspaces: int = 1024,
        max_decisions: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._adapter = _DomainAdapter(engine)
        self._poll_interval = poll_interval_s
        self._max_workspaces = max_workspaces
        self._max_decisions = max_decisions
        self._clock = clock
        self._lock = threading.RLock()
        self._states: dict[str, _Workspace] = {}
        self._seen = -1
        self._next_poll = 0.0

    # --- decisions ------------------------------------------------------------------------
    def authorize(
        self,
        actor: ActorLike,
        action: str,
        resource: Resource | None = None,
        *,
        fresh: bool = False,
    ) -> Decision:
        """May `actor` do `action` (to `resource`)? Default deny, with the reason."""
        spec = ACTIONS.get(action)
        if spec is None:
            return Decision(False, f"unknown action {action!r}")
        workspace_id = actor.workspace_id
        if resource is not None:
            if resource.workspace_id != workspace_id:
                return NOT_FOUND
            if resource.kind != spec.kind:
                return Decision(False, f"{action!r} does not apply to a {resource.kind!r}")
        if fresh or self._clock() >= self._next_poll:
            self._poll(force=fresh)
        state = self._states.get(workspace_id)
        if state is not None:
            decision = state.decisions.get((actor.user_id, action))
            if decision is not None:
                return decision
        return self._decide(workspace_id, actor.user_id, spec)

    def require(self, actor: ActorLike, action: str, resource: Resource | None = None) -> None:
        """Raise `NotFound` for a foreign resource, `Forbidden` (with the reason) on deny."""
        decision = self.authorize(actor, action, resource)
        if decision.allowed:
            return
        if decision is NOT_FOUND and resource is not None:
            raise NotFound(f"{resource.kind} {resource.object_id!r} not found")
        raise Forbidden(decision.reason)

    def authorize_token(
        self,
        principal_workspace_id: str,
        principal_user_id: str,
        token_actions: frozenset[str],
        action: str,
        resource: Resource | None = None,
    ) -> Decision:
        """A token may do what is both in its scopes and allowed to its owner's role now."""
        if action not in ACTIONS:
            return Decision(False, f"unknown action {action!r}")
        if action not in token_actions:
            return Decision(False, f"the API token is not scoped for {action!r}")
        owner = _Principal(principal_workspace_id, principal_user_id)
        return self.authorize(owner, action, resource)

    def refresh(self) -> None:
        """Pick up policy changes made by other processes now."""
        self._poll(force=True)

    def _poll(self, *, force: bool) -> None:
        with self._lock:
            if not force and self._clock() < self._next_poll:
                return  # another thread polled while this one waited for the lock
            self._next_poll = self._clock() + self._poll_interval
            table = PolicyVersion.__table__.c
            with self._engine.connect() as conn:
                latest = conn.execute(
                    select(table.version).where(table.scope == _GLOBAL)
                ).scalar_one_or_none()
                if latest is None or latest == self._seen:
                    return
                changed = conn.execute(
                    select(table.scope, table.version).where(
                        table.version > self._seen, table.scope != _GLOBAL
                    )
                ).all()
            self._seen = latest
            for scope, version in changed:
                self._drop_if_older(scope, version)

    def _drop_if_older(self, scope: str, version: int) -> None:
        if scope == TEMPLATES:
            stale = [ws for ws, s in self._states.items() if s.versions[1] < version]
        else:
            state = self._states.get(scope)
            stale = [scope] if state is not None and state.versions[0] < version else []
        for workspace_id in stale:
            self._states.pop(workspace_id, None)

    def _decide(self, workspace_id: str, user_id: str, spec: Action) -> Decision:
        with self._lock:
            state = self._states.get(workspace_id)
            if state is None:
                state = self._load(workspace_id)
            key = (user_id, spec.name)
            decision = state.decisions.get(key)
            if decision is None:
                decision = self._enforce(state.enforcer, workspace_id, user_id, spec)
                if len(state.decisions) >= self._max_decisions:
                    state.decisions = {}
                state.decisions[key] = decision
            return decision

    def _load(self, workspace_id: str) -> _Workspace:
        # Versions first, lines second: a change committed in between makes the state look
        # older than it is (reloaded once more), never newer.
        table = PolicyVersion.__table__.c
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(table.scope, table.version).where(table.scope.in_((workspace_id, TEMPLATES)))
            ).all()
        versions = dict(rows)
        enforcer = casbin.Enforcer(casbin.Enforcer.new_model(text=MODEL), self._adapter)
        enforcer.enable_auto_save(False)
        if _valid_id(workspace_id):
            enforcer.load_filtered_policy(_Domain(workspace_id))
        # pycasbin's domain manager defaults to an equality "pattern" matcher that makes every
        # link scan every role (quadratic in members); plain names need no matcher at all.
        enforcer.get_role_manager().add_matching_func(None)
        state = _Workspace((versions.get(workspace_id, 0), versions.get(TEMPLATES, 0)), enforcer)
        while len(self._states) >= self._max_workspaces:
            self._states.pop(next(iter(self._states)))
        self._states[workspace_id] = state
        return state

    @staticmethod
    def _enforce(enforcer: Any, workspace_id: str, user_id: str, spec: Action) -> Decision:
        if not _valid_id(workspace_id):
            return Decision(False, f"unknown workspace {workspace_id!r}")
        if not _valid_id(user_id):
            return Decision(False, f"unknown user {user_id!r}")
        with PARSE_LOCK:  # Casbin parses its matcher with `ast.parse` on every call
            allowed, rule = enforcer.enforce_ex(user_id, workspace_id, spec.kind, spec.name)
        if allowed:
            role = str(rule[0]).removeprefix(ROLE_PREFIX)
            return Decision(True, f"role {role!r} allows {spec.name!r}")
        held = enforcer.get_roles_for_user_in_domain(user_id, workspace_id)
        if not held:
            return Decision(False, f"{user_id!r} is not a member of workspace {workspace_id!r}")
        names = ", ".join(sorted(r.removeprefix(ROLE_PREFIX) for r in held))
        return Decision(False, f"role {names} does not allow {spec.name!r}")

    # --- role changes ---------------------------------------------------------------------
    def sync_role_templates(self) -> bool:
        """Make the template lines match `auth.actions` (start-up); True if anything changed."""
        t = CasbinRule.__table__.c
        wanted = {
            (ROLE_PREFIX + role, TEMPLATES, ACTIONS[a].kind, a)
            for role in ROLE_NAMES
            for a in role_actions(role)
        }

        def change(conn: Connection) -> bool:
            where = and_(t.ptype == "p", t.v1 == TEMPLATES)
            rows = conn.execute(select(t.id, t.v0, t.v1, t.v2, t.v3, t.v4).where(where)).all()
            have = {(r.v0, r.v1, r.v2, r.v3): r.id for r in rows if r.v4 is None}
            extra = [r.id for r in rows if (r.v0, r.v1, r.v2, r.v3) not in wanted or r.v4]
            missing = wanted - have.keys()
            if extra:
                conn.execute(delete(CasbinRule).where(t.id.in_(extra)))
            if missing:
                conn.execute(insert(CasbinRule), [_p_row(line) for line in sorted(missing)])
            return bool(extra or missing)

        return self._write([TEMPLATES], change)

    def assign_role(self, workspace_id: str, user_id: str, role: str) -> bool:
        """Give `user_id` `role` in `workspace_id`; False if they already had it."""
        return self.assign_roles([(workspace_id, user_id, role)])

    def assign_roles(self, assignments: Iterable[tuple[str, str, str]]) -> bool:
        """Bulk `assign_role` in one transaction (imports, benchmarks)."""
        wanted = list(dict.fromkeys(assignments))
        for workspace_id, user_id, role in wanted:
            _check_id("workspace id", workspace_id)
            _check_id("user id", user_id)
            _check_role(role)
        scopes = sorted({ws for ws, _, _ in wanted})
        t = CasbinRule.__table__.c

        def change(conn: Connection) -> bool:
            have: set[tuple[str | None, ...]] = set()
            for i in range(0, len(scopes), 500):
                query = select(t.v0, t.v1, t.v2).where(
                    t.ptype == "g", t.v2.in_(scopes[i : i + 500])
                )
                have |= {tuple(row) for row in conn.execute(query)}
            rows = [
                {"ptype": "g", "v0": user, "v1": ROLE_PREFIX + role, "v2": ws}
                for ws, user, role in wanted
                if (user, ROLE_PREFIX + role, ws) not in have
            ]
            if rows:
                conn.execute(insert(CasbinRule), rows)
            return bool(rows)

        return bool(wanted) and self._write(scopes, change)

    def revoke_role(self, workspace_id: str, user_id: str, role: str | None = None) -> bool:
        """Take `role` away (None: every role, i.e. remove the member); False if none held."""
        if role is not None:
            _check_role(role)
        t = CasbinRule.__table__.c
        where = [t.ptype == "g", t.v0 == user_id, t.v2 == workspace_id]
        if role is not None:
            where.append(t.v1 == ROLE_PREFIX + role)

        def change(conn: Connection) -> bool:
            return bool(_rowcount(conn.execute(delete(CasbinRule).where(*where))))

        return self._write([workspace_id], change)

    def set_member(
        self,
        workspace_id: str,
        user_id: str,
        role: str | None,
        *,
        counts_as_admin: Callable[[str], bool] = lambda user_id: True,
    ) -> set[str]:
        """Make `role` the member's only role in the workspace (None: remove them from it);
        returns the roles they held before (nothing changes when that was exactly `role`).

        Refuses (`LastAdmin`) to take the admin role from the workspace's last admin: another
        admin counts if `counts_as_admin(their id)` (e.g. their account is enabled). The check
        and the change are one transaction that holds the policy's write lock from its first
        statement, so no two changes, in this process or any other, can each take the role
        from one of the last two admins.
        """
        _check_id("workspace id", workspace_id)
        _check_id("user id", user_id)
        if role is not None:
            _check_role(role)
        wanted = {role} if role is not None else set()
        t = CasbinRule.__table__.c
        held: set[str] = set()

        def change(conn: Connection) -> bool:
            members: dict[str, set[str]] = {}
            query = select(t.v0, t.v1).where(t.ptype == "g", t.v2 == workspace_id)
            for member, role_name in conn.execute(query):
                members.setdefault(str(member), set()).add(_role_name(role_name))
            held.update(members.get(user_id, ()))
            if held == wanted:
                return False
            if "admin" in held and "admin" not in wanted:
                admins = [m for m, roles in members.items() if m != user_id and "admin" in roles]
                if not any(counts_as_admin(m) for m in admins):
                    raise LastAdmin(
                        f"{user_id} is the last admin of workspace {workspace_id!r}: make "
                        "another member an admin first"
                    )
            gone = [ROLE_PREFIX + r for r in held - wanted]
            if gone:
                conn.execute(
                    delete(CasbinRule).where(
                        t.ptype == "g", t.v0 == user_id, t.v2 == workspace_id, t.v1.in_(gone)
                    )
                )
            if role is not None and role not in held:
                conn.execute(
                    insert(CasbinRule),
                    [{"ptype": "g", "v0": user_id, "v1": ROLE_PREFIX + role, "v2": workspace_id}],
                )
            return True

        self._write([workspace_id], change)
        return held

    def forget_user(self, user_id: str) -> set[str]:
        """Remove `user_id` from every workspace (account deleted); returns the workspaces."""
        t = CasbinRule.__table__.c
        where = [t.ptype == "g", t.v0 == user_id]
        scopes: list[str] = []

        def change(conn: Connection) -> bool:
            scopes.extend(
                sorted({str(v) for v in conn.execute(select(t.v2).where(*where)).scalars()})
            )
            return bool(_rowcount(conn.execute(delete(CasbinRule).where(*where))))

        return set(scopes) if self._write(scopes, change) else set()

    def _write(self, scopes: list[str], change: Callable[[Connection], bool]) -> bool:
        """Run `change` and bump the versions of `scopes` in one transaction, then invalidate.

        `change` may add to `scopes` (it sees them only after it ran); returns what it returned.
        """
        with self._engine.connect() as conn, conn.begin() as tx:
            version = _bump(conn, _GLOBAL, None)  # first statement: takes the write lock
            if not change(conn):
                tx.rollback()
                return False
            for scope in scopes:
                _bump(conn, scope, version)
        with self._lock:
            if TEMPLATES in scopes:
                self._states.clear()
            for scope in scopes:
                self._states.pop(scope, None)
        return True

    # --- reading roles --------------------------------------------------------------------
    def roles_of(self, workspace_id: str, user_id: str) -> set[str]:
        t = CasbinRule.__table__.c
        query = select(t.v1).where(t.ptype == "g", t.v2 == workspace_id, t.v0 == user_id)
        with self._engine.connect() as conn:
            return {_role_name(v) for v in conn.execute(query).scalars()}

    def members(self, workspace_id: str) -> dict[str, set[str]]:
        t = CasbinRule.__table__.c
        query = select(t.v0, t.v1).where(t.ptype == "g", t.v2 == workspace_id)
        found: dict[str, set[str]] = {}
        with self._engine.connect() as conn:
            for user_id, role in conn.execute(query):
                found.setdefault(str(user_id), set()).add(_role_name(role))
        return found

    def workspaces_of(self, user_id: str) -> set[str]:
        t = CasbinRule.__table__.c
        query = select(t.v2).where(t.ptype == "g", t.v0 == user_id).distinct()
        with self._engine.connect() as conn:
            return {str(v) for v in conn.execute(query).scalars()}

    def policy_version(self, scope: str) -> int:
        """The version of a workspace's policy (``*``: templates); 0 if never changed."""
        table = PolicyVersion.__table__.c
        with self._engine.connect() as conn:
            found = conn.execute(select(table.version).where(table.scope == scope)).scalar()
        return int(found or 0)

    # --- workspace tool-tier floors ---------------------------------------------------------
    def set_tool_floor(self, workspace_id: str, tool_name: str, tier: str) -> Tier:
        """Raise a tool's approval tier in a workspace; lowering is refused (`UserError`)."""
        if tier not in TIERS:
            raise UserError(f"unknown tier {tier!r}; choose one of {', '.join(TIERS)}")
        _check_id("workspace id", workspace_id)
        t = WorkspaceToolTier.__table__.c
        key = and_(t.workspace_id == workspace_id, t.tool_name == tool_name)
        lower = TIERS[: TIERS.index(tier)]
        with self._engine.begin() as conn:  # the UPDATE comes first: it takes the write lock
            conn.execute(update(WorkspaceToolTier).where(key, t.tier.in_(lower)).values(tier=tier))
            current = conn.execute(select(t.tier).where(key)).scalar()
            if current is None:
                row = {"workspace_id": workspace_id, "tool_name": tool_name, "tier": tier}
                conn.execute(insert(WorkspaceToolTier).values(row))
            elif current != tier:
                raise UserError(
                    f"tool {tool_name!r} already needs {current!r} in workspace "
                    f"{workspace_id!r}; workspace policy only raises tiers (clear the floor "
                    "with clear_tool_floor first to lower it)"
                )
        return tier

    def clear_tool_floor(self, workspace_id: str, tool_name: str) -> bool:
        """Remove a floor (a deliberate lowering: authorize `policy:manage` and audit it)."""
        t = WorkspaceToolTier.__table__.c
        key = and_(t.workspace_id == workspace_id, t.tool_name == tool_name)
        with self._engine.begin() as conn:
            return bool(_rowcount(conn.execute(delete(WorkspaceToolTier).where(key))))

    def tool_floor(self, workspace_id: str, tool_name: str) -> Tier:
        """The workspace's floor for `tool_name` ("free" when unset); matches `TierFloor`."""
        t = WorkspaceToolTier.__table__.c
        key = and_(t.workspace_id == workspace_id, t.tool_name == tool_name)
        with self._engine.connect() as conn:
            found = conn.execute(select(t.tier).where(key)).scalar()
        if found is None:
            return "free"
        return cast(Tier, found) if found in TIERS else "admin"  # unknown value: fail closed

    def tool_floors(self, workspace_id: str) -> dict[str, Tier]:
        t = WorkspaceToolTier.__table__.c
        query = select(t.tool_name, t.tier).where(t.workspace_id == workspace_id)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return {name: cast(Tier, tier) if tier in TIERS else "admin" for name, tier in rows}


class RbacApprovalAuthority:
    """`graphs.approvals.ApprovalAuthority` from current roles (checked fresh every time).

    - ``confirm`` (and ``free``) calls: the run's starter while they may still start runs
      (``run:start``, which implies ``approval:read``), or anyone with
      ``approval:decide:confirm``.
    - ``admin`` calls: someone with ``approval:decide:admin`` who did not start the run.
    - any other tier: nobody.

    The approval service has already scoped the approval to the actor's workspace.
    """

    def __init__(self, rbac: Rbac) -> None:
        self._rbac = rbac

    def refusal(self, actor: ActorLike, approval: ApprovalLike) -> str | None:
        starter = actor.user_id == approval.run_started_by
        if approval.tier == "admin":
            if starter:
                return "an admin-tier call must be decided by someone other than the run's starter"
            return self._missing(actor, "approval:decide:admin")
        if approval.tier not in ("confirm", "free"):
            return f"unknown approval tier {approval.tier!r}"
        if starter and self._rbac.authorize(actor, "run:start", fresh=True).allowed:
            return None
        return self._missing(actor, "approval:decide:confirm")

    def _missing(self, actor: ActorLike, action: str) -> str | None:
        decision = self._rbac.authorize(actor, action, fresh=True)
        return None if decision.allowed else decision.reason


@dataclass(frozen=True, slots=True)
class _Principal:
    workspace_id: str
    user_id: str


def _p_row(line: tuple[str, str, str, str]) -> dict[str, str]:
    return {"ptype": "p", "v0": line[0], "v1": line[1], "v2": line[2], "v3": line[3]}


def _role_name(value: object) -> str:
    return str(value).removeprefix(ROLE_PREFIX)


def _rowcount(result: Any) -> int:
    return int(result.rowcount)


def _bump(conn: Connection, scope: str, version: int | None) -> int:
    """Set `scope`'s version (None: add one) and return it; inserts the row if missing."""
    table = PolicyVersion.__table__.c
    value = table.version + 1 if version is None else version
    done = conn.execute(update(PolicyVersion).where(table.scope == scope).values(version=value))
    if _rowcount(done) == 0:
        conn.execute(insert(PolicyVersion).values(scope=scope, version=version or 1))
    if version is not None:
        return version
    return int(conn.execute(select(table.version).where(table.scope == scope)).scalar_one())
