"""Run progress events: numbered per run, fanned out in memory, written in batches.

Publishing never waits for the database: events queue in memory and a writer thread inserts
them every `flush_interval_s` (50 ms), in one transaction per batch (the hot path of a run
stays a dict append). In this process, subscribers and `history` see events at once (history
adds those not stored yet); another process reading the table sees them within the interval,
and a crash loses at most the last interval's events (never a run's status, which is stored
with the run). Subscribers get every event of a run from any sequence number on: history
from the table, then live.
"""

from __future__ import annotations

__all__ = ["EventLog", "RunEventView"]

import logging
import queue
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Engine, Table, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from components.sqlwrites import DriverStatement, KeptConnection
from graphs.tables import RunEvent

log = logging.getLogger(__name__)

_EVENTS = cast(Table, RunEvent.__table__)
_INSERT_EVENTS = insert(_EVENTS)
# every column but the key, each an attribute of RunEventView
_COLUMNS = tuple(c.key for c in _EVENTS.c if c.key != "event_id")


@dataclass(frozen=True, slots=True)
class RunEventView:
    run_id: str
    seq: int
    kind: str
    node_id: str | None
    data: dict[str, Any]
    at: datetime
    workspace_id: str = field(repr=False, default="")


class EventLog:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        engine: Engine,
        writes: KeptConnection,
        flush_interval_s: float = 0.05,
        redact: Callable[[Any], Any] = lambda value: value,
    ) -> None:
        """`writes`: the connection batches go through (kept: a pool check-out per batch
        cost ~0.15 ms, about half of a small batch's cost), shared with the run manager's
        own writes so that they wait for each other in this process, not in SQLite."""
        self._redact = redact
        self._sessions = sessions
        self._writes = writes
        self._insert = DriverStatement(_INSERT_EVENTS, engine.dialect, keys=_COLUMNS)
        self._interval = flush_interval_s
        self._lock = threading.Lock()
        self._pending: list[RunEventView] = []
        self._writing: list[RunEventView] = []  # taken by the writer, not yet committed
        self._flush_lock = threading.Lock()
        self._last_seq: dict[str, int] = {}  # runs with events here, until retired + stored
        self._retired: set[str] = set()
        self._subscribers: dict[str, list[queue.Queue[RunEventView]]] = defaultdict(list)
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="run-events", daemon=True)
        self._writer.start()

    def publish(
        self,
        workspace_id: str,
        run_id: str,
        kind: str,
        node_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> RunEventView:
        data = self._redact(data) if data else data  # no secret value leaves in an event
        with self._lock:
            seq = self._next_seq(run_id)
            event = RunEventView(
                run_id, seq, kind, node_id, data or {}, datetime.now(UTC), workspace_id
            )
            self._pending.append(event)
            for subscriber in self._subscribers.get(run_id, ()):
                subscriber.put(event)
        return event

    def _next_seq(self, run_id: str) -> int:
        if run_id not in self._last_seq:
            with self._sessions() as session:
                stored = session.scalar(
                    select(func.max(RunEvent.seq)).where(RunEvent.run_id == run_id)
                )
            self._last_seq[run_id] = stored or 0
        self._last_seq[run_id] += 1
        return self._last_seq[run_id]

    def begin(self, run_id: str) -> None:
        """A new run: its events start at 1 (saves the look-up of the last number)."""
        with self._lock:
            self._last_seq.setdefault(run_id, 0)

    def retire(self, run_id: str) -> None:
        """The run's worker here has stopped (the run ended or waits): its number is
        forgotten once its events are stored, so a long-lived process does not keep one per
        run it ever ran. A later event of the run reads the last number from the table."""
        with self._lock:
            self._retired.add(run_id)

    def _forget_stored(self) -> None:
        """Under `_lock`, after a batch was stored: drop the numbers of retired runs that
        have no event waiting to be stored."""
        if not self._retired:
            return
        waiting = {e.run_id for e in (*self._writing, *self._pending)}
        for run_id in self._retired - waiting:
            self._last_seq.pop(run_id, None)
        self._retired &= waiting

    def has_subscribers(self, run_id: str) -> bool:
        return bool(self._subscribers.get(run_id))

    def subscribe(self, run_id: str) -> queue.Queue[RunEventView]:
        subscriber: queue.Queue[RunEventView] = queue.Queue()
        with self._lock:
            self._subscribers[run_id].append(subscriber)
        return subscriber

    def unsubscribe(self, run_id: str, subscriber: queue.Queue[RunEventView]) -> None:
        with self._lock:
            subscribers = self._subscribers.get(run_id, [])
            if subscriber in subscribers:
                subscribers.remove(subscriber)
            if not subscribers:
                self._subscribers.pop(run_id, None)

    def history(self, workspace_id: str, run_id: str, *, after: int = 0) -> list[RunEventView]:
        """Events of a run after sequence number `after` (stored and not yet stored)."""
        query = (
            select(RunEvent)
            .where(
                RunEvent.workspace_id == workspace_id,
                RunEvent.run_id == run_id,
                RunEvent.seq > after,
            )
            .order_by(RunEvent.seq)
        )
        with self._lock:  # unstored events first: one committed meanwhile is then in the table
            unstored = [
                e
                for e in (*self._writing, *self._pending)
                if e.run_id == run_id and e.seq > after and e.workspace_id == workspace_id
            ]
        with self._sessions() as session:
            stored = [
                RunEventView(r.run_id, r.seq, r.kind, r.node_id, r.data, r.at, r.workspace_id)
                for r in session.scalars(query)
            ]
        seen = {e.seq for e in stored}
        stored += [e for e in unstored if e.seq not in seen]
        return sorted(stored, key=lambda e: e.seq)

    def flush(self) -> None:
        with self._flush_lock:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
            self._writing = batch
            if not batch:
                self._forget_stored()
                return
        try:
            self._store(batch)
            with self._lock:
                self._writing = []
                self._forget_stored()
        except Exception:
            log.exception(
                "could not store %d run events; keeping them for the next batch", len(batch)
            )
            with self._lock:
                self._pending = batch + self._pending
                self._writing = []

    def _store(self, batch: list[RunEventView]) -> None:
        rows = [{name: getattr(event, name) for name in _COLUMNS} for event in batch]
        with self._writes.begin() as conn:
            self._insert.executemany(conn, rows)

    def _write_loop(self) -> None:
        # Every interval, never sooner: a batch per run end cost each run ~0.4 ms of the
        # writer's work (cold code, once per batch) while the next run went on; now runs that
        # end within one interval share a batch (tests/bench/RESULTS.md, runtime).
        while not self._stop.wait(self._interval):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self._writer.join(timeout=5)
        self.flush()
        self._writes.close()
