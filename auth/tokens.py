"""API tokens for the REST API and headless clients.

A token value is `sk_<prefix>_<secret>`: `prefix` is 8 random lower-case letters and digits
that find the row and are shown in lists; `secret` is 32 random bytes, url-safe (43 chars).
The value is shown once, when the token is created. The database keeps only the SHA-256 of
the secret — a fast hash is right for a high-entropy random key (argon2 is for passwords) —
and the comparison is constant-time. Every way a value can fail (malformed, oversized,
unknown, wrong secret, expired, revoked, owner disabled) raises the same `NotFound`.

A token belongs to one workspace and one owner and carries a set of actions (its scopes,
such as "run:start"). **The effective permission of a token is the intersection of its
actions and its owner's current role in the token's workspace**: after `verify_token`, the
caller checks that the action is in `principal.actions` *and* authorizes
`(principal.workspace_id, principal.user_id)` for it through RBAC. Demoting or removing the
owner, disabling the owner, or revoking the token therefore takes effect on the next request.
The acting identity of a token request is `Actor(principal.workspace_id, principal.user_id)`:
the workspace comes from the token, never from the request.
"""

from __future__ import annotations

__all__ = [
    "MAX_TOKEN_LENGTH",
    "REJECTED",
    "ApiTokens",
    "TokenPrincipal",
    "TokenView",
]

import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from auth.base import ActorLike, utcnow
from auth.db import affected
from auth.sessions import Clock, hash_secret
from auth.tables import ApiToken, User, Workspace
from components.errors import NotFound, UserError

MAX_TOKEN_LENGTH = 200
MAX_ACTIONS = 64
REJECTED = "API token not recognised; check it or create a new one"
TOUCH_INTERVAL = timedelta(minutes=1)
_PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_SHAPE = re.compile(r"sk_([a-z0-9]{8})_([A-Za-z0-9_-]{43,180})", re.ASCII)
_ACTION = re.compile(r"[a-z][a-z0-9_]*(?::[a-z][a-z0-9_]*)+", re.ASCII)
_DUMMY_HASH = hash_secret(secrets.token_urlsafe(32))


@dataclass(frozen=True, slots=True)
class TokenPrincipal:
    """What a verified token may act as: its workspace, its owner, its scopes."""

    token_id: str
    workspace_id: str
    user_id: str
    actions: frozenset[str]

    def allows(self, action: str) -> bool:
        """The token's own scope only; the owner's role must allow `action` too (RBAC)."""
        return action in self.actions


