"""Tables owned by `analytics`: usage events, price overrides, budgets, the response cache.

`usage_events` is the source of truth for cost and latency: one row per model attempt
(retries, fallbacks, cache hits and budget refusals included) and per tool call. A NULL
token count means the provider reported no usage — missing, never zero. Rows of other
libraries (workspaces, users, runs, graphs) are referenced by id only.

Budget counters keep money as integer nano-dollars so that the check-and-reserve UPDATE is
exact arithmetic in SQL on every database.
"""

from __future__ import annotations

__all__ = [
    "MONEY",
    "Base",
    "Budget",
    "BudgetCounter",
    "BudgetReservation",
    "CacheEntry",
    "PriceOverride",
    "UTCDateTime",
    "UsageEvent",
]

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from components.sqltypes import UTCDateTime

MONEY = Numeric(18, 9, asdecimal=True)
WS = String(64)


class Base(DeclarativeBase):
    pass


class UsageEvent(Base):
    """One model attempt or tool call (the step-event source of truth for dashboards)."""

    __tablename__ = "usage_events"
    __table_args__ = (
        Index("ix_usage_events_ws_created", "workspace_id", "created_at"),
        Index("ix_usage_events_run", "run_id"),
    )
    event_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(WS)
    run_id: Mapped[str] = mapped_column(String(36))
    graph_id: Mapped[str] = mapped_column(String(36))
    graph_version: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[str] = mapped_column(String(64))  # who started the run
    node_id: Mapped[str] = mapped_column(String(200))  # "parent/child" inside sub-graphs
    kind: Mapped[str] = mapped_column(String(8))  # model | tool
    attempt: Mapped[int] = mapped_column(Integer)  # 1-based, across retries and fallbacks
    model: Mapped[str | None] = mapped_column(String(200))
    provider: Mapped[str | None] = mapped_column(String(64))
    tool: Mapped[str | None] = mapped_column(String(128))
    input_tokens: Mapped[int | None] = mapped_column(Integer)  # includes cached_tokens
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    cached_tokens: Mapped[int | None] = mapped_column(Integer)
    usage_missing: Mapped[bool] = mapped_column(Boolean)
    cost_usd: Mapped[Decimal | None] = mapped_column(MONEY)  # NULL: usage or price unknown
    price_source: Mapped[str] = mapped_column(String(16))  # genai-prices|override|unknown|cache
    ttft_ms: Mapped[float | None] = mapped_column(Float)  # streamed answers only
    latency_ms: Mapped[float] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(String(16))
    cache_hit: Mapped[bool] = mapped_column(Boolean)
    saved_usd: Mapped[Decimal | None] = mapped_column(MONEY)
    error_kind: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PriceOverride(Base):
    """A workspace's own price of a model (custom or self-hosted), per million tokens.
    `provider` '*' matches every provider."""

    __tablename__ = "price_overrides"
    __table_args__ = (UniqueConstraint("workspace_id", "model", "provider"),)
    override_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(WS, index=True)
    model: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(64))
    input_per_mtok: Mapped[Decimal] = mapped_column(MONEY)
    output_per_mtok: Mapped[Decimal] = mapped_column(MONEY)
    cached_per_mtok: Mapped[Decimal | None] = mapped_column(MONEY)  # None: the input price
    updated_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Budget(Base):
    """An amount per period for a workspace, user, graph or run. `scope_id` '*' gives every
    user / graph / run its own amount; for 'run' a graph id limits it to that graph's runs."""

    __tablename__ = "budgets"
    budget_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(WS, index=True)
    scope: Mapped[str] = mapped_column(String(10))  # workspace | user | graph | run
    scope_id: Mapped[str] = mapped_column(String(64))
    amount_usd: Mapped[Decimal] = mapped_column(MONEY)
    period: Mapped[str] = mapped_column(String(8))  # day | week | month | total
    action: Mapped[str] = mapped_column(String(10))  # stop | fallback | approve
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BudgetCounter(Base):
    """Spent and reserved (in flight) money of one budget, subject and period."""

    __tablename__ = "budget_counters"
    budget_id: Mapped[str] = mapped_column(
        ForeignKey("budgets.budget_id", ondelete="CASCADE"), primary_key=True
    )
    subject_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    period_key: Mapped[str] = mapped_column(String(16), primary_key=True)
    spent_nusd: Mapped[int] = mapped_column(BigInteger)
    reserved_nusd: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BudgetReservation(Base):
    """An estimate reserved for a call in flight; released when the call settles, or when
    it expires (a worker that died mid-call)."""

    __tablename__ = "budget_reservations"
    permit_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    budget_id: Mapped[str] = mapped_column(
        ForeignKey("budgets.budget_id", ondelete="CASCADE"), primary_key=True
    )
    subject_id: Mapped[str] = mapped_column(String(64))
    period_key: Mapped[str] = mapped_column(String(16))
    amount_nusd: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class CacheEntry(Base):
    """One cached model answer of one workspace (the key hashes model, parameters,
    messages and tools; the workspace is part of the primary key)."""

    __tablename__ = "response_cache"
    workspace_id: Mapped[str] = mapped_column(WS, primary_key=True)
    cache_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    model: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    cached_tokens: Mapped[int | None] = mapped_column(Integer)
    cost_usd: Mapped[Decimal | None] = mapped_column(MONEY)
    size_bytes: Mapped[int] = mapped_column(Integer)
    hits: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
