"""Token counts from the usage objects agent libraries return, and cost from a price table.

Recognised shapes (objects or dicts):

- OpenAI Chat Completions: `prompt_tokens`, `completion_tokens`;
- OpenAI Responses API and the Agents SDK: `input_tokens`, `output_tokens`;
- Anthropic Messages: `input_tokens`, `output_tokens`, plus `cache_creation_input_tokens`
  and `cache_read_input_tokens`, which Anthropic counts apart and which are input too;
- LangChain's `usage_metadata`: `input_tokens`, `output_tokens` (cache reads included).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

#: Lever reads money with at most 9 decimal places.
_NANO = Decimal("0.000000001")
_MILLION = Decimal(1_000_000)
_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def _field(usage: Any, name: str) -> int | None:
    value = usage.get(name) if isinstance(usage, Mapping) else getattr(usage, name, None)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"usage field {name!r} is {value!r}, not a count of tokens")
    return value


def tokens(usage: Any) -> tuple[int, int]:
    """`(input_tokens, output_tokens)` of a usage object or dict; `ValueError` when it has
    neither OpenAI's nor Anthropic's fields."""
    prompt, completion = _field(usage, "prompt_tokens"), _field(usage, "completion_tokens")
    if prompt is not None or completion is not None:
        return prompt or 0, completion or 0
    inp, out = _field(usage, "input_tokens"), _field(usage, "output_tokens")
    if inp is None and out is None:
        raise ValueError(
            f"cannot read tokens from {type(usage).__name__}: expected prompt_tokens/"
            "completion_tokens or input_tokens/output_tokens"
        )
    cache = (_field(usage, "cache_creation_input_tokens") or 0) + (
        _field(usage, "cache_read_input_tokens") or 0
    )
    return (inp or 0) + cache, out or 0


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens, as providers publish them: `Price("2.50", "10.00")`."""

    input: Decimal | str
    output: Decimal | str

    def cost(self, input_tokens: int, output_tokens: int) -> Decimal:
        """The cost of a call, rounded up to Lever's 9 decimal places."""
        total = (
            Decimal(self.input) * input_tokens + Decimal(self.output) * output_tokens
        ) / _MILLION
        return total.quantize(_NANO, rounding=ROUND_CEILING)


def price_of(prices: Mapping[str, Price], model: str) -> Price | None:
    """The price of `model`: its own entry, else that of its name without a date suffix
    (`gpt-4o-2024-08-06` is priced as `gpt-4o`)."""
    return prices.get(model) or prices.get(_DATED.sub("", model))


def money(value: Decimal | str | int | float) -> str:
    """A cost as Lever reads it: a decimal string of at most 9 places, never through a
    float's binary digits (`0.1` is `"0.1"`)."""
    if isinstance(value, bool):
        raise ValueError("a cost is a number of dollars, not a boolean")
    d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not d.is_finite() or d < 0:
        raise ValueError(f"a cost must be a finite number of dollars ≥ 0, not {value!r}")
    if d != d.quantize(_NANO, rounding=ROUND_CEILING):
        d = d.quantize(_NANO, rounding=ROUND_CEILING)
    return format(d.normalize(), "f") if d else "0"
