"""Budgets before model calls: an atomic check-and-reserve, settled from actual usage.

Each budget that applies to a call has a counter row per subject and period (spent and
reserved nano-dollars). Before a call, one transaction reserves the estimate on every
counter with a conditional UPDATE — ``spent + reserved + estimate <= amount`` — in a fixed
order; if one counter refuses, nothing is reserved. So concurrent calls never commit more
than the budget, and the only overspend is what calls already in flight cost beyond their
estimate. After the call the reservation is replaced by what it actually cost. A worker
that dies mid-call leaves a reservation row that expires and is released.
"""

from __future__ import annotations

__all__ = ["BudgetGuard", "BudgetRule", "Slot", "period_key"]

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, and_, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from analytics.pricing import to_nano
from analytics.tables import Budget, BudgetCounter, BudgetReservation
from components.base import BudgetAction, CallSite

log = logging.getLogger(__name__)

# Prebuilt Core statements: building an ORM statement costs more than SQLite takes to run it,
# and these run around every model call.
_COUNTERS = cast(Table, BudgetCounter.__table__)
_RESERVATIONS = cast(Table, BudgetReservation.__table__)
_C = _COUNTERS.c
_KEY = and_(
    _C.budget_id == bindparam("p_budget"),
    _C.subject_id == bindparam("p_subject"),
    _C.period_key == bindparam("p_period"),
)
_TAKE = (
    update(_COUNTERS)
    .where(_KEY)
    .values(reserved_nusd=_C.reserved_nusd + bindparam("p_amount"), updated_at=bindparam("p_now"))
)
_TAKE_WITHIN = _TAKE.where(
    _C.spent_nusd + _C.reserved_nusd + bindparam("p_amount") <= bindparam("p_limit")
)
_EXISTS = select(_C.budget_id).where(_KEY)
_NEW_COUNTER = insert(_COUNTERS)
_NEW_RESERVATIONS = insert(_RESERVATIONS)
_RELEASE = (
    delete(_RESERVATIONS)
    .where(
        _RESERVATIONS.c.permit_id == bindparam("p_permit"),
        _RESERVATIONS.c.budget_id == bindparam("p_budget"),
    )
    .returning(_RESERVATIONS.c.amount_nusd)
)
_CHARGE = (
    update(_COUNTERS)
    .where(_KEY)
    .values(
        spent_nusd=_C.spent_nusd + bindparam("p_charge"),
        reserved_nusd=_C.reserved_nusd - bindparam("p_released"),
        updated_at=bindparam("p_now"),
    )
)

_PER = {"day": "per day", "week": "per week", "month": "per month", "total": "in total"}


def period_key(period: str, now: datetime) -> str:
    """The counter a call made at `now` is charged to: a new period starts from zero."""
    if period == "day":
        return now.strftime("%Y-%m-%d")
    if period == "week":
        year, week, _ = now.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return now.strftime("%Y-%m")
    return "total"


@dataclass(frozen=True, slots=True)
class BudgetRule:
    """A budget row, as the guard uses it."""

    budget_id: str
    scope: str
    scope_id: str
    amount_usd: Decimal
    period: str
    action: BudgetAction

    @property
    def amount_nusd(self) -> int:
        return to_nano(self.amount_usd)

    def subject(self, site: CallSite) -> str | None:
        """Whose counter a call at `site` is charged to (None: the budget does not apply)."""
        if self.scope == "workspace":
            return site.workspace_id
        if self.scope == "user":
            return site.user_id if self.scope_id in ("*", site.user_id) else None
        if self.scope == "graph":
            return site.graph_id if self.scope_id in ("*", site.graph_id) else None
        if self.scope == "run":
            return site.run_id if self.scope_id in ("*", site.graph_id) else None
        return None

    def describe(self) -> str:
        amount = format(self.amount_usd.normalize(), "f")
        per = "per run" if self.scope == "run" and self.period == "total" else _PER[self.period]
        return f"the {self.scope} budget of ${amount} {per} ({self.budget_id})"


@dataclass(frozen=True, slots=True)
class Slot:
    """One counter a call is charged to."""

    rule: BudgetRule
    subject_id: str
    period_key: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.rule.budget_id, self.subject_id, self.period_key)

    def params(self) -> dict[str, Any]:
        return {
            "p_budget": self.rule.budget_id,
            "p_subject": self.subject_id,
            "p_period": self.period_key,
        }


class _Refused(Exception):
    def __init__(self, slot: Slot) -> None:
        self.slot = slot


