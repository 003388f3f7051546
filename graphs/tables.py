"""Tables owned by `graphs`: graphs, immutable versions, runs, approvals, effects, outbox,
run events. Rows of other libraries (users, workspaces) are referenced by id only.
"""

from __future__ import annotations

__all__ = [
    "Approval",
    "Base",
    "Effect",
    "Graph",
    "GraphSchedule",
    "GraphVersion",
    "OutboxMessage",
    "Run",
    "RunEvent",
    "RunFork",
]

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID = String(36)


class Base(DeclarativeBase):
    pass


class Graph(Base):
    __tablename__ = "graphs"
    graph_id: Mapped[str] = mapped_column(ID, primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class GraphVersion(Base):
    """An immutable saved version; runs are pinned to one."""

    __tablename__ = "graph_versions"
    __table_args__ = (UniqueConstraint("graph_id", "number"),)
    version_id: Mapped[str] = mapped_column(ID, primary_key=True)
    graph_id: Mapped[str] = mapped_column(ForeignKey("graphs.graph_id"), index=True)
    workspace_id: Mapped[str] = mapped_column(String(64), index=True)
    number: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    document_hash: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    published: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")
    """Runs start on the newest published version; drafts may be semantically invalid."""
    base_number: Mapped[int | None] = mapped_column(Integer, default=None)
    """The version the editor started from (None: a first version or an import)."""


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_status_lease", "status", "lease_expires_at"),)
    run_id: Mapped[str] = mapped_column(ID, primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(64), index=True)
    graph_id: Mapped[str] = mapped_column(ForeignKey("graphs.graph_id"), index=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("graph_versions.version_id"))
    thread_id: Mapped[str] = mapped_column(String(80), unique=True)
    status: Mapped[str] = mapped_column(String(20))
    started_by: Mapped[str] = mapped_column(String(64))
    input: Mapped[dict[str, Any]] = mapped_column(JSON)
    output: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    notify: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(80), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class Approval(Base):
    """One gated call (or human step), bound to the exact call that was shown."""

    __tablename__ = "approvals"
    __table_args__ = (
        Index("ix_approvals_inbox", "workspace_id", "status", "created_at", "approval_id"),
        Index("ix_approvals_history", "workspace_id", "decided_at", "approval_id"),
        Index("ix_approvals_warn_due", "status", "warn_at"),
        Index("ix_approvals_expiry_due", "status", "expires_at"),
        Index("ix_approvals_timed_out", "workspace_id", "timed_out_at"),
    )
    approval_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(64), index=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id"), index=True)
    node_id: Mapped[str] = mapped_column(String(64))
    tool_call_id: Mapped[str] = mapped_column(String(128))
    interrupt_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(128))
    args: Mapped[dict[str, Any]] = mapped_column(JSON)
    args_hash: Mapped[str] = mapped_column(String(64))
    tier: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(Text, default="")
    allowed: Mapped[list[str]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12), index=True)
    decision: Mapped[str | None] = mapped_column(String(10), default=None)
    decided_args: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    decided_args_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    feedback: Mapped[str | None] = mapped_column(Text, default=None)
    decided_by: Mapped[str | None] = mapped_column(String(64), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    tainted: Mapped[bool | None] = mapped_column(Boolean, default=None, nullable=True)
    """Whether the run had read untrusted content before this call (None: not recorded)."""
    # the node's approval timeout (policies.approval_timeouts), fixed when the row is written
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    warn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    timeout_action: Mapped[str | None] = mapped_column(String(10), default=None)
    warned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    """When the warning was queued (set once, by compare-and-set, with the outbox rows)."""
    timed_out_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    """When the timeout's action was taken (rejected, escalated or marked overdue)."""


class Effect(Base):
    """The effect ledger: one row per side-effecting call, keyed by where it was made."""

    __tablename__ = "effects"
    __table_args__ = (UniqueConstraint("workspace_id", "run_id", "node_id", "tool_call_id"),)
    effect_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(String(36), index=True)
    node_id: Mapped[str] = mapped_column(String(64))
    tool_call_id: Mapped[str] = mapped_column(String(128))
    user_id: Mapped[str] = mapped_column(String(64))  # on whose behalf the effect happens
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    tool: Mapped[str] = mapped_column(String(128))
    args_hash: Mapped[str] = mapped_column(String(64))
    call_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    """Hash of (tool, arguments) alone: a fork finds its origin's effect by it."""
    status: Mapped[str] = mapped_column(String(10))
    result: Mapped[Any | None] = mapped_column(JSON, default=None, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class OutboxMessage(Base):
    """Durable outgoing e-mail and webhooks, delivered with their idempotency key."""

    __tablename__ = "outbox"
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(64), index=True)
    run_id: Mapped[str | None] = mapped_column(String(36), index=True, default=None)
    channel: Mapped[str] = mapped_column(String(10))
    recipient: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(10), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


class RunEvent(Base):
    """Progress events of a run, numbered per run (SSE resumes from a number)."""

    __tablename__ = "run_events"
    __table_args__ = (UniqueConstraint("run_id", "seq"),)
    event_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(String(64), index=True)
    run_id: Mapped[str] = mapped_column(String(36))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(24))
    node_id: Mapped[str | None] = mapped_column(String(64), default=None)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RunFork(Base):
    """A run started from a checkpoint of another run (time travel or a retry).

    Its thread begins as a copy of the origin's history up to `checkpoint_id`; its effect
    ledger answers calls its origin (or the origin's origin) already made.
    """

    __tablename__ = "run_forks"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id"), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(64), index=True)
    origin_run_id: Mapped[str] = mapped_column(ForeignKey("runs.run_id"), index=True)
    checkpoint_id: Mapped[str] = mapped_column(String(64))
    step: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(10))  # "fork" | "retry"
    edits: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class GraphSchedule(Base):
    """A cron schedule of a graph: the run manager's scheduler starts a run at each time.

    `next_fire_at` moves forward by compare-and-set before a run starts, so a due schedule
    fires once, whichever process sees it first (and at most once after a restart).
    """

    __tablename__ = "graph_schedules"
    graph_id: Mapped[str] = mapped_column(ForeignKey("graphs.graph_id"), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(String(64), index=True)
    cron: Mapped[str] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    input: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    run_as: Mapped[str] = mapped_column(String(64))  # the user who set it: runs start as them
    next_fire_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), default=None, index=True
    )
    last_fire_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    last_run_id: Mapped[str | None] = mapped_column(String(36), default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
