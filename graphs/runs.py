"""The run manager: runs are background jobs with ids, durable across crashes.

`start_run` stores a queued run and returns its id at once; a worker thread (bounded pool)
drives it through LangGraph with `durability="sync"`. On start the manager reconciles
approvals with interrupts and resumes every run whose worker died, from its last checkpoint.
"""

from __future__ import annotations

__all__ = ["FINAL_STATUSES", "RunManager", "RunView", "checked_input"]

import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Engine, Row, Table, bindparam, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from components.base import HttpPolicy, Meter, SecretResolver, Tier
from components.errors import Conflict, NotFound, StudioError, UserError
from components.registry import Registry
from components.sqlwrites import DriverStatement, KeptConnection
from graphs.approval_timeouts import ApprovalTimeouts
from graphs.approvals import ApprovalAuthority, Approvals, ApprovalView, Decision
from graphs.db import affected
from graphs.events import EventLog, RunEventView
from graphs.execution import Executor, enqueue_notifications
from graphs.failpoints import failpoint
from graphs.identity import (
    Actor,
    AuditHook,
    Authorizer,
    LocalAuthorizer,
    Redact,
    no_audit,
    no_redaction,
)
from graphs.leases import LeaseKeeper, process_owner_id
from graphs.library import GraphLibrary
from graphs.outbox import OutboxDispatcher, check_webhook_url, start_dispatcher_thread
from graphs.spec import GraphDocument
from graphs.tables import Run

log = logging.getLogger(__name__)

FINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled", "budget_exceeded"})
SETTLED_STATUSES = FINAL_STATUSES | {"waiting_approval"}

# Prebuilt Core statements for the per-run hot path: building, caching and compiling an ORM
# statement costs ~0.5-1 ms per call, more than SQLite takes to run it.
_RUNS = cast(Table, Run.__table__)
_INSERT_RUN = insert(_RUNS)
# What a new run's row leaves empty: the INSERT names every column (a DriverStatement).
_UNSET_RUN_COLUMNS = dict.fromkeys(
    ("output", "error", "lease_owner", "lease_expires_at", "started_at", "finished_at")
)
_SELECT_RUN = select(_RUNS).where(_RUNS.c.run_id == bindparam("p_run_id"))


@dataclass(frozen=True, slots=True)
class RunView:
    run_id: str
    graph_id: str
    version_id: str
    status: str
    started_by: str
    input: dict[str, Any]
    output: dict[str, Any] | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None