@dataclass(frozen=True, slots=True)
class TokenView:
    """A token as lists show it: never its secret or hash."""

    token_id: str
    workspace_id: str
    user_id: str
    name: str
    prefix: str
    actions: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiTokens:
    def __init__(self, sessions: sessionmaker[Session], *, clock: Clock = utcnow) -> None:
        self._sessions = sessions
        self._clock = clock

    def create_token(
        self,
        actor: ActorLike,
        *,
        name: str,
        actions: list[str],
        expires_in: timedelta | None = None,
    ) -> tuple[str, TokenView]:
        """A new token for the actor in the actor's workspace; the value is returned only here."""
        title, scopes = _check_request(name, actions, expires_in)
        now = self._clock()
        with self._sessions() as db:
            owner = db.get(User, actor.user_id)
            if owner is None or owner.disabled_at is not None:
                raise NotFound(f"user {actor.user_id!r} not found")
            if db.get(Workspace, actor.workspace_id) is None:
                raise NotFound(f"workspace {actor.workspace_id!r} not found")
        for _ in range(3):  # the 8-character prefix is unique; a clash is rare, so try again
            prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(8))
            secret = secrets.token_urlsafe(32)
            row = ApiToken(
                token_id=str(uuid.uuid4()),
                workspace_id=actor.workspace_id,
                user_id=actor.user_id,
                name=title,
                prefix=prefix,
                secret_hash=hash_secret(secret),
                actions=scopes,
                created_at=now,
                expires_at=None if expires_in is None else now + expires_in,
            )
            with self._sessions() as db:
                db.add(row)
                try:
                    db.commit()
                except IntegrityError:
                    continue
                return f"sk_{prefix}_{secret}", _view(row)
        raise RuntimeError("could not find a free token prefix; try again")

    def verify_token(self, value: str) -> TokenPrincipal:
        """The principal of a valid token; anything else raises `NotFound(REJECTED)`."""
        now = self._clock()
        parts = _parse(value)
        with self._sessions() as db:
            row = None
            if parts is not None:
                row = db.scalar(select(ApiToken).where(ApiToken.prefix == parts[0]))
            expected = row.secret_hash if row is not None else _DUMMY_HASH
            given = hash_secret(parts[1] if parts is not None else "")
            matched = hmac.compare_digest(expected, given)
            if row is None or not matched or not _usable(db, row, now):
                raise NotFound(REJECTED)
            if row.last_used_at is None or now - row.last_used_at >= TOUCH_INTERVAL:
                row.last_used_at = now
                db.commit()
            return TokenPrincipal(
                token_id=row.token_id,
                workspace_id=row.workspace_id,
                user_id=row.user_id,
                actions=frozenset(row.actions),
            )

    def revoke_token(
        self, actor: ActorLike, token_id: str, *, any_owner: bool = False
    ) -> TokenView:
        """Revoke at once. Only the owner's own tokens unless `any_owner` (after an RBAC check
        such as `member:manage`); tokens of other workspaces are not found. Idempotent."""
        with self._sessions() as db:
            row = db.get(ApiToken, token_id)
            if (
                row is None
                or row.workspace_id != actor.workspace_id
                or (row.user_id != actor.user_id and not any_owner)
            ):
                raise NotFound(f"API token {token_id!r} not found")
            if row.revoked_at is None:
                row.revoked_at = self._clock()
                db.commit()
            return _view(row)

    def list_tokens(self, actor: ActorLike, *, all_owners: bool = False) -> list[TokenView]:
        """Tokens of the actor's workspace, newest first: the actor's own unless `all_owners`."""
        query = select(ApiToken).where(ApiToken.workspace_id == actor.workspace_id)
        if not all_owners:
            query = query.where(ApiToken.user_id == actor.user_id)
        with self._sessions() as db:
            rows = db.scalars(query.order_by(ApiToken.created_at.desc(), ApiToken.token_id))
            return [_view(row) for row in rows]

    def revoke_owner_tokens(self, user_id: str, *, workspace_id: str | None = None) -> int:
        """Revoke a user's tokens (in one workspace, or everywhere); returns how many."""
        statement = update(ApiToken).where(
            ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None)
        )
        if workspace_id is not None:
            statement = statement.where(ApiToken.workspace_id == workspace_id)
        with self._sessions() as db:
            count = affected(db, statement.values(revoked_at=self._clock()))
            db.commit()
            return count


def _check_request(
    name: str, actions: list[str], expires_in: timedelta | None
) -> tuple[str, list[str]]:
    title = name.strip()
    if not 0 < len(title) <= 100:
        raise UserError("a token needs a name of 1 to 100 characters")
    if not actions:
        raise UserError("a token needs at least one action, for example 'run:start'")
    if len(actions) > MAX_ACTIONS:
        raise UserError(f"a token may carry at most {MAX_ACTIONS} actions")
    for action in actions:
        if not isinstance(action, str) or len(action) > 100 or not _ACTION.fullmatch(action):
            raise UserError(f"{action!r} is not an action; actions look like 'run:start'")
    if expires_in is not None and expires_in <= timedelta(0):
        raise UserError("expires_in must be positive (or None for a token that does not expire)")
    return title, sorted(set(actions))


def _parse(value: str) -> tuple[str, str] | None:
    if not isinstance(value, str) or len(value) > MAX_TOKEN_LENGTH or not value.isascii():
        return None
    match = _SHAPE.fullmatch(value)
    return (match.group(1), match.group(2)) if match else None


def _usable(db: Session, row: ApiToken, now: datetime) -> bool:
    if row.revoked_at is not None or (row.expires_at is not None and now >= row.expires_at):
        return False
    owner = db.get(User, row.user_id)
    return owner is not None and owner.disabled_at is None


def _view(row: ApiToken) -> TokenView:
    return TokenView(
        token_id=row.token_id,
        workspace_id=row.workspace_id,
        user_id=row.user_id,
        name=row.name,
        prefix=row.prefix,
        actions=tuple(row.actions),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )
