"""Prices: a workspace's overrides first, then the offline `genai-prices` data, else unknown
(never zero). And the analytics tables: migrations in step with the models."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from genai_prices import Usage, calc_price
from sqlalchemy import inspect

from analytics.db import VERSION_TABLE, migrate
from analytics.pricing import Pricer, Rates, to_nano, usd
from analytics.tables import Base
from auth.db import migrate as migrate_auth
from components.base import TokenUsage
from graphs.db import make_engine
from graphs.db import migrate as migrate_graphs

OPENAI = "https://api.openai.com/v1"


def pricer(**tables: dict[tuple[str, str], Rates]) -> Pricer:
    return Pricer(lambda workspace_id: tables.get(workspace_id, {}))


def test_known_models_are_priced_by_genai_prices_including_cached_tokens() -> None:
    usage = TokenUsage(1_000, 100, 200)
    cost, source = pricer().quote("acme", "openai", OPENAI, ["gpt-4o-mini"], usage)
    expected = calc_price(
        Usage(input_tokens=1_000, output_tokens=100, cache_read_tokens=200),
        model_ref="gpt-4o-mini",
        provider_id="openai",
    ).total_price
    assert (cost, source) == (usd(Decimal(expected)), "genai-prices")
    assert cost == Decimal("0.000195")  # 800 x 0.15 + 200 x 0.075 + 100 x 0.6 per million
    by_name, _ = pricer().quote("acme", "openai", None, ["gpt-4o-mini"], usage)
    assert by_name == cost


@pytest.mark.parametrize(
    ("provider", "api_url", "model"),
    [
        ("openai", "http://127.0.0.1:11434/v1", "gpt-4o-mini"),  # self-hosted, reused name
        ("scripted", None, "scripted-1"),
        ("openai", OPENAI, "no-such-model-xyz"),
    ],
)
def test_unknown_prices_are_unknown_never_zero(
    provider: str, api_url: str | None, model: str
) -> None:
    assert pricer().quote("acme", provider, api_url, [model], TokenUsage(10, 10)) == (
        None,
        "unknown",
    )


def test_a_workspace_override_wins_and_stays_in_its_workspace() -> None:
    mine = {("gpt-4o-mini", "*"): Rates(Decimal(1), Decimal(2))}
    prices = pricer(acme=mine)
    usage = TokenUsage(1_000_000, 500_000)
    assert prices.quote("acme", "openai", OPENAI, ["gpt-4o-mini"], usage) == (
        Decimal(2),
        "override",
    )
    _, source = prices.quote("other", "openai", OPENAI, ["gpt-4o-mini"], usage)
    assert source == "genai-prices"


def test_the_reported_model_is_priced_before_the_requested_one() -> None:
    table = {
        ("llama3.1:8b", "openai"): Rates(Decimal(1), Decimal(1)),
        ("llama3.1", "openai"): Rates(Decimal(5), Decimal(5)),
    }
    cost, _ = pricer(acme=table).quote(
        "acme", "openai", None, ["llama3.1:8b", "llama3.1"], TokenUsage(1_000_000, 0)
    )
    assert cost == Decimal(1)


def test_override_rates_price_cached_tokens_at_their_own_rate() -> None:
    rates = Rates(Decimal(2), Decimal(8), Decimal("0.5"))
    assert rates.cost(TokenUsage(1_000_000, 1_000_000, 400_000)) == Decimal("9.4")
    assert Rates(Decimal(2), Decimal(8)).cost(TokenUsage(10, 0, 10)) == Decimal("0.00002")


def test_money_rounds_to_nano_dollars_and_reservations_round_up() -> None:
    assert usd(Decimal("0.0000000014")) == Decimal("0.000000001")
    assert to_nano(Decimal("0.0000000011")) == 2
    assert to_nano(None) == 0


def test_migrations_create_exactly_the_tables(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    migrate(engine)
    migrate(engine)  # idempotent
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert [d for d in diff if not (d[0] == "remove_table" and d[1].name == VERSION_TABLE)] == []
    assert set(Base.metadata.tables) == {
        "usage_events",
        "price_overrides",
        "budgets",
        "budget_counters",
        "budget_reservations",
        "response_cache",
    }


def test_migrations_live_beside_the_other_libraries(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    migrate_graphs(engine)
    migrate_auth(engine)
    migrate(engine)
    with engine.connect() as conn:
        tables = set(inspect(conn).get_table_names())
        version = conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar()
    assert set(Base.metadata.tables) | {"runs", "users", "alembic_version_graphs"} <= tables
    assert version == "an0001"
