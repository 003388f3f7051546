"""Budgets and price overrides of a workspace: service functions taking the acting identity.

Changing them needs ``budget:manage`` (admins); reading them ``analytics:read``. Every
query is scoped by the actor's workspace: a budget of another workspace is "not found".
A budget limits model spend per period for the whole workspace, a user, a graph or each
run; ``scope_id`` '*' gives every user / graph / run its own amount (for 'run' a graph id
limits it to that graph's runs). Spend counts from the budget's creation on.
"""

from __future__ import annotations

__all__ = [
    "ACTIONS",
    "PERIODS",
    "SCOPES",
    "ActorLike",
    "Authorizer",
    "BudgetStatus",
    "BudgetView",
    "Budgets",
    "PriceView",
]

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session, sessionmaker

from analytics.guard import period_key
from analytics.pricing import NANO_USD
from analytics.tables import Budget, BudgetCounter, BudgetReservation, PriceOverride
from components.errors import NotFound, UserError

SCOPES = ("workspace", "user", "graph", "run")
PERIODS = ("day", "week", "month", "total")
ACTIONS = ("stop", "fallback", "approve")
_MAX_USD = Decimal(1_000_000_000)


class ActorLike(Protocol):
    """Who acts, in which workspace (`graphs.identity.Actor` fits)."""

    @property
    def workspace_id(self) -> str: ...

    @property
    def user_id(self) -> str: ...


class Authorizer(Protocol):
    """Raises `Forbidden` unless the actor may do the action (the studio's RBAC fits)."""

    def require(self, actor: Any, action: str) -> None: ...


AuditHook = Callable[[Any, str, str, Mapping[str, Any]], None]


@dataclass(frozen=True, slots=True)
class BudgetView:
    budget_id: str
    scope: str
    scope_id: str
    amount_usd: Decimal
    period: str
    action: str
    created_by: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """A budget's counter for one subject in the current period."""

    budget: BudgetView
    subject_id: str
    period_key: str
    spent_usd: Decimal
    reserved_usd: Decimal


@dataclass(frozen=True, slots=True)
class PriceView:
    model: str
    provider: str
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_per_mtok: Decimal | None
    updated_by: str
    updated_at: datetime


def _view(row: Budget) -> BudgetView:
    return BudgetView(
        row.budget_id,
        row.scope,
        row.scope_id,
        row.amount_usd,
        row.period,
        row.action,
        row.created_by,
        row.created_at,
    )


def _price_view(row: PriceOverride) -> PriceView:
    return PriceView(
        row.model,
        row.provider,
        row.input_per_mtok,
        row.output_per_mtok,
        row.cached_per_mtok,
        row.updated_by,
        row.updated_at,
    )


def _amount(value: Decimal | int | float | str, what: str) -> Decimal:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise UserError(f"{what} must be a number of dollars, e.g. 5 or 0.25") from None
    if not amount.is_finite() or amount < 0 or amount >= _MAX_USD:
        raise UserError(f"{what} must be between 0 and {_MAX_USD} dollars")
    return amount.quantize(NANO_USD)


def _choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise UserError(f"{what} {value!r} is not one of {', '.join(allowed)}")
    return value


