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

from sqlalchemy import or_, update
from sqlalchemy.orm import Session, sessionmaker

from graphs.db import affected
from graphs.tables import Run


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
        now = datetime.now(UTC)
        free = or_(
            Run.lease_owner.is_(None), Run.lease_owner == self.owner, Run.lease_expires_at < now
        )
        if owner_is_dead(run.lease_owner) and run.lease_owner != self.owner:
            free = or_(free, Run.lease_owner == run.lease_owner)
        values: dict[str, object] = {
            "lease_owner": self.owner,
            "lease_expires_at": now + self.ttl,
            "status": "running",
            "started_at": run.started_at or now,
        }
        if recovering:
            values["attempts"] = Run.attempts + 1
        with self._sessions() as session:
            claimed = affected(
                session,
                update(Run)
                .where(Run.run_id == run.run_id, Run.status.in_(("queued", "running")), free)
                .values(**values),
            )
            session.commit()
        if claimed:
            with self._lock:
                self._held.add(run.run_id)
        return bool(claimed)

    def release(self, run_id: str, *, still_held: bool = True) -> None:
        """Stop renewing the lease; clear it in the table unless settling already did."""
        with self._lock:
            self._held.discard(run_id)
        if not still_held:
            return
        with self._sessions() as session:
            session.execute(
                update(Run)
                .where(Run.run_id == run_id, Run.lease_owner == self.owner)
                .values(lease_owner=None, lease_expires_at=None)
            )
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