def _row_view(row: Row[Any]) -> RunView:
    return RunView(
        run_id=row.run_id,
        graph_id=row.graph_id,
        version_id=row.version_id,
        status=row.status,
        started_by=row.started_by,
        input=row.input,
        output=row.output,
        error=row.error,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


def _run_view(run: Run) -> RunView:
    return RunView(
        run_id=run.run_id,
        graph_id=run.graph_id,
        version_id=run.version_id,
        status=run.status,
        started_by=run.started_by,
        input=run.input,
        output=run.output,
        error=run.error,
        created_at=run.created_at,
        finished_at=run.finished_at,
    )


SecretsFor = Callable[[str], SecretResolver]
"""Workspace id → the resolver of that workspace's secrets."""
TierFloor = Callable[[str, str], Tier]
"""(workspace id, tool name) → the lowest tier the workspace allows for the tool."""


def env_secrets_for(_workspace_id: str) -> SecretResolver:
    """Headless default: every workspace reads secrets from the environment."""
    return env_secrets


def no_floor(_workspace_id: str, _tool: str) -> Tier:
    return "free"


def env_secrets(name: str) -> str:
    """Headless default: secret NAME comes from the environment variable STUDIO_SECRET_NAME."""
    import os

    value = os.environ.get(f"STUDIO_SECRET_{name}")
    if value is None:
        raise NotFound(f"secret {name!r} is not set; export STUDIO_SECRET_{name}")
    return value


class RunManager:
    def __init__(
        self,
        engine: Engine,
        checkpoint_path: Path,
        registry: Registry,
        *,
        max_concurrency: int = 4,
        lease_ttl_s: float = 30.0,
        secrets: SecretsFor = env_secrets_for,
        http: HttpPolicy | None = None,
        tier_floor: TierFloor = no_floor,
        authority: ApprovalAuthority | None = None,
        authorizer: Authorizer | None = None,
        max_crash_attempts: int = 3,
        outbox: OutboxDispatcher | None = None,
        outbox_interval_s: float = 1.0,
        stream_tokens: bool = False,
        audit: AuditHook = no_audit,
        redact: Redact = no_redaction,
        meter: Meter | None = None,
        schedule_interval_s: float = 10.0,
        timeout_interval_s: float = 10.0,
    ) -> None:
        self.sessions = sessionmaker(engine, expire_on_commit=False)
        self.engine = engine
        self.registry = registry
        self.authz: Authorizer = authorizer or LocalAuthorizer()
        self.audit = audit
        self.redact = redact
        self.library = GraphLibrary(self.sessions, registry, self.authz, audit)
        self.approvals = Approvals(self.sessions, authority, self.authz)
        # one connection for the writes every run makes (its row, its end, its events)
        self.run_writes = KeptConnection(engine)
        self.events = EventLog(self.sessions, engine=engine, writes=self.run_writes, redact=redact)
        self._insert_run = DriverStatement(
            _INSERT_RUN, engine.dialect, keys=[column.key for column in _RUNS.c]
        )
        self.leases = LeaseKeeper(self.sessions, process_owner_id(), lease_ttl_s)
        self.max_crash_attempts = max_crash_attempts
        self.executor = Executor(
            self,
            checkpoint_path,
            secrets=secrets,
            http=http or HttpPolicy(),
            tier_floor=tier_floor,
            meter=meter,
        )
        self.stream_tokens = stream_tokens
        self._token_runs: set[str] = set()
        self.outbox = outbox
        self._outbox_interval = outbox_interval_s
        self._outbox_stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix="run")
        self._max_concurrency = max_concurrency
        self._active: dict[str, threading.Event] = {}
        self._again: set[str] = set()
        self._lock = threading.Lock()
        self._settled = threading.Condition()
        self._settle_count = 0
        self._workspace_of: dict[str, str] = {}  # runs started here, until they settle
        self._waiters: dict[str, int] = {}  # run id → wait() calls on it (under _settled)
        self._final_views: dict[str, RunView] = {}  # ends seen here, for those waiters
        from graphs.schedules import Schedules  # it imports this module

        self.schedules = Schedules(self, interval_s=schedule_interval_s)
        self.timeouts = ApprovalTimeouts(self, interval_s=timeout_interval_s)

    # --- lifecycle -------------------------------------------------------------------
    def start(self) -> list[str]:
        """Reconcile approvals, start the lease heartbeat, resume orphaned runs."""
        from graphs.reconcile import reconcile

        reconcile(self)
        self.leases.start(self._on_heartbeat)
        if self.outbox is not None:
            start_dispatcher_thread(self.outbox, self._outbox_interval, self._outbox_stop)
        self.schedules.start()
        self.timeouts.start()
        return self.recover()

    def recover(self) -> list[str]:
        with self.sessions() as session:
            ids = list(
                session.scalars(select(Run.run_id).where(Run.status.in_(("queued", "running"))))
            )
        for run_id in ids:
            self._submit(run_id)
        return ids

    def close(self, *, wait: bool = True) -> None:
        self.leases.stop()
        self.schedules.stop()
        self.timeouts.stop()
        with self._lock:
            for flag in self._active.values():
                flag.set()
        self._pool.shutdown(wait=wait, cancel_futures=True)
        self._outbox_stop.set()
        if self.outbox is not None:
            try:  # a last pass, so a short-lived CLI process still delivers its notices
                self.outbox.deliver_pending()
            except Exception:
                log.exception("outbox: last delivery pass failed; rows stay queued")
        self.events.close()
        self.executor.close()
        self.run_writes.close()

    # --- service functions -----------------------------------------------------------
    def start_run(
        self,
        actor: Actor,
        *,
        graph_id: str | None = None,
        version_id: str | None = None,
        input: Mapping[str, Any] | None = None,
        notify: Mapping[str, str] | None = None,
        stream_tokens: bool = False,
    ) -> str:
        """Queue a run of a graph's latest version (or a given one); returns its id at once.

        Model tokens are published as `token` events when `stream_tokens` is set (a person is
        watching) or someone is subscribed to the run; otherwise each step's event carries
        the final text, which keeps unwatched runs as fast as plain LangGraph.
        """
        self.authz.require(actor, "run:start")
        if version_id:
            version = self.library.version(actor, version_id)
        elif graph_id:
            version = self.library.latest(actor, graph_id)
        else:
            raise UserError("start_run needs a graph_id or a version_id")
        values = checked_input(version.document, dict(input or {}))
        run_id = str(uuid.uuid4())
        now = datetime.now(UTC)
        row: dict[str, Any] = {
            "run_id": run_id,
            "workspace_id": actor.workspace_id,
            "graph_id": version.graph_id,
            "version_id": version.version_id,
            "thread_id": f"run:{run_id}",
            "status": "queued",
            "started_by": actor.user_id,
            "input": values,
            "notify": _checked_notify(notify),
            "attempts": 0,
            "created_at": now,
        }
        eager = self._reserve_slot(run_id)
        if eager:  # a worker is free: stored running, under this process's lease
            row.update(self.leases.lease_values(now), status="running", started_at=now)
        try:
            with self.run_writes.begin() as conn:  # no ORM (~1 ms), no Core execution
                self._insert_run.execute(conn, {**_UNSET_RUN_COLUMNS, **row})
        except BaseException:
            if eager:
                self._free_slot(run_id)
            raise
        self._workspace_of[run_id] = actor.workspace_id
        if stream_tokens or self.stream_tokens:
            self._token_runs.add(run_id)
        self.events.begin(run_id)
        self.events.publish(actor.workspace_id, run_id, "run_status", data={"status": "queued"})
        # the worker starts from this copy of the row (input as the table stores it) when
        # it holds the lease of a run nobody else has touched; otherwise it reads the row
        row["input"] = json.loads(json.dumps(values))
        fresh = Run(**row)
        if eager:
            self.leases.adopt(run_id)
            self._pool.submit(self._drive, run_id, fresh, True)
        else:
            self._submit(run_id, fresh=fresh)
        return run_id

    def wants_tokens(self, run_id: str) -> bool:
        return run_id in self._token_runs or self.events.has_subscribers(run_id)

    def submit(self, run_id: str, *, stream_tokens: bool = False) -> None:
        """Hand a queued run that another service stored (a fork, a retry) to a worker."""
        if stream_tokens or self.stream_tokens:
            self._token_runs.add(run_id)
        self._submit(run_id)

    def get(self, actor: Actor, run_id: str) -> RunView:
        with self.engine.connect() as conn:  # one prebuilt Core SELECT, no ORM session
            row = conn.execute(_SELECT_RUN, {"p_run_id": run_id}).one_or_none()
        if row is None or row.workspace_id != actor.workspace_id:
            raise NotFound(f"run {run_id!r} not found")
        self.authz.require(actor, "run:read")
        return _row_view(row)

    def list(self, actor: Actor, *, status: str | None = None, limit: int = 100) -> list[RunView]:
        self.authz.require(actor, "run:read")
        query = (
            select(Run)
            .where(Run.workspace_id == actor.workspace_id)
            .order_by(Run.created_at.desc())
            .limit(min(limit, 1000))
        )
        if status:
            query = query.where(Run.status == status)
        with self.sessions() as session:
            return [_run_view(r) for r in session.scalars(query)]

    def cancel(self, actor: Actor, run_id: str) -> RunView:
        with self.sessions() as session:
            run = self._run(session, actor, run_id)
            self.authz.require(actor, "run:cancel")
            changed = affected(
                session,
                update(Run)
                .where(
                    Run.run_id == run.run_id,
                    Run.status.in_(("queued", "running", "waiting_approval")),
                )
                .values(status="cancelled", finished_at=datetime.now(UTC)),
            )
            if not changed:
                raise Conflict(f"run {run_id!r} is already {run.status}")
            self.approvals.cancel_pending(session, run_id)
            enqueue_notifications(session, run, "cancelled")
            session.commit()
        with self._lock:
            if run_id in self._active:
                self._active[run_id].set()
        self.audit(actor, "run.cancelled", run_id, {})
        self.events.publish(actor.workspace_id, run_id, "run_status", data={"status": "cancelled"})
        self.notify_settled()
        return self.get(actor, run_id)

    def decide(
        self,
        actor: Actor,
        approval_id: str,
        decision: Decision,
        *,
        args: Mapping[str, Any] | None = None,
        feedback: str | None = None,
    ) -> ApprovalView:
        """Record a decision (once) and resume the run that waits on it at once (the audit
        entry is written while the run's worker starts)."""
        decided = self.approvals.decide(
            actor, approval_id, decision, args=args, feedback=feedback, validate_args=self._args
        )
        self.events.publish(
            actor.workspace_id,
            decided.run_id,
            "approval_decided",
            decided.node_id,
            {"approval_id": approval_id, "decision": decision, "by": actor.user_id},
        )
        failpoint("decision.after_commit")
        self._submit(decided.run_id)
        details = {"run_id": decided.run_id, "decision": decision, "tool": decided.action}
        self.audit(actor, "approval.decided", approval_id, {**details, "tier": decided.tier})
        return decided

    def _args(self, version_id: str, action: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """Edited arguments, checked against the tool's schema in the run's graph version."""
        return self.executor.arg_validator(version_id)(action, args)

    def iter_events(
        self, actor: Actor, run_id: str, *, after: int = 0, timeout_s: float = 300.0
    ) -> Iterator[RunEventView]:
        """Every event of the run after sequence `after` — stored ones, then live ones —
        until the run is final or waiting for a person (or `timeout_s` passes)."""
        self.get(actor, run_id)  # scope check: a foreign run is not found
        live = self.events.subscribe(run_id)  # before reading history, so nothing falls between
        try:
            last = after
            for event in self.events.history(actor.workspace_id, run_id, after=after):
                yield event
                last = event.seq
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                try:
                    event = live.get(timeout=0.05)
                except queue.Empty:
                    if self._is_settled(actor, run_id):
                        yield from _drain(live, last)  # published just before it settled
                        return
                    continue
                if event.seq > last:
                    yield event
                    last = event.seq
        finally:
            self.events.unsubscribe(run_id, live)

    def _is_settled(self, actor: Actor, run_id: str) -> bool:
        return run_id not in self._active and self.get(actor, run_id).status in SETTLED_STATUSES

    def wait(self, actor: Actor, run_id: str, *, timeout_s: float = 60.0) -> RunView:
        """Block until the run is final or waiting for a person (or the timeout passes)."""
        self._check_scope(actor, run_id)  # first: a foreign run is not found at once
        with self._settled:
            self._waiters[run_id] = self._waiters.get(run_id, 0) + 1
        try:
            return self._wait(actor, run_id, timeout_s)
        finally:
            with self._settled:
                self._waiters[run_id] -= 1
                if not self._waiters[run_id]:
                    del self._waiters[run_id]
                    self._final_views.pop(run_id, None)

    def _wait(self, actor: Actor, run_id: str, timeout_s: float) -> RunView:
        deadline = time.monotonic() + timeout_s
        while True:
            with self._settled:
                seen = self._settle_count
                busy = run_id in self._active and time.monotonic() < deadline
            if busy:  # running here: its end wakes us, no need to ask the database yet
                with self._settled:
                    if self._settle_count == seen:
                        self._settled.wait(deadline - time.monotonic())
                continue
            view = self._final_view(actor, run_id) or self.get(actor, run_id)
            if view.status in SETTLED_STATUSES and run_id not in self._active:
                return view
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return view
            with self._settled:  # no lost wake-up: a settle since `seen` skips the wait
                if self._settle_count == seen:
                    self._settled.wait(min(remaining, 0.05))

    def note_final(self, row: Mapping[str, Any]) -> None:
        """The row of a run this process has just ended, as its final UPDATE returned it
        (RunView's fields): whoever waits on the run gets it without reading the row again
        (final rows never change)."""
        with self._settled:
            if row["run_id"] in self._waiters:
                self._final_views[row["run_id"]] = RunView(**row)

    # --- internals -------------------------------------------------------------------
    def _check_scope(self, actor: Actor, run_id: str) -> None:
        """`get`'s checks — a foreign run is not found, then the read permission — without
        reading the row of a run this process started (a run never changes workspace)."""
        workspace = self._workspace_of.get(run_id)
        if workspace is None:
            self.get(actor, run_id)
        elif workspace != actor.workspace_id:
            raise NotFound(f"run {run_id!r} not found")
        else:
            self.authz.require(actor, "run:read")

    def _final_view(self, actor: Actor, run_id: str) -> RunView | None:
        with self._settled:
            view = self._final_views.get(run_id)
        if view is not None:
            self.authz.require(actor, "run:read")  # still allowed to read it?
        return view

    def _run(self, session: Session, actor: Actor, run_id: str) -> Run:
        run = session.get(Run, run_id)
        if run is None or run.workspace_id != actor.workspace_id:
            raise NotFound(f"run {run_id!r} not found")
        return run

    def notify_settled(self) -> None:
        with self._settled:
            self._settle_count += 1
            self._settled.notify_all()

    def _reserve_slot(self, run_id: str) -> bool:
        """Mark a new run active if a worker is free now, so it can be stored as running
        and go straight to that worker (no queued row to claim first)."""
        with self._lock:
            if len(self._active) >= self._max_concurrency:
                return False
            self._active[run_id] = threading.Event()
            return True

    def _free_slot(self, run_id: str) -> None:
        with self._lock:
            self._active.pop(run_id, None)

    def _submit(self, run_id: str, fresh: Run | None = None) -> None:
        with self._lock:
            if run_id in self._active:
                self._again.add(run_id)
                return
            self._active[run_id] = threading.Event()
        self._pool.submit(self._drive, run_id, fresh)

    def _drive(self, run_id: str, fresh: Run | None = None, leased: bool = False) -> None:
        """Passes over a run until it settles; `fresh` is the row just stored (`leased`:
        stored running under this process's lease)."""
        try:
            while True:
                again = self.executor.drive(run_id, self._active[run_id], fresh, leased)
                fresh, leased = None, False
                with self._lock:
                    if not again and run_id not in self._again:
                        del self._active[run_id]
                        break
                    self._again.discard(run_id)
        except Exception:
            log.exception("run %s: worker failed", run_id)
            with self._lock:
                self._active.pop(run_id, None)
        finally:
            self._workspace_of.pop(run_id, None)
            self.events.retire(run_id)
            self.notify_settled()

    def _on_heartbeat(self, held: set[str]) -> None:
        """Stop local work on runs that were cancelled from another process."""
        if not held:
            return
        with self.sessions() as session:
            cancelled = set(
                session.scalars(
                    select(Run.run_id).where(Run.run_id.in_(held), Run.status == "cancelled")
                )
            )
        with self._lock:
            for run_id in cancelled:
                if run_id in self._active:
                    self._active[run_id].set()


def _drain(live: queue.Queue[RunEventView], last: int) -> Iterator[RunEventView]:
    while True:
        try:
            event = live.get_nowait()
        except queue.Empty:
            return
        if event.seq > last:
            last = event.seq
            yield event


def checked_input(doc: GraphDocument, values: dict[str, Any]) -> dict[str, Any]:
    """The run's input with defaults filled in; unknown, missing or mistyped fields are a
    `UserError` that names them."""
    fields = {f.name: f for f in doc.input_fields()}
    unknown = sorted(set(values) - set(fields) - {"messages"})
    if unknown:
        raise UserError(
            f"unknown input {', '.join(map(repr, unknown))}; this graph takes "
            f"{', '.join(sorted(fields)) or 'no inputs'}"
        )
    types: dict[str, type | tuple[type, ...]] = {
        "string": str,
        "number": (int, float),
        "integer": int,
        "boolean": bool,
        "object": dict,
        "list": list,
    }
    for name, field in fields.items():
        if name not in values:
            if field.default is None:
                raise UserError(f"input {name!r} is required: {field.description or field.type}")
            values[name] = field.default
        expected = types.get(field.type)
        if expected and not isinstance(values[name], expected):
            raise UserError(f"input {name!r} must be a {field.type}")
    return values


def _checked_notify(notify: Mapping[str, str] | None) -> dict[str, str]:
    """Check notification targets before the run is stored (a bad one is a UserError)."""
    if not notify:
        return {}
    from components.netguard import parse_url
    from components.tools.email import is_email_address

    allowed = {"webhook", "email"}
    extra = set(notify or {}) - allowed
    if extra:
        raise UserError(f"notify takes only {', '.join(sorted(allowed))}")
    targets = {k: v for k, v in (notify or {}).items() if v}
    if not all(isinstance(v, str) for v in targets.values()):
        raise UserError("notify targets must be strings")
    if "webhook" in targets:
        try:
            parse_url(targets["webhook"])
            check_webhook_url(targets["webhook"])  # the same check the outbox makes later
        except StudioError as exc:
            raise UserError(f"notify webhook: {exc}") from None
    if "email" in targets and not is_email_address(targets["email"]):
        raise UserError(f"notify email {targets['email']!r} is not an e-mail address")
    return targets