def _name(value: str, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise UserError(f"{what} must be 1 to {limit} characters")
    return value.strip()


class Budgets:
    """The budget and price service of the studio."""

    def __init__(
        self,
        engine: Engine,
        authorizer: Authorizer,
        *,
        on_change: Callable[[str], None] = lambda _workspace_id: None,
        audit: AuditHook | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._authz = authorizer
        self._on_change = on_change
        self._audit = audit
        self._clock = clock

    # --- budgets ---------------------------------------------------------------------
    def create(
        self,
        actor: ActorLike,
        *,
        scope: str,
        amount_usd: Decimal | int | float | str,
        period: str = "month",
        action: str = "stop",
        scope_id: str = "*",
    ) -> BudgetView:
        self._authz.require(actor, "budget:manage")
        row = Budget(
            budget_id=str(uuid.uuid4()),
            workspace_id=actor.workspace_id,
            scope=_choice(scope, SCOPES, "scope"),
            scope_id="*" if scope == "workspace" else _name(scope_id, "scope_id", 64),
            amount_usd=_amount(amount_usd, "amount_usd"),
            period=_choice(period, PERIODS, "period"),
            action=_choice(action, ACTIONS, "action"),
            created_by=actor.user_id,
            created_at=self._clock(),
        )
        with self._sessions() as session:
            session.add(row)
            session.commit()
        self._changed(actor, "budget.created", row.budget_id, {"scope": scope})
        return _view(row)

    def update(
        self,
        actor: ActorLike,
        budget_id: str,
        *,
        amount_usd: Decimal | int | float | str | None = None,
        action: str | None = None,
    ) -> BudgetView:
        with self._sessions() as session:
            row = self._budget(session, actor, budget_id)
            self._authz.require(actor, "budget:manage")
            if amount_usd is not None:
                row.amount_usd = _amount(amount_usd, "amount_usd")
            if action is not None:
                row.action = _choice(action, ACTIONS, "action")
            session.commit()
            view = _view(row)
        self._changed(actor, "budget.changed", budget_id, {"amount_usd": str(view.amount_usd)})
        return view

    def delete(self, actor: ActorLike, budget_id: str) -> None:
        with self._sessions() as session:
            self._budget(session, actor, budget_id)
            self._authz.require(actor, "budget:manage")
            for table in (BudgetReservation, BudgetCounter):
                session.execute(delete(table).where(table.budget_id == budget_id))
            session.execute(delete(Budget).where(Budget.budget_id == budget_id))
            session.commit()
        self._changed(actor, "budget.deleted", budget_id, {})

    def list_budgets(self, actor: ActorLike) -> list[BudgetView]:
        self._authz.require(actor, "analytics:read")
        query = (
            select(Budget)
            .where(Budget.workspace_id == actor.workspace_id)
            .order_by(Budget.created_at)
        )
        with self._sessions() as session:
            return [_view(row) for row in session.scalars(query)]

    def status(
        self, actor: ActorLike, budget_id: str, subject_id: str | None = None
    ) -> BudgetStatus:
        """Spent and reserved money of a budget in the current period (for a user, graph or
        run budget: of `subject_id`; for a workspace budget: the workspace's)."""
        with self._sessions() as session:
            row = self._budget(session, actor, budget_id)
            self._authz.require(actor, "analytics:read")
            subject = actor.workspace_id if row.scope == "workspace" else subject_id
            if subject is None:
                subject = row.scope_id
            key = period_key(row.period, self._clock())
            counter = session.get(BudgetCounter, (budget_id, subject, key))
            spent = counter.spent_nusd if counter else 0
            reserved = counter.reserved_nusd if counter else 0
            return BudgetStatus(_view(row), subject, key, spent * NANO_USD, reserved * NANO_USD)

    def _budget(self, session: Session, actor: ActorLike, budget_id: str) -> Budget:
        row = session.get(Budget, budget_id)
        if row is None or row.workspace_id != actor.workspace_id:
            raise NotFound(f"budget {budget_id!r} not found")
        return row

    # --- price overrides -------------------------------------------------------------
    def set_price(
        self,
        actor: ActorLike,
        *,
        model: str,
        input_per_mtok: Decimal | int | float | str,
        output_per_mtok: Decimal | int | float | str,
        cached_per_mtok: Decimal | int | float | str | None = None,
        provider: str = "*",
    ) -> PriceView:
        """Set this workspace's price of a model (per million tokens); `provider` '*'
        applies to every provider serving a model of that name."""
        self._authz.require(actor, "budget:manage")
        model, provider = _name(model, "model", 200), _name(provider, "provider", 64)
        values = {
            "input_per_mtok": _amount(input_per_mtok, "input_per_mtok"),
            "output_per_mtok": _amount(output_per_mtok, "output_per_mtok"),
            "cached_per_mtok": None
            if cached_per_mtok is None
            else _amount(cached_per_mtok, "cached_per_mtok"),
            "updated_by": actor.user_id,
            "updated_at": self._clock(),
        }
        with self._sessions() as session:
            row = session.scalar(self._price_query(actor, model, provider))
            if row is None:
                row = PriceOverride(workspace_id=actor.workspace_id, model=model, provider=provider)
                session.add(row)
            for name, value in values.items():
                setattr(row, name, value)
            session.commit()
            view = _price_view(row)
        self._changed(actor, "price.set", f"{provider}/{model}", {})
        return view

    def delete_price(self, actor: ActorLike, *, model: str, provider: str = "*") -> None:
        with self._sessions() as session:
            row = session.scalar(self._price_query(actor, model, provider))
            if row is None:
                raise NotFound(f"no price override for model {model!r} ({provider})")
            self._authz.require(actor, "budget:manage")
            session.delete(row)
            session.commit()
        self._changed(actor, "price.deleted", f"{provider}/{model}", {})

    def list_prices(self, actor: ActorLike) -> list[PriceView]:
        self._authz.require(actor, "analytics:read")
        query = (
            select(PriceOverride)
            .where(PriceOverride.workspace_id == actor.workspace_id)
            .order_by(PriceOverride.model, PriceOverride.provider)
        )
        with self._sessions() as session:
            return [_price_view(row) for row in session.scalars(query)]

    @staticmethod
    def _price_query(actor: ActorLike, model: str, provider: str) -> Any:
        return select(PriceOverride).where(
            PriceOverride.workspace_id == actor.workspace_id,
            PriceOverride.model == model,
            PriceOverride.provider == provider,
        )

    def _changed(
        self, actor: ActorLike, action: str, target: str, details: Mapping[str, Any]
    ) -> None:
        self._on_change(actor.workspace_id)
        if self._audit is not None:
            self._audit(actor, action, target, details)
