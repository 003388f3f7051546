"""50 real concurrent runs against one small budget: the check-and-reserve before each call
is atomic, so the budget is overspent by at most what the calls already in flight cost
beyond their estimates — at most one call per run — and never by a race.

Each call is estimated at 20 output tokens but writes 200, so every call in flight
overshoots its reservation: the worst case for the budget. Two variants: the scripted model
(calls settle at once, admissions and settlements interleave) and the loopback server
answering each call after 1 s (many admitted calls are in flight at the same time).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from components.nodes._llm_calls import estimate_input_tokens
from graphs.identity import Actor
from tests.analytics.helpers import (
    budgets_of,
    cost_total,
    llm_doc,
    metered_runtime,
    price_scripted,
    rows,
)
from tests.loopback.openai_server import Answer, OpenAILoopback, Stall, openai_server

RUNS = 50
QUESTION = "Hi?"
RATES = {"input_per_mtok": "1.5", "output_per_mtok": "6"}


@contextmanager
def slow_server() -> Iterator[OpenAILoopback]:
    with openai_server() as server:
        answer = Answer(text="word " * 160, prompt_tokens=9, completion_tokens=200)
        server.enqueue(*[Stall(1.0, then=answer) for _ in range(RUNS)])
        yield server


def _doc(server: OpenAILoopback | None) -> dict[str, Any]:
    if server is None:
        return llm_doc(script=[{"text": "word " * 160}], expected_output_tokens=20)
    config = {"model": "m-slow", "base_url": server.base_url, "timeout_s": 5, "max_retries": 0}
    return llm_doc(provider="openai", provider_config=config, expected_output_tokens=20)


@pytest.mark.parametrize("variant", ["scripted", "slow-loopback"])
def test_fifty_concurrent_runs_overspend_by_at_most_one_in_flight_call_each(
    tmp_path: Path, alice: Actor, variant: str
) -> None:
    context = slow_server() if variant == "slow-loopback" else nullcontext()
    with context as server, metered_runtime(tmp_path / "s.db", max_concurrency=RUNS) as rt:
        price_scripted(rt, alice, **RATES)
        budgets_of(rt).set_price(alice, model="m-slow", provider="openai", **RATES)
        budget = budgets_of(rt).create(alice, scope="workspace", amount_usd="0.005", period="day")
        version = rt.manager.library.create(alice, _doc(server))
        started = time.perf_counter()
        run_ids = [
            rt.manager.start_run(alice, version_id=version.version_id, input={"question": QUESTION})
            for _ in range(RUNS)
        ]
        views = [rt.manager.wait(alice, run_id, timeout_s=120) for run_id in run_ids]
        elapsed = time.perf_counter() - started
        records = [r for r in rows(rt) if r.kind == "model"]
        status = budgets_of(rt).status(alice, budget.budget_id)

    statuses = [v.status for v in views]
    assert set(statuses) == {"succeeded", "budget_exceeded"}, [v.error for v in views]
    paid = [r for r in records if r.outcome == "ok"]
    stopped = [r for r in records if r.outcome == "budget_stopped"]
    assert len(paid) == statuses.count("succeeded")
    assert len(stopped) == statuses.count("budget_exceeded")
    assert len({r.run_id for r in paid}) == len(paid)  # one call per succeeded run

    spent = cost_total(paid)
    assert status.spent_usd == spent and status.reserved_usd == 0
    call = paid[0].cost_usd
    assert all(r.cost_usd == call for r in paid)  # identical calls
    estimate = _estimate()
    overshoot = call - estimate
    assert overshoot > 0
    overspend = spent - budget.amount_usd
    # The last call admitted saw every earlier one settled or in flight, so the total
    # exceeds the budget by at most (calls in flight + 1) times what each overshoots.
    assert overspend <= len(paid) * overshoot
    assert overspend <= RUNS * call  # at most one in-flight call per run
    peak = _peak_in_flight(paid)
    if variant == "slow-loopback":  # calls really overlapped
        assert peak >= 5
    print(
        f"\n[{variant}] {RUNS} concurrent runs in {elapsed:.2f}s: {len(paid)} paid calls at "
        f"${call} (estimated ${estimate}), up to {peak} in flight, {len(stopped)} stopped; "
        f"budget ${budget.amount_usd}, spent ${spent}, overspend "
        f"${max(overspend, Decimal(0))} (bound ${len(paid) * overshoot})"
    )


def _peak_in_flight(paid: list[Any]) -> int:
    """Most calls in flight at once, from each record's end time and latency."""
    edges = []
    for row in paid:
        end = row.created_at.timestamp()
        edges += [(end - row.latency_ms / 1000, 1), (end, -1)]
    peak = current = 0
    for _, step in sorted(edges):
        current += step
        peak = max(peak, current)
    return peak


def _estimate() -> Decimal:
    """What the node reserves per call: its input estimate and 20 output tokens, priced."""
    tokens = estimate_input_tokens([HumanMessage(QUESTION)], [])
    cost = Decimal("1.5") * tokens + Decimal(6) * 20
    return (cost / Decimal(1_000_000)).quantize(Decimal("0.000000001"))