class BudgetGuard:
    def __init__(
        self,
        engine: Engine,
        clock: Callable[[], datetime],
        *,
        reservation_ttl_s: float = 1800.0,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._ttl = timedelta(seconds=reservation_ttl_s)

    def slots(self, rules: Iterable[BudgetRule], site: CallSite) -> list[Slot]:
        """The counters of every budget that applies at `site`, in lock order."""
        now = self._clock()
        found = [
            Slot(rule, subject, period_key(rule.period, now))
            for rule in rules
            if (subject := rule.subject(site)) is not None
        ]
        return sorted(found, key=lambda slot: slot.key)

    def reserve(
        self, slots: Sequence[Slot], permit_id: str, amount_nusd: int, *, force: bool
    ) -> Slot | None:
        """Reserve `amount_nusd` on every slot in one transaction; returns the slot that
        refused (nothing reserved then), or None. `force` reserves even past the amount."""
        for attempt in range(3):
            try:
                return self._reserve(slots, permit_id, amount_nusd, force=force)
            except IntegrityError:  # a counter created concurrently, or a budget deleted
                if attempt == 2:
                    raise
                slots = self._live(slots)
        return None  # pragma: no cover - the loop returns or raises

    def _reserve(
        self, slots: Sequence[Slot], permit_id: str, amount: int, *, force: bool
    ) -> Slot | None:
        if not slots:
            return None
        now = self._clock()
        try:
            with self._engine.begin() as conn:
                for slot in slots:  # the first write takes SQLite's write lock
                    self._take(conn, slot, amount, now, force=force)
                conn.execute(_NEW_RESERVATIONS, self._rows(slots, permit_id, amount, now))
        except _Refused as refused:
            return refused.slot
        return None

    def _take(
        self, conn: Connection, slot: Slot, amount: int, now: datetime, *, force: bool
    ) -> None:
        params = {**slot.params(), "p_amount": amount, "p_now": now}
        if force:
            taken = conn.execute(_TAKE, params).rowcount
        else:
            taken = conn.execute(
                _TAKE_WITHIN, {**params, "p_limit": slot.rule.amount_nusd}
            ).rowcount
        if taken == 1:
            return
        if conn.execute(_EXISTS, slot.params()).first() is not None:
            raise _Refused(slot)
        if not force and amount > slot.rule.amount_nusd:
            raise _Refused(slot)
        conn.execute(  # the first call of this budget, subject and period
            _NEW_COUNTER,
            {
                "budget_id": slot.rule.budget_id,
                "subject_id": slot.subject_id,
                "period_key": slot.period_key,
                "spent_nusd": 0,
                "reserved_nusd": amount,
                "updated_at": now,
            },
        )

    def _rows(
        self, slots: Sequence[Slot], permit_id: str, amount: int, now: datetime
    ) -> list[dict[str, Any]]:
        expires = now + self._ttl
        return [
            {
                "permit_id": permit_id,
                "budget_id": slot.rule.budget_id,
                "subject_id": slot.subject_id,
                "period_key": slot.period_key,
                "amount_nusd": amount,
                "expires_at": expires,
            }
            for slot in slots
        ]

    def _live(self, slots: Sequence[Slot]) -> list[Slot]:
        """The slots whose budget still exists."""
        ids = {slot.rule.budget_id for slot in slots}
        with self._engine.connect() as conn:
            live = set(conn.scalars(select(Budget.budget_id).where(Budget.budget_id.in_(ids))))
        return [slot for slot in slots if slot.rule.budget_id in live]

    def settle(self, conn: Connection, permit_id: str, slots: Sequence[Slot], charge: int) -> None:
        """In the caller's transaction: release the reservation, add what the call cost."""
        now = self._clock()
        for slot in slots:
            released = conn.execute(
                _RELEASE, {"p_permit": permit_id, "p_budget": slot.rule.budget_id}
            ).scalar_one_or_none()
            conn.execute(
                _CHARGE,
                {**slot.params(), "p_charge": charge, "p_released": released or 0, "p_now": now},
            )

    def release_expired(self, limit: int = 200) -> int:
        """Release reservations of calls that never settled (their worker died)."""
        with self._engine.connect() as conn:
            expired = conn.execute(
                select(_RESERVATIONS).where(_RESERVATIONS.c.expires_at < self._clock()).limit(limit)
            ).all()
        now = self._clock()
        for row in expired:
            key = {
                "p_budget": row.budget_id,
                "p_subject": row.subject_id,
                "p_period": row.period_key,
            }
            with self._engine.begin() as conn:
                released = conn.execute(
                    _RELEASE, {"p_permit": row.permit_id, "p_budget": row.budget_id}
                ).scalar_one_or_none()
                if released is not None:
                    conn.execute(
                        _CHARGE, {**key, "p_charge": 0, "p_released": released, "p_now": now}
                    )
        if expired:
            log.warning("released %d budget reservations of calls that never settled", len(expired))
        return len(expired)
