"""The studio's meter: every model attempt and tool call becomes a usage record; budgets are
checked before each model call and settled after it; answers are cached per workspace.

`SqlMeter` implements `components.base.Meter`, the seam the runtime calls from node threads
(`studio.context` wires it into the run manager; headless runs use `NoMeter`). Writes are
synchronous: a model call's usage record, its budget settlement and its cache entry commit
in one transaction before the step's checkpoint, so a crash can re-run a call (and it is
recorded twice, as the provider billed it twice) but never lose one.

What is charged to budgets: the price of the usage the provider reported; for an answer
whose usage is missing, the estimate (the record itself stays "missing"); nothing for
attempts the provider refused without answering (429, 5xx, timeouts before an answer).
Models without a known price cost nothing against budgets — give them a price override.
"""

from __future__ import annotations

__all__ = ["SqlMeter", "open_meter"]

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Engine, Table, insert, select

from analytics.cache import ResponseCache
from analytics.guard import BudgetGuard, BudgetRule, Slot
from analytics.pricing import Pricer, Rates, to_nano
from analytics.tables import Budget, PriceOverride, UsageEvent
from components.base import (
    BudgetAction,
    CallSite,
    ModelAttempt,
    ModelRequest,
    Permit,
    RefusalOutcome,
    TokenUsage,
)
from components.sqlwrites import DriverStatement, KeptConnection

_NOTHING = TokenUsage(0, 0, 0)
_INSERT_EVENTS = insert(cast(Table, UsageEvent.__table__))


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Settings:
    rules: tuple[BudgetRule, ...]
    prices: dict[tuple[str, str], Rates]
    loaded_at: float


@dataclass(frozen=True, slots=True)
class _InFlight:
    slots: tuple[Slot, ...]
    estimate_nusd: int


class SqlMeter:
    """`Meter` on the studio database (tables of `analytics.tables`)."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], datetime] = _utcnow,
        settings_ttl_s: float = 2.0,
        reservation_ttl_s: float = 1800.0,
        cache_max_bytes: int = 50_000_000,
        cache_max_entries: int = 10_000,
    ) -> None:
        self._engine = engine
        # Every model call writes here (its record, its settlement): one kept connection and
        # an INSERT compiled once, as the run path does (components.sqlwrites: a pool
        # check-out and Core's per-execution work cost more than the write itself)
        self._writes = KeptConnection(engine)
        self._insert_usage = DriverStatement(_INSERT_EVENTS, engine.dialect, keys=_USAGE_COLUMNS)
        self._clock = clock
        self._ttl = settings_ttl_s
        self._settings: dict[str, _Settings] = {}
        self._inflight: dict[str, _InFlight] = {}
        self._lock = threading.Lock()
        self.pricer = Pricer(lambda workspace_id: self._load(workspace_id).prices)
        self.guard = BudgetGuard(engine, clock, reservation_ttl_s=reservation_ttl_s)
        self.cache = ResponseCache(
            clock,
            max_bytes_per_workspace=cache_max_bytes,
            max_entries_per_workspace=cache_max_entries,
        )
        self._swept_at = 0.0

    def invalidate(self, workspace_id: str | None = None) -> None:
        """Forget cached budgets and prices (of one workspace, or all) after a change."""
        with self._lock:
            if workspace_id is None:
                self._settings.clear()
            else:
                self._settings.pop(workspace_id, None)

    # --- the Meter seam ----------------------------------------------------------------
    def admit(
        self, site: CallSite, request: ModelRequest, *, attempt: int, force: bool = False
    ) -> Permit:
        """Before a call: a cached answer, or the estimate reserved on every budget that
        applies, or the budget that would be exceeded."""
        if request.cache_key and not force:
            cached = self._cached(site, request, attempt)
            if cached is not None:
                return cached
        self._sweep()
        estimate, _ = self._quote(site, request, [request.model], request.estimate)
        slots = self.guard.slots(self._load(site.workspace_id).rules, site)
        if not slots:
            return Permit("go", site, request, estimate_usd=estimate)
        permit_id = str(uuid.uuid4())
        amount = to_nano(estimate)
        refused = self.guard.reserve(slots, permit_id, amount, force=force)
        if refused is not None:
            rule = refused.rule
            return Permit("over_budget", site, request, "", estimate, rule.describe(), rule.action)
        with self._lock:
            self._inflight[permit_id] = _InFlight(tuple(slots), amount)
        return Permit("go", site, request, permit_id, estimate)

    def settle(
        self, permit: Permit, attempts: Sequence[ModelAttempt], answer: Any = None
    ) -> Decimal | None:
        """After a call: one record per attempt, the budgets charged with what it cost, the
        answer cached. Returns the cost (None when some of it is unknown)."""
        with self._lock:
            inflight = self._inflight.pop(permit.permit_id, None) if permit.permit_id else None
        estimate_nusd = inflight.estimate_nusd if inflight else to_nano(permit.estimate_usd)
        rows, charge, total = [], 0, Decimal(0)
        known = True
        for attempt in attempts:
            cost, source = self._attempt_cost(permit, attempt)
            if cost is not None:
                charge, total = charge + to_nano(cost), total + cost
            elif attempt.answered:  # billed, but we cannot tell how much: the estimate
                charge, known = charge + estimate_nusd, False
            rows.append(self._model_row(permit, attempt, cost, source))
        with self._writes.begin() as conn:
            if rows:
                self._insert_usage.executemany(conn, rows)
            if inflight is not None:
                self.guard.settle(conn, permit.permit_id, inflight.slots, charge)
            final = attempts[-1] if attempts else None
            if answer is not None and final is not None and final.outcome == "ok":
                self.cache.store(
                    conn,
                    workspace_id=permit.site.workspace_id,
                    key=str(permit.request.cache_key),
                    model=final.model,
                    provider=permit.request.provider,
                    response=answer,
                    usage=final.usage,
                    cost_usd=rows[-1]["cost_usd"],
                    ttl_s=permit.request.cache_ttl_s,
                )
        return total if known else None

    def refuse(self, permit: Permit, *, attempt: int, outcome: RefusalOutcome) -> None:
        """A call the budgets refused: nothing was sent, so it used and cost nothing."""
        _, source = self._quote(permit.site, permit.request, [permit.request.model], _NOTHING)
        refused = ModelAttempt(attempt, "ok", permit.request.model, _NOTHING, 0.0)
        row = self._model_row(permit, refused, Decimal(0), source)
        row.update(outcome=outcome, error_kind="budget")
        self._insert(row)

    def record_tool(
        self, site: CallSite, tool: str, *, latency_ms: float, ok: bool, error_kind: str | None
    ) -> None:
        row = _base_row(site, self._clock())
        row.update(
            kind="tool",
            tool=tool,
            latency_ms=latency_ms,
            outcome="ok" if ok else "error",
            error_kind=error_kind,
        )
        self._insert(row)

    # --- internals ---------------------------------------------------------------------
    def _cached(self, site: CallSite, request: ModelRequest, attempt: int) -> Permit | None:
        started = time.perf_counter()
        with self._writes.begin() as conn:
            hit = self.cache.hit(conn, site.workspace_id, str(request.cache_key))
            if hit is None:
                return None
            row = _base_row(site, self._clock())
            row.update(
                kind="model",
                attempt=attempt,
                model=request.model,
                provider=request.provider,
                input_tokens=0,
                output_tokens=0,
                cached_tokens=0,
                cost_usd=Decimal(0),
                price_source="cache",
                latency_ms=round((time.perf_counter() - started) * 1000, 3),
                outcome="cache_hit",
                cache_hit=True,
                saved_usd=hit.cost_usd,
            )
            self._insert_usage.execute(conn, row)
        return Permit(
            "cached",
            site,
            request,
            estimate_usd=Decimal(0),
            cached=hit.response,
            saved_usd=hit.cost_usd,
        )

    def _attempt_cost(self, permit: Permit, attempt: ModelAttempt) -> tuple[Decimal | None, str]:
        models = [attempt.model, permit.request.model]
        if attempt.usage is None:
            return None, self._quote(permit.site, permit.request, models, _NOTHING)[1]
        return self._quote(permit.site, permit.request, models, attempt.usage)

    def _quote(
        self, site: CallSite, request: ModelRequest, models: list[str], usage: TokenUsage
    ) -> tuple[Decimal | None, str]:
        return self.pricer.quote(
            site.workspace_id, request.provider, request.api_url, models, usage
        )

    def _model_row(
        self, permit: Permit, attempt: ModelAttempt, cost: Decimal | None, source: str
    ) -> dict[str, Any]:
        usage = attempt.usage
        row = _base_row(permit.site, self._clock())
        row.update(
            kind="model",
            attempt=attempt.attempt,
            model=attempt.model,
            provider=permit.request.provider,
            input_tokens=usage.input_tokens if usage else None,
            output_tokens=usage.output_tokens if usage else None,
            cached_tokens=usage.cached_tokens if usage else None,
            usage_missing=usage is None,
            cost_usd=cost,
            price_source=source,
            ttft_ms=attempt.ttft_ms,
            latency_ms=attempt.latency_ms,
            outcome=attempt.outcome,
            error_kind=attempt.error_kind,
        )
        return row

    def _insert(self, row: dict[str, Any]) -> None:
        with self._writes.begin() as conn:
            self._insert_usage.execute(conn, row)

    def close(self) -> None:
        self._writes.close()

    def _load(self, workspace_id: str) -> _Settings:
        with self._lock:
            found = self._settings.get(workspace_id)
        if found is not None and time.monotonic() - found.loaded_at < self._ttl:
            return found
        with self._engine.connect() as conn:
            budgets = conn.execute(select(Budget).where(Budget.workspace_id == workspace_id))
            rules = tuple(
                BudgetRule(
                    b.budget_id, b.scope, b.scope_id, b.amount_usd, b.period, _action(b.action)
                )
                for b in budgets
            )
            overrides = conn.execute(
                select(PriceOverride).where(PriceOverride.workspace_id == workspace_id)
            )
            prices = {
                (o.model, o.provider): Rates(o.input_per_mtok, o.output_per_mtok, o.cached_per_mtok)
                for o in overrides
            }
        settings = _Settings(rules, prices, time.monotonic())
        with self._lock:
            self._settings[workspace_id] = settings
        return settings

    def _sweep(self) -> None:
        """Release expired reservations now and then (at most once a minute)."""
        now = time.monotonic()
        with self._lock:
            due = now - self._swept_at > 60
            if due:
                self._swept_at = now
        if due:
            self.guard.release_expired()


def _action(value: str) -> BudgetAction:
    return "fallback" if value == "fallback" else "approve" if value == "approve" else "stop"


# every column but the key, as `_base_row` sets them all
_USAGE_COLUMNS = tuple(c.key for c in cast(Table, UsageEvent.__table__).c if c.key != "event_id")


def _base_row(site: CallSite, now: datetime) -> dict[str, Any]:
    return {
        "workspace_id": site.workspace_id,
        "run_id": site.run_id,
        "graph_id": site.graph_id,
        "graph_version": site.graph_version,
        "user_id": site.user_id,
        "node_id": site.node_id,
        "kind": "model",
        "attempt": 1,
        "model": None,
        "provider": None,
        "tool": None,
        "input_tokens": None,
        "output_tokens": None,
        "cached_tokens": None,
        "usage_missing": False,
        "cost_usd": None,
        "price_source": "unknown",
        "ttft_ms": None,
        "latency_ms": 0.0,
        "outcome": "ok",
        "cache_hit": False,
        "saved_usd": None,
        "error_kind": None,
        "created_at": now,
    }


def open_meter(engine: Engine, **options: Any) -> SqlMeter:
    """Migrate the analytics tables on `engine` and return a meter on them (for
    `graphs.open_runtime(..., meter=open_meter)`)."""
    from analytics.db import migrate

    migrate(engine)
    return SqlMeter(engine, **options)
