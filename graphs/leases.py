"""Run leases: an owner and an expiry per running run, so two workers never run one run.

A lease whose owner is a dead process on this host is free at once; any other expires
after its time-to-live unless the owner's heartbeat renews it.
"""

from __future__ import annotations

__all__ = ["LeaseKeeper", "process_owner_id"]

import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, DateTime, Table, Update, bindparam, func, or_, update
from sqlalchemy.orm import Session, sessionmaker

from graphs.tables import Run

_RUNS = cast(Table, Run.__table__)
_AT = DateTime(timezone=True)


def _claim_statement(*, unstarted: bool) -> Update:
    """The claim as one prebuilt Core UPDATE (built once: statement construction and
    compilation cost more than SQLite itself here). `p_dead` is the lease owner of a dead
    process, or NULL; `p_inc` counts a recovery as an attempt."""
    c = _RUNS.c
    now, owner = bindparam("p_now", type_=_AT), bindparam("p_owner", type_=c.lease_owner.type)
    free = or_(
        c.lease_owner.is_(None),
        c.lease_owner == owner,
        c.lease_expires_at < now,
        c.lease_owner == bindparam("p_dead", type_=c.lease_owner.type),
    )
    where = [c.run_id == bindparam("p_run_id"), c.status.in_(("queued", "running")), free]
    if unstarted:  # nobody ever claimed it: the caller's copy of the row is still exact
        where.append(c.started_at.is_(None))
    return (
        update(_RUNS)
        .where(*where)
        .values(
            lease_owner=owner,
            lease_expires_at=bindparam("p_expires", type_=_AT),
            status="running",
            started_at=func.coalesce(c.started_at, now),
            attempts=c.attempts + bindparam("p_inc", type_=c.attempts.type),
        )
    )


_CLAIM = _claim_statement(unstarted=False)
_CLAIM_UNSTARTED = _claim_statement(unstarted=True)
_RELEASE = (
    update(_RUNS)
    .where(
        _RUNS.c.run_id == bindparam("p_run_id"),
        _RUNS.c.lease_owner == bindparam("p_owner"),
    )
    .values(lease_owner=None, lease_expires_at=None)
)


def process_owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str | None) -> bool:
    if not owner:
        return True
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return int(pid_text) != os.getpid() and _is_zombie(int(pid_text))


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


class LeaseKeeper:
    def __init__(self, sessions: sessionmaker[Session], owner: str, ttl_s: float) -> None:
        self._sessions = sessions
        self.owner = owner
        self.ttl = timedelta(seconds=ttl_s)
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def claim(self, run: Run, *, recovering: bool) -> bool:
        """Take the run's lease (queued/running only); False when someone else holds it."""
        dead = run.lease_owner
        if dead == self.owner or not owner_is_dead(dead):
            dead = None
        return self._claim(_CLAIM, run.run_id, dead=dead, attempt=int(recovering))

    def lease_values(self, now: datetime) -> dict[str, Any]:
        """The lease columns of a run this process stores already claimed (see `adopt`)."""
        return {"lease_owner": self.owner, "lease_expires_at": now + self.ttl}

    def adopt(self, run_id: str) -> None:
        """Keep renewing the lease of a run stored with `lease_values` (no claim needed)."""
        with self._lock:
            self._held.add(run_id)

    def claim_unstarted(self, run_id: str) -> bool:
        """Take the lease of a queued run that nobody has claimed yet (a run this process
        just stored); False otherwise — then read the row and `claim` it as usual."""
        return self._claim(_CLAIM_UNSTARTED, run_id, dead=None, attempt=0)

    def _claim(self, statement: Update, run_id: str, *, dead: str | None, attempt: int) -> bool:
        now = datetime.now(UTC)
        params = {
            "p_run_id": run_id,
            "p_owner": self.owner,
            "p_now": now,
            "p_expires": now + self.ttl,
            "p_dead": dead,
            "p_inc": attempt,
        }
        with self._sessions() as session:
            claimed = cast(CursorResult[Any], session.execute(statement, params)).rowcount
            session.commit()
        if claimed:
            with self._lock:
                self._held.add(run_id)
        return bool(claimed)

    def release(self, run_id: str, *, still_held: bool = True) -> None:
        """Stop renewing the lease; clear it in the table unless settling already did."""
        with self._lock:
            self._held.discard(run_id)
        if not still_held:
            return
        with self._sessions() as session:
            session.execute(_RELEASE, {"p_run_id": run_id, "p_owner": self.owner})
            session.commit()

    def start(self, on_beat: Callable[[set[str]], None]) -> None:
        self._thread = threading.Thread(
            target=self._beat, args=(on_beat,), daemon=True, name="run-leases"
        )
        self._thread.start()

    def _beat(self, on_beat: Callable[[set[str]], None]) -> None:
        while not self._stop.wait(self.ttl.total_seconds() / 3):
            with self._lock:
                held = set(self._held)
            if held:
                with self._sessions() as session:
                    session.execute(
                        update(Run)
                        .where(Run.run_id.in_(held), Run.lease_owner == self.owner)
                        .values(lease_expires_at=datetime.now(UTC) + self.ttl)
                    )
                    session.commit()
            on_beat(held)

    def stop(self) -> None:
        self._stop.set()
