"""What the sync and async clients share: request bodies, and reading answers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from ._model import Decision
from .errors import LeverError, StepRejected, halted
from .usage import Price, money, price_of, tokens

Money = Decimal | str | int | float


def now() -> str:
    """The current time as Lever reads it (RFC 3339, UTC)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Retry:
    """How requests are retried: up to `attempts` tries in all, waiting `backoff` seconds,
    then twice as long each time. A step is retried on connection errors, timeouts and
    503, with the same idempotency key, so it is counted once; other requests are retried
    only when they cannot have been judged (no connection, or 503)."""

    attempts: int = 4
    backoff: float = 0.2

    def delay(self, attempt: int) -> float:
        return float(self.backoff * (2**attempt))


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: dict[str, Any] | None = None
    #: Safe to send again after an answer was lost (an idempotent step).
    keyed: bool = False


def start_body(
    run_id: str,
    tenant: str,
    fields: Mapping[str, Any],
    ts: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"run_id": run_id, "ts": ts or now(), "tenant": tenant}
    body.update({k: v for k, v in fields.items() if v is not None})
    return body


def step_body(
    prices: Mapping[str, Price] | None,
    *,
    usage: Any = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    cost: Money | None = None,
    model: str | None = None,
    extra: Mapping[str, Any],
    ts: str | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """A step's body: tokens from `usage` (or given), cost given or priced from `prices`."""
    if usage is not None:
        if input_tokens is not None or output_tokens is not None:
            raise ValueError("give usage or input_tokens/output_tokens, not both")
        input_tokens, output_tokens = tokens(usage)
    body: dict[str, Any] = {"ts": ts or now(), "idempotency_key": idempotency_key or new_id("s-")}
    if input_tokens:
        body["input_tokens"] = input_tokens
    if output_tokens:
        body["output_tokens"] = output_tokens
    if cost is None and prices is not None and (input_tokens or output_tokens):
        price = price_of(prices, model or "")
        if price is None:
            raise ValueError(
                f"no price for model {model!r}: add it to the client's prices, or pass cost="
            )
        cost = price.cost(input_tokens or 0, output_tokens or 0)
    if cost is not None:
        body["cost"] = money(cost)
    if model:
        body["model"] = model
    metrics = extra.get("metrics")
    if metrics:
        extra = {**extra, "metrics": {k: money(v) for k, v in metrics.items()}}
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def end_request(path: str, meta: Mapping[str, Any] | None, ts: str | None) -> Request:
    body: dict[str, Any] = {"ts": ts or now()}
    if meta:
        body["meta"] = dict(meta)
    return Request("POST", path, body)


def override_request(path: str, fields: Mapping[str, Any]) -> Request:
    body = {"ts": now(), **{k: v for k, v in fields.items() if v is not None}}
    return Request("POST", path, body)


def read_answer(status: int, text: str, replayed: bool) -> Decision:
    """The decision an answer holds; `LeverError` when it holds none."""
    try:
        value = json.loads(text)
    except ValueError:
        raise LeverError(f"HTTP {status}: {text[:200]}", status) from None
    if isinstance(value, dict) and "action" in value and status in (200, 422):
        return Decision.from_json(value, replayed)
    message = value.get("error") if isinstance(value, dict) else None
    raise LeverError(f"HTTP {status}: {message or text[:200]}", status)


def obey(decision: Decision, raise_on_stop: bool) -> Decision:
    """Raises what the decision says: a halt (unless `raise_on_stop` is off), a rejection."""
    if raise_on_stop and (halt := halted(decision)) is not None:
        raise halt
    if decision.action == "rejected":
        raise StepRejected(decision)
    return decision


def state_of(status: int, text: str) -> dict[str, Any]:
    if status != 200:
        try:
            message = json.loads(text).get("error", text)
        except (ValueError, AttributeError):
            message = text
        raise LeverError(f"HTTP {status}: {message}", status)
    value: dict[str, Any] = json.loads(text)
    return value


#: A run's states from which it never resumes.
OVER = ("stopped", "killed", "ended")
