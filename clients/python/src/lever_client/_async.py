"""`AsyncLever` and `AsyncRun`: the client for asyncio code, request for request the same
as `Lever` and `Run`."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import httpx

from . import _wire
from ._client import accepted_retry, headers, settle
from ._model import Decision
from ._wire import Money, Request, Retry
from .errors import RunStopped
from .usage import Price


class AsyncLever:
    """The asyncio twin of `Lever`; its arguments mean the same."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        retry: Retry | None = None,
        prices: Mapping[str, Price] | None = None,
        raise_on_stop: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.retry = retry or Retry()
        self.prices = prices
        self.raise_on_stop = raise_on_stop
        self._http = httpx.AsyncClient(
            base_url=url.rstrip("/"), headers=headers(token), timeout=timeout, transport=transport
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncLever:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def send(self, request: Request) -> tuple[Decision, int]:
        """As `Lever.send`."""
        tries = 0
        while True:
            tries += 1
            try:
                answer = await self._http.request(request.method, request.path, json=request.body)
                decision = settle(request, self.retry, tries, answer, None)
            except httpx.TransportError as e:
                decision = settle(request, self.retry, tries, None, e)
            if decision is not None:
                return decision, tries
            await asyncio.sleep(self.retry.delay(tries - 1))

    async def get(self, path: str) -> dict[str, Any]:
        r = await self._http.get(path)
        return _wire.state_of(r.status_code, r.text)

    async def start_run(
        self,
        *,
        tenant: str,
        run_id: str | None = None,
        agent: str | None = None,
        api_key: str | None = None,
        human_actor: str | None = None,
        labels: Mapping[str, str] | None = None,
        meta: Mapping[str, Any] | None = None,
        ts: str | None = None,
        raise_on_stop: bool | None = None,
    ) -> AsyncRun:
        """As `Lever.start_run`."""
        run_id = run_id or _wire.new_id("run-")
        fields = {"agent": agent, "api_key": api_key, "human_actor": human_actor,
                  "labels": dict(labels) if labels else None, "meta": meta}  # fmt: skip
        body = _wire.start_body(run_id, tenant, fields, ts)
        decision, tries = await self.send(Request("POST", "/v1/runs", body))
        obey = self.raise_on_stop if raise_on_stop is None else raise_on_stop
        run = AsyncRun(self, run_id, decision, obey)
        if not accepted_retry(decision, tries):
            _wire.obey(decision, run.raise_on_stop)
        return run


class AsyncRun:
    """The asyncio twin of `Run`."""

    def __init__(
        self, client: AsyncLever, run_id: str, start: Decision, raise_on_stop: bool
    ) -> None:
        self.client = client
        self.id = run_id
        self.start_decision = start
        self.raise_on_stop = raise_on_stop
        self.last: Decision = start

    async def __aenter__(self) -> AsyncRun:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.end(meta={"outcome": "error", "error": kind.__name__} if kind else None)

    def _path(self, tail: str = "") -> str:
        return f"/v1/runs/{urllib.parse.quote(self.id, safe='')}{tail}"

    async def step(
        self,
        *,
        usage: Any = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        cost: Money | None = None,
        model: str | None = None,
        kind: str | None = None,
        tool: str | None = None,
        latency_ms: float | None = None,
        metrics: Mapping[str, Money] | None = None,
        meta: Mapping[str, Any] | None = None,
        pii: bool | None = None,
        ts: str | None = None,
        idempotency_key: str | None = None,
    ) -> Decision:
        """As `Run.step`."""
        extra = {"kind": kind, "tool": tool, "latency_ms": latency_ms, "pii": pii, "meta": meta,
                 "metrics": metrics}  # fmt: skip
        body = _wire.step_body(
            self.client.prices, usage=usage, input_tokens=input_tokens,
            output_tokens=output_tokens, cost=cost, model=model, extra=extra, ts=ts,
            idempotency_key=idempotency_key,
        )  # fmt: skip
        request = Request("POST", self._path("/steps"), body, keyed=True)
        decision, _ = await self.client.send(request)
        self.last = decision
        return _wire.obey(decision, self.raise_on_stop)

    async def end(
        self, *, meta: Mapping[str, Any] | None = None, ts: str | None = None
    ) -> Decision:
        """As `Run.end`."""
        decision, tries = await self.client.send(_wire.end_request(self._path("/end"), meta, ts))
        if decision.action == "rejected" and not accepted_retry(decision, tries):
            _wire.obey(decision, False)
        self.last = decision
        return decision

    async def override(
        self,
        *,
        policy: str,
        kind: str = "raise",
        limit: str | None = None,
        to: str | None = None,
        ttl: str | None = None,
        reason: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Decision:
        """As `Run.override`."""
        fields = {"policy": policy, "kind": kind, "limit": limit, "to": to, "ttl": ttl,
                  "reason": reason, "meta": meta}  # fmt: skip
        request = _wire.override_request(self._path("/overrides"), fields)
        decision, _ = await self.client.send(request)
        return _wire.obey(decision, False)

    async def approve(self, override_seq: int) -> Decision:
        """As `Run.approve`."""
        path = self._path(f"/overrides/{int(override_seq)}/approvals")
        decision, _ = await self.client.send(Request("POST", path, {"ts": _wire.now()}))
        return _wire.obey(decision, False)

    async def state(self) -> dict[str, Any]:
        """As `Run.state`."""
        return await self.client.get(self._path())

    async def wait_resumed(self, timeout: float, poll: float = 0.5) -> dict[str, Any]:
        """As `Run.wait_resumed`."""
        deadline = time.monotonic() + timeout
        while True:
            state = await self.state()
            if state["state"] == "running":
                return state
            if state["state"] in _wire.OVER:
                raise RunStopped(self.last)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"run {self.id} is still {state['state']} after {timeout} s")
            await asyncio.sleep(poll)
