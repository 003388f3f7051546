"""Workspaces, local user accounts and password login with throttling.

Throttling slows guessing without giving an attacker a way to lock anybody out: failures are
counted per (e-mail, client IP) pair and per client IP (IPv6 per /64), each with its own
exponential backoff after a number of free failures, capped and counted over a sliding
window. There is no per-account lockout, so hammering alice's address from one network
never stops alice logging in from another. A throttled attempt is refused before the
password is looked at and is not recorded. Every other failure — unknown e-mail, wrong
password, disabled or password-less account — raises the same `Forbidden` after the same
argon2 work.

Memberships and roles are Casbin grouping policies (`auth.rbac`), not rows here: after
`create_workspace`, the caller makes `owner_user_id` an admin of the new workspace.
"""

from __future__ import annotations

__all__ = [
    "WRONG_CREDENTIALS",
    "Accounts",
    "Backoff",
    "ThrottlePolicy",
    "UserView",
    "WorkspaceView",
]

import hashlib
import ipaddress
import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from auth.base import utcnow
from auth.db import affected
from auth.passwords import Passwords
from auth.sessions import Clock, end_all_sessions
from auth.tables import LoginAttempt, User, Workspace
from components.errors import Conflict, Forbidden, NotFound, UserError

WRONG_CREDENTIALS = "e-mail or password is wrong"
MAX_EMAIL = 320
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_WORKSPACE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


RESERVED_WORKSPACE_IDS = frozenset({"local"})  # the headless operator's workspace


@dataclass(frozen=True, slots=True)
class Backoff:
    """`free_failures` within `window` cost nothing; each further one doubles the wait."""

    free_failures: int
    base: timedelta
    cap: timedelta
    window: timedelta
    reset_on_success: bool

    def delay(self, failures: int) -> timedelta:
        if failures < self.free_failures:
            return timedelta(0)
        factor: int = 2 ** min(failures - self.free_failures, 30)
        return min(self.base * factor, self.cap)


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    per_pair: Backoff = field(
        default_factory=lambda: Backoff(
            5, timedelta(seconds=2), timedelta(minutes=15), timedelta(hours=24), True
        )
    )
    per_ip: Backoff = field(
        default_factory=lambda: Backoff(
            50, timedelta(seconds=1), timedelta(minutes=15), timedelta(hours=1), False
        )
    )


@dataclass(frozen=True, slots=True)
class UserView:
    user_id: str
    email: str
    display_name: str
    has_password: bool
    disabled_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class WorkspaceView:
    workspace_id: str
    name: str
    created_by: str
    created_at: datetime


