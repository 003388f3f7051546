"""Prices of model calls: a workspace's own prices first, then the `genai-prices` data.

A workspace sets prices per million tokens for custom or self-hosted models (provider '*'
matches any provider). Everything else is priced offline by `genai-prices`: by the API URL
when the provider has one (so a self-hosted server that merely reuses a model name is not
priced as the original), else by the provider's name. A model neither knows costs None —
unknown, never zero. Costs are rounded to nano-dollars (9 decimals), the stored precision.
"""

from __future__ import annotations

__all__ = ["NANO_USD", "PriceSource", "Pricer", "Rates", "genai_price", "to_nano", "usd"]

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from typing import Literal

from components.base import TokenUsage

PriceSource = Literal["genai-prices", "override", "unknown"]
NANO_USD = Decimal("0.000000001")
_MTOK = Decimal(1_000_000)


def usd(value: Decimal) -> Decimal:
    """`value` rounded to the stored precision (nano-dollars)."""
    return value.quantize(NANO_USD, rounding=ROUND_HALF_EVEN)


def to_nano(value: Decimal | None) -> int:
    """Whole nano-dollars, rounded up (a reservation never falls short by rounding)."""
    if value is None:
        return 0
    return int((value / NANO_USD).to_integral_value(rounding=ROUND_CEILING))


@dataclass(frozen=True, slots=True)
class Rates:
    """A workspace's price of a model, per million tokens."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_per_mtok: Decimal | None = None

    def cost(self, usage: TokenUsage) -> Decimal:
        cached = min(usage.cached_tokens, usage.input_tokens)
        cached_rate = self.input_per_mtok if self.cached_per_mtok is None else self.cached_per_mtok
        total = (
            (usage.input_tokens - cached) * self.input_per_mtok
            + cached * cached_rate
            + usage.output_tokens * self.output_per_mtok
        )
        return usd(total / _MTOK)


@functools.lru_cache(maxsize=1024)
def _known(model: str, provider: str, api_url: str | None) -> bool:
    return genai_price(model, provider, api_url, TokenUsage(1, 1), probe=False) is not None


def genai_price(
    model: str, provider: str, api_url: str | None, usage: TokenUsage, *, probe: bool = True
) -> Decimal | None:
    """The `genai-prices` price of `usage` (None when it does not know the model)."""
    if probe and not _known(model, provider, api_url):
        return None
    from genai_prices import Usage, calc_price

    tokens = Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cached_tokens or None,
    )
    try:
        if api_url:
            result = calc_price(tokens, model_ref=model, provider_api_url=api_url)
        else:
            result = calc_price(tokens, model_ref=model, provider_id=provider)
    except LookupError:
        return None
    return usd(Decimal(result.total_price))


OverrideTable = Mapping[tuple[str, str], Rates]
"""(model, provider) → rates, of one workspace."""


class Pricer:
    """Prices usage for a workspace: its overrides, then `genai-prices`, else unknown."""

    def __init__(self, overrides: Callable[[str], OverrideTable]) -> None:
        self._overrides = overrides

    def quote(
        self,
        workspace_id: str,
        provider: str,
        api_url: str | None,
        models: Sequence[str],
        usage: TokenUsage,
    ) -> tuple[Decimal | None, PriceSource]:
        """The cost of `usage` for the first of `models` (reported, then requested name)
        that has a price, and where the price came from."""
        names = list(dict.fromkeys(m for m in models if m))
        table = self._overrides(workspace_id)
        for model in names:
            rates = table.get((model, provider)) or table.get((model, "*"))
            if rates is not None:
                return rates.cost(usage), "override"
        for model in names:
            price = genai_price(model, provider, api_url, usage)
            if price is not None:
                return price, "genai-prices"
        return None, "unknown"
