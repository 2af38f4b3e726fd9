"""`Lever` and `Run`: a blocking client of `lever serve` (httpx)."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import httpx

from . import _wire
from ._model import Decision
from ._wire import Money, Request, Retry
from .errors import LeverError, RunStopped
from .usage import Price

#: Failures after which a request may have been judged: only a keyed step is sent again.
_AMBIGUOUS = (httpx.ReadError, httpx.ReadTimeout, httpx.WriteError, httpx.RemoteProtocolError)
#: Failures before the request reached the server: anything is sent again.
_UNSENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def retryable(request: Request, error: Exception | None, status: int | None) -> bool:
    """Whether a failed try may be made again without counting anything twice."""
    if status == 503 or isinstance(error, _UNSENT):
        return True
    return request.keyed and (status == 408 or isinstance(error, _AMBIGUOUS))


def settle(
    request: Request,
    retry: Retry,
    tries: int,
    answer: httpx.Response | None,
    error: httpx.TransportError | None,
) -> Decision | None:
    """What one try of `request` came to (the sync and async clients share it): its
    decision; `None` when it is to be tried again; or the `LeverError` it raises."""
    failure: Exception | None = error
    status = answer.status_code if answer is not None else None
    if answer is not None:
        if answer.status_code != 503:
            replayed = answer.headers.get("idempotent-replayed") == "true"
            return _wire.read_answer(answer.status_code, answer.text, replayed)
        failure = LeverError(f"HTTP 503: {answer.text[:200]}", 503)
    if tries < retry.attempts and retryable(request, failure, status):
        return None
    if isinstance(failure, LeverError):
        raise failure
    raise LeverError(f"{request.method} {request.path}: {failure}") from failure


def headers(token: str | None) -> dict[str, str]:
    h = {"content-type": "application/json", "user-agent": "lever-client-python/0.1"}
    if token:
        h["authorization"] = f"Bearer {token}"
    return h


def accepted_retry(decision: Decision, tries: int) -> bool:
    """A retried run start or end the first try had already done (its answer was lost)."""
    return (
        tries > 1
        and decision.action == "rejected"
        and ((decision.reason or "").startswith(("duplicate_run", "run_ended")))
    )


class Lever:
    """A client of one `lever serve`: `Lever("http://127.0.0.1:8080", token=...)`.

    `prices` maps model names to `Price`s: a step with usage and no `cost` is priced from
    it (and refused, with `ValueError`, when its model has no price). Without `prices`,
    a step's cost is what you pass, or $0.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        retry: Retry | None = None,
        prices: Mapping[str, Price] | None = None,
        raise_on_stop: bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.retry = retry or Retry()
        self.prices = prices
        self.raise_on_stop = raise_on_stop
        self._http = httpx.Client(
            base_url=url.rstrip("/"), headers=headers(token), timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Lever:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, request: Request) -> tuple[Decision, int]:
        """Sends a run event, retrying as `retry` says: the decision, and how many tries."""
        tries = 0
        while True:
            tries += 1
            try:
                answer = self._http.request(request.method, request.path, json=request.body)
                decision = settle(request, self.retry, tries, answer, None)
            except httpx.TransportError as e:
                decision = settle(request, self.retry, tries, None, e)
            if decision is not None:
                return decision, tries
            time.sleep(self.retry.delay(tries - 1))

    def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        r = self._http.get(path, params=params)
        return _wire.state_of(r.status_code, r.text)

    def start_run(
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
    ) -> Run:
        """Starts a run (its id generated unless given) and binds its policies. A start
        that stops the run (a conflict under `fail_closed`) raises `RunStopped`."""
        run_id = run_id or _wire.new_id("run-")
        fields = {"agent": agent, "api_key": api_key, "human_actor": human_actor,
                  "labels": dict(labels) if labels else None, "meta": meta}  # fmt: skip
        body = _wire.start_body(run_id, tenant, fields, ts)
        decision, tries = self.send(Request("POST", "/v1/runs", body))
        run = Run(
            self, run_id, decision, self.raise_on_stop if raise_on_stop is None else raise_on_stop
        )
        if not accepted_retry(decision, tries):
            _wire.obey(decision, run.raise_on_stop)
        return run


class Run:
    """One run: report its steps with `step`, end it with `end` (or use it as a context
    manager, which ends it)."""

    def __init__(self, client: Lever, run_id: str, start: Decision, raise_on_stop: bool) -> None:
        self.client = client
        self.id = run_id
        self.start_decision = start
        self.raise_on_stop = raise_on_stop
        #: The last decision the run was answered.
        self.last: Decision = start

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.end(meta={"outcome": "error", "error": kind.__name__} if kind else None)

    def _path(self, tail: str = "") -> str:
        return f"/v1/runs/{urllib.parse.quote(self.id, safe='')}{tail}"

    def step(
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
        """Reports one step (an LLM call, a tool call) and obeys the decision: `pause`,
        `stop` and `kill` raise `RunPaused`, `RunStopped`, `RunKilled` (unless
        `raise_on_stop` is off), a rejected step raises `StepRejected`."""
        extra = {"kind": kind, "tool": tool, "latency_ms": latency_ms, "pii": pii, "meta": meta,
                 "metrics": metrics}  # fmt: skip
        body = _wire.step_body(
            self.client.prices, usage=usage, input_tokens=input_tokens,
            output_tokens=output_tokens, cost=cost, model=model, extra=extra, ts=ts,
            idempotency_key=idempotency_key,
        )  # fmt: skip
        decision, _ = self.client.send(Request("POST", self._path("/steps"), body, keyed=True))
        self.last = decision
        return _wire.obey(decision, self.raise_on_stop)

    def end(self, *, meta: Mapping[str, Any] | None = None, ts: str | None = None) -> Decision:
        """Ends the run; the decision carries its final state. Never raises for a halt."""
        decision, tries = self.client.send(_wire.end_request(self._path("/end"), meta, ts))
        if decision.action == "rejected" and not accepted_retry(decision, tries):
            _wire.obey(decision, False)
        self.last = decision
        return decision

    def override(
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
        """Requests an override with the client's token: the decision's `override` says
        `granted`, `denied` (with `why`) or `pending`."""
        fields = {"policy": policy, "kind": kind, "limit": limit, "to": to, "ttl": ttl,
                  "reason": reason, "meta": meta}  # fmt: skip
        decision, _ = self.client.send(_wire.override_request(self._path("/overrides"), fields))
        return _wire.obey(decision, False)

    def approve(self, override_seq: int) -> Decision:
        """Approves the pending override request `override_seq` with the client's token."""
        path = self._path(f"/overrides/{int(override_seq)}/approvals")
        decision, _ = self.client.send(Request("POST", path, {"ts": _wire.now()}))
        return _wire.obey(decision, False)

    def state(self) -> dict[str, Any]:
        """The run as the server judges it now (`GET /v1/runs/{id}`; a `read` token)."""
        return self.client.get(self._path())

    def wait_resumed(self, timeout: float, poll: float = 0.5) -> dict[str, Any]:
        """Polls the run's state until it runs again (a `resume` was granted): its state.
        `TimeoutError` after `timeout` seconds; `RunStopped` if the run is over."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if state["state"] == "running":
                return state
            if state["state"] in _wire.OVER:
                raise RunStopped(self.last)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"run {self.id} is still {state['state']} after {timeout} s")
            time.sleep(poll)