class Accounts:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        passwords: Passwords | None = None,
        throttle: ThrottlePolicy | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self._sessions = sessions
        self.passwords = passwords or Passwords()
        self.throttle = throttle or ThrottlePolicy()
        self._clock = clock

    def create_user(self, email: str, password: str | None, display_name: str) -> UserView:
        """A local account; `password=None` makes an account that logs in only through OIDC."""
        address = _email(email)
        name = display_name.strip() or address.split("@")[0]
        if len(name) > 200:
            raise UserError("the display name is too long; use at most 200 characters")
        row = User(
            user_id=str(uuid.uuid4()),
            email=address,
            display_name=name,
            password_hash=None if password is None else self.passwords.hash(password),
            created_at=self._clock(),
        )
        with self._sessions() as db:
            db.add(row)
            try:
                db.commit()
            except IntegrityError:
                raise Conflict(f"a user with e-mail {address!r} already exists") from None
            return _user_view(row)

    def get_user(self, user_id: str) -> UserView:
        with self._sessions() as db:
            return _user_view(_user(db, user_id))

    def get_user_by_email(self, email: str) -> UserView:
        address = email.strip().lower()
        with self._sessions() as db:
            row = db.scalar(select(User).where(User.email == address))
            if row is None:
                raise NotFound(f"no user with e-mail {address!r}")
            return _user_view(row)

    def set_password(self, user_id: str, password: str | None) -> UserView:
        """Replace (or with None remove) the password; the user's sessions end."""
        new_hash = None if password is None else self.passwords.hash(password)
        with self._sessions() as db:
            row = _user(db, user_id)
            row.password_hash = new_hash
            end_all_sessions(db, user_id, self._clock())
            db.commit()
            return _user_view(row)

    def disable_user(self, user_id: str) -> UserView:
        """From now on the user cannot log in, and their sessions and API tokens stop working."""
        now = self._clock()
        with self._sessions() as db:
            row = _user(db, user_id)
            if row.disabled_at is None:
                row.disabled_at = now
            end_all_sessions(db, user_id, now)
            db.commit()
            return _user_view(row)

    def create_workspace(
        self, name: str, *, owner_user_id: str, workspace_id: str | None = None
    ) -> WorkspaceView:
        """A new workspace; the caller grants `owner_user_id` the admin role through RBAC."""
        title = name.strip()
        if not 0 < len(title) <= 200:
            raise UserError("a workspace needs a name of 1 to 200 characters")
        if workspace_id in RESERVED_WORKSPACE_IDS:
            raise UserError(f"workspace id {workspace_id!r} is reserved; choose another")
        if workspace_id is not None and not _WORKSPACE_ID.fullmatch(workspace_id):
            raise UserError(
                f"workspace id {workspace_id!r} is not valid; use up to 64 letters, digits, . _ -"
            )
        with self._sessions() as db:
            owner = db.get(User, owner_user_id)
            if owner is None or owner.disabled_at is not None:
                raise NotFound(f"user {owner_user_id!r} not found")
            row = Workspace(
                workspace_id=workspace_id or str(uuid.uuid4()),
                name=title,
                created_by=owner_user_id,
                created_at=self._clock(),
            )
            db.add(row)
            try:
                db.commit()
            except IntegrityError:
                raise Conflict(f"workspace {workspace_id!r} already exists") from None
            return _workspace_view(row)

    def get_workspace(self, workspace_id: str) -> WorkspaceView:
        with self._sessions() as db:
            row = db.get(Workspace, workspace_id)
            if row is None:
                raise NotFound(f"workspace {workspace_id!r} not found")
            return _workspace_view(row)

    def authenticate(self, email: str, password: str, *, client_ip: str) -> UserView:
        """The user whose password this is, or `Forbidden` (generic, or throttled)."""
        now = self._clock()
        address = email.strip().lower()
        network = _network(client_ip)
        pair = "pair:" + hashlib.sha256(f"{address}\n{network}".encode()).hexdigest()
        rules = ((pair, self.throttle.per_pair), ("ip:" + network, self.throttle.per_ip))
        with self._sessions() as db:
            wait = max(_wait(db, key, rule, now) for key, rule in rules)
            if wait > 0:
                raise Forbidden(f"too many attempts; try again in {math.ceil(wait)} s")
            attempts = [
                LoginAttempt(key=key, attempted_at=now, succeeded=False) for key, _ in rules
            ]
            db.add_all(attempts)
            db.commit()  # counted before the (slow) check, so parallel guesses see each other
            user = _find(db, address)
            usable = user is not None and user.disabled_at is None
            stored = user.password_hash if user is not None and usable else None
            if not self.passwords.verify(stored, password) or user is None or stored is None:
                raise Forbidden(WRONG_CREDENTIALS)
            for attempt in attempts:
                attempt.succeeded = True
            if self.passwords.needs_rehash(stored):
                user.password_hash = self.passwords.hasher.hash(password)
            db.commit()
            return _user_view(user)

    def prune_attempts(self) -> int:
        """Delete login attempts older than every throttling window; returns how many."""
        oldest = self._clock() - max(self.throttle.per_pair.window, self.throttle.per_ip.window)
        with self._sessions() as db:
            count = affected(db, delete(LoginAttempt).where(LoginAttempt.attempted_at < oldest))
            db.commit()
            return count


def _wait(db: Session, key: str, rule: Backoff, now: datetime) -> float:
    """Seconds until `key` may try again (0: now)."""
    since = now - rule.window
    if rule.reset_on_success:
        last_ok = db.scalar(
            select(func.max(LoginAttempt.attempted_at)).where(
                LoginAttempt.key == key, LoginAttempt.succeeded.is_(True)
            )
        )
        since = max(since, last_ok) if last_ok is not None else since
    failures, last_failure = db.execute(
        select(func.count(), func.max(LoginAttempt.attempted_at)).where(
            LoginAttempt.key == key,
            LoginAttempt.succeeded.is_(False),
            LoginAttempt.attempted_at > since,
        )
    ).one()
    if last_failure is None:
        return 0.0
    return max(0.0, (last_failure + rule.delay(failures) - now).total_seconds())


def _network(client_ip: str) -> str:
    """The throttling unit of a client address: the IPv4 address, or the IPv6 /64."""
    try:
        address = ipaddress.ip_address(client_ip.strip())
    except ValueError:
        return "raw:" + hashlib.sha256(client_ip.encode()).hexdigest()[:32]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


def _email(email: str) -> str:
    address = email.strip().lower()
    if len(address) > MAX_EMAIL or not _EMAIL.fullmatch(address):
        raise UserError(f"{email!r} is not an e-mail address; use the form name@example.org")
    return address


def _find(db: Session, address: str) -> User | None:
    if len(address) > MAX_EMAIL:
        return None
    return db.scalar(select(User).where(User.email == address))


def _user(db: Session, user_id: str) -> User:
    row = db.get(User, user_id)
    if row is None:
        raise NotFound(f"user {user_id!r} not found")
    return row


def _user_view(row: User) -> UserView:
    return UserView(
        user_id=row.user_id,
        email=row.email,
        display_name=row.display_name,
        has_password=row.password_hash is not None,
        disabled_at=row.disabled_at,
        created_at=row.created_at,
    )


def _workspace_view(row: Workspace) -> WorkspaceView:
    return WorkspaceView(
        workspace_id=row.workspace_id,
        name=row.name,
        created_by=row.created_by,
        created_at=row.created_at,
    )
