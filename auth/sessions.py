"""Server-side sessions for the web app.

The browser's cookie holds 32 random bytes (url-safe); the database holds only their SHA-256,
so a leaked database cannot be replayed as cookies. Every login gets a new value (no session
fixation), logout revokes the row, and a session ends after `idle_timeout` without requests
or `absolute_timeout` after login, whichever comes first. A disabled user's sessions stop at
once: every `resolve_session` checks the user.

Wiring for the web app: after `Accounts.authenticate` succeeds, call `start_session(user_id,
workspace_id, replaces=<old cookie or None>)` and set the returned value as an HttpOnly,
Secure, SameSite=Lax cookie; on every request `resolve_session(cookie)` gives the acting user and
current workspace (NotFound → treat as logged out); logout calls `end_session(cookie)`.
"""

from __future__ import annotations

__all__ = [
    "Clock",
    "SessionPolicy",
    "SessionView",
    "WebSessions",
    "end_all_sessions",
    "hash_secret",
]

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from auth.base import utcnow
from auth.db import affected
from auth.tables import Session, User, Workspace
from components.errors import NotFound

Clock = Callable[[], datetime]
MAX_COOKIE_LENGTH = 200
_GONE = "session not found or expired; log in again"


def hash_secret(value: str) -> str:
    """Hex SHA-256 of a high-entropy random value (cookies, token secrets)."""
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    idle_timeout: timedelta = timedelta(minutes=30)
    absolute_timeout: timedelta = timedelta(hours=12)
    touch_interval: timedelta = timedelta(minutes=1)  # last_seen_at is written at most this often

    def __post_init__(self) -> None:
        if self.idle_timeout <= timedelta(0) or self.absolute_timeout < self.idle_timeout:
            raise ValueError("need 0 < idle_timeout <= absolute_timeout")


@dataclass(frozen=True, slots=True)
class SessionView:
    session_id: str  # SHA-256 of the cookie value, safe to log
    user_id: str
    workspace_id: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime


class WebSessions:
    def __init__(
        self,
        sessions: sessionmaker[DbSession],
        *,
        policy: SessionPolicy | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self._sessions = sessions
        self.policy = policy or SessionPolicy()
        self._clock = clock

    def start_session(
        self, user_id: str, workspace_id: str, *, replaces: str | None = None
    ) -> tuple[str, SessionView]:
        """A new session (a new random id every time); `replaces` ends the caller's old one."""
        cookie = secrets.token_urlsafe(32)
        now = self._clock()
        with self._sessions() as db:
            user = db.get(User, user_id)
            if user is None or user.disabled_at is not None:
                raise NotFound(f"user {user_id!r} not found")
            if db.get(Workspace, workspace_id) is None:
                raise NotFound(f"workspace {workspace_id!r} not found")
            if replaces is not None:
                self._revoke(db, replaces, now)
            row = Session(
                session_id=hash_secret(cookie),
                user_id=user_id,
                workspace_id=workspace_id,
                created_at=now,
                last_seen_at=now,
                expires_at=now + self.policy.absolute_timeout,
            )
            db.add(row)
            db.commit()
            return cookie, _view(row)

    def resolve_session(self, cookie: str) -> SessionView:
        """The live session of a cookie value; NotFound if unknown, ended, timed out, disabled."""
        now = self._clock()
        with self._sessions() as db:
            row = self._live(db, cookie, now)
            if now - row.last_seen_at >= self.policy.touch_interval:
                row.last_seen_at = now
                db.commit()
            return _view(row)

    def switch_workspace(self, cookie: str, workspace_id: str) -> SessionView:
        """Make another workspace current; the caller has checked membership (RBAC)."""
        now = self._clock()
        with self._sessions() as db:
            row = self._live(db, cookie, now)
            if db.get(Workspace, workspace_id) is None:
                raise NotFound(f"workspace {workspace_id!r} not found")
            row.workspace_id = workspace_id
            row.last_seen_at = now
            db.commit()
            return _view(row)

    def end_session(self, cookie: str) -> None:
        """Logout: the session stops working at once. Unknown values are ignored."""
        with self._sessions() as db:
            self._revoke(db, cookie, self._clock())
            db.commit()

    def end_user_sessions(self, user_id: str) -> int:
        """End every session of a user (password change, disabling); returns how many."""
        with self._sessions() as db:
            count = end_all_sessions(db, user_id, self._clock())
            db.commit()
            return count

    def purge_sessions(self) -> int:
        """Delete rows that can never be used again (housekeeping); returns how many."""
        now = self._clock()
        statement = delete(Session).where(
            or_(
                Session.revoked_at.is_not(None),
                Session.expires_at <= now,
                Session.last_seen_at <= now - self.policy.idle_timeout,
            )
        )
        with self._sessions() as db:
            count = affected(db, statement)
            db.commit()
            return count

    def _live(self, db: DbSession, cookie: str, now: datetime) -> Session:
        row = db.get(Session, hash_secret(cookie)) if _plausible(cookie) else None
        if (
            row is None
            or row.revoked_at is not None
            or now >= row.expires_at
            or now - row.last_seen_at > self.policy.idle_timeout
        ):
            raise NotFound(_GONE)
        user = db.get(User, row.user_id)
        if user is None or user.disabled_at is not None:
            raise NotFound(_GONE)
        return row

    @staticmethod
    def _revoke(db: DbSession, cookie: str, now: datetime) -> None:
        if not _plausible(cookie):
            return
        db.execute(
            update(Session)
            .where(Session.session_id == hash_secret(cookie), Session.revoked_at.is_(None))
            .values(revoked_at=now)
        )


def end_all_sessions(db: DbSession, user_id: str, now: datetime) -> int:
    """Revoke every live session of `user_id` inside the caller's transaction."""
    return affected(
        db,
        update(Session)
        .where(Session.user_id == user_id, Session.revoked_at.is_(None))
        .values(revoked_at=now),
    )


def _plausible(cookie: str) -> bool:
    return 0 < len(cookie) <= MAX_COOKIE_LENGTH and cookie.isascii()


def _view(row: Session) -> SessionView:
    return SessionView(
        session_id=row.session_id,
        user_id=row.user_id,
        workspace_id=row.workspace_id,
        created_at=row.created_at,
        last_seen_at=row.last_seen_at,
        expires_at=row.expires_at,
    )
