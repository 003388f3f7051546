"""Factories for the identity tests: a migrated SQLite file, a fake clock, the services."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from argon2 import PasswordHasher
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from auth.accounts import Accounts, ThrottlePolicy, UserView
from auth.db import migrate
from auth.passwords import Passwords
from auth.sessions import SessionPolicy, WebSessions
from auth.tokens import ApiTokens
from graphs.db import make_engine

PASSWORD = "correct horse battery staple"


def fast_hasher(**params: Any) -> PasswordHasher:
    """argon2id with tiny costs so tests stay fast (production keeps the library defaults)."""
    return PasswordHasher(**{"time_cost": 1, "memory_cost": 8, "parallelism": 1, **params})


class CountingHasher(PasswordHasher):
    """Counts argon2 verifications, to prove the unknown-user path does the same work."""

    def __init__(self, **params: Any) -> None:
        super().__init__(**{"time_cost": 1, "memory_cost": 8, "parallelism": 1, **params})
        self.verified: list[str] = []

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.verified.append(str(hash))
        return super().verify(hash, password)


@dataclass
class FakeClock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Stack:
    path: Path
    engine: Engine
    sessions: sessionmaker[Session]
    clock: FakeClock
    accounts: Accounts
    web: WebSessions
    tokens: ApiTokens

    def user(self, email: str, password: str | None = PASSWORD) -> UserView:
        return self.accounts.create_user(email, password, email.split("@")[0].title())

    def workspace(self, workspace_id: str, owner: UserView) -> str:
        self.accounts.create_workspace(
            workspace_id.title(), owner_user_id=owner.user_id, workspace_id=workspace_id
        )
        return workspace_id

    def stored_bytes(self) -> bytes:
        """Every byte SQLite holds for this database: the file and its WAL."""
        return b"".join(
            p.read_bytes() for p in self.path.parent.glob(self.path.name + "*") if p.is_file()
        )


def make_stack(
    tmp_path: Path,
    *,
    passwords: Passwords | None = None,
    throttle: ThrottlePolicy | None = None,
    session_policy: SessionPolicy | None = None,
) -> Stack:
    path = tmp_path / "auth.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    sessions = sessionmaker(engine)
    clock = FakeClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    accounts = Accounts(
        sessions,
        passwords=passwords or Passwords(fast_hasher()),
        throttle=throttle,
        clock=clock,
    )
    web = WebSessions(sessions, policy=session_policy, clock=clock)
    return Stack(path, engine, sessions, clock, accounts, web, ApiTokens(sessions, clock=clock))
