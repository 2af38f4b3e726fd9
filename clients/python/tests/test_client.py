"""The client against a real `lever serve`: decisions, halts, usage, retries, overrides."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest
from anthropic.types import Usage as AnthropicUsage
from conftest import Served
from openai.types import CompletionUsage
from openai.types.responses import ResponseUsage

from lever_client import (
    AsyncLever,
    Lever,
    LeverError,
    Price,
    Retry,
    RunKilled,
    RunPaused,
    RunStopped,
    StepRejected,
)

PRICES = {"gpt-4o": Price("2.50", "10.00")}


def openai_usage() -> CompletionUsage:
    """20k prompt and 10k completion tokens: $0.05 + $0.10 at gpt-4o's prices."""
    return CompletionUsage(prompt_tokens=20_000, completion_tokens=10_000, total_tokens=30_000)


def test_steps_are_priced_from_usage_until_the_budget_stops_the_run(server: Served) -> None:
    lever = Lever(server.url, server.token, prices=PRICES)
    run = lever.start_run(tenant="acme", agent="budget-bot")
    assert run.start_decision.action == "continue"
    for n in range(1, 6):
        d = run.step(usage=openai_usage(), model="gpt-4o-2024-08-06")
        assert (d.seq, d.action, d.signals) == (n + 1, "continue", [])
    near = run.step(usage=openai_usage(), model="gpt-4o")
    assert [(s.kind, s.observed) for s in near.signals] == [("near", Decimal("0.90"))]
    assert [(a.channel, a.kind) for a in near.alerts] == [("ui", "near")]
    with pytest.raises(RunStopped) as stopped:
        run.step(usage=openai_usage(), model="gpt-4o")
    d = stopped.value.decision
    assert (d.action, d.reason) == ("stop", "breach: std.llm.cost of run_budget")
    breach = d.signals[0]
    assert (breach.kind, breach.observed, breach.limit_value) == (
        "breach", Decimal("1.05"), Decimal("1.00"),
    )  # fmt: skip
    # The run is over: the next step is refused, still counted, and raises again.
    with pytest.raises(RunStopped) as refused:
        run.step(cost="0.01")
    assert (refused.value.decision.action, refused.value.decision.reason) == (
        "refused", "run_stopped",
    )  # fmt: skip
    state = run.state()
    assert state["state"] == "stopped"
    assert state["totals"] == {"steps": 8, "refused": 1, "input_tokens": "140000",
                               "output_tokens": "70000", "cost": "1.06"}  # fmt: skip
    assert run.end().action == "stop"


def test_usage_of_the_responses_api_and_of_anthropic_counts_as_tokens(server: Served) -> None:
    lever = Lever(server.url, server.token)
    run = lever.start_run(tenant="acme", agent="budget-bot", labels={"env": "test"})
    # The details' fields change between SDK versions; the counts are what Lever reads.
    responses = ResponseUsage.model_construct(input_tokens=1_200, output_tokens=300,
                                              total_tokens=1_500)  # fmt: skip
    run.step(usage=responses, cost="0.0125", model="gpt-4.1")
    # Anthropic counts cache writes and reads apart from input_tokens: they are input too.
    claude = AnthropicUsage(input_tokens=100, output_tokens=50, cache_creation_input_tokens=1_000,
                            cache_read_input_tokens=2_000)  # fmt: skip
    run.step(usage=claude, cost=0.1, model="claude-sonnet-4")
    run.step(usage={"input_tokens": 7, "output_tokens": 3}, kind="tool_call", tool="search")
    totals = run.state()["totals"]
    assert (totals["input_tokens"], totals["output_tokens"], totals["cost"]) == (
        "4307", "353", "0.1125",
    )  # fmt: skip
    with pytest.raises(ValueError, match="no price for model 'gpt-5'"):
        Lever(server.url, prices=PRICES).start_run(tenant="acme").step(
            usage=openai_usage(), model="gpt-5"
        )


def test_a_kill_raises_run_killed_and_raise_on_stop_off_returns_decisions(server: Served) -> None:
    lever = Lever(server.url, server.token)
    run = lever.start_run(tenant="acme", agent="kill-bot")
    with pytest.raises(RunKilled) as killed:
        run.step(cost="0.60")
    assert killed.value.decision.reason == "breach: std.llm.cost of kill_switch"
    quiet = Lever(server.url, server.token, raise_on_stop=False)
    run = quiet.start_run(tenant="acme", agent="kill-bot")
    d = run.step(cost="0.60")
    assert (d.action, d.halts) == ("kill", True)
    assert run.step(cost="0.01").action == "refused"


def test_a_paused_run_resumes_once_an_sre_grants_resume(server: Served) -> None:
    lever = Lever(server.url, server.token)
    run = lever.start_run(tenant="acme", agent="pause-bot")
    with pytest.raises(RunPaused):
        run.step(input_tokens=9_000, output_tokens=2_000)
    with pytest.raises(RunPaused) as refused:
        run.step(input_tokens=1)
    assert refused.value.decision.reason == "run_paused"
    denied = run.override(policy="token_cap", kind="raise", limit="std.llm.tokens", to="20000",
                          reason="more")  # fmt: skip
    assert denied.override is not None and denied.override.status == "denied"
    assert denied.override.why
    granted = run.override(policy="token_cap", kind="resume")
    assert granted.override is not None and granted.override.status == "granted"
    assert run.wait_resumed(timeout=5)["state"] == "running"
    assert run.step(input_tokens=1).action in ("continue", "pause")


class LosesFirstAnswer(httpx.HTTPTransport):
    """A connection that delivers the first step to the server and loses its answer."""

    def __init__(self) -> None:
        super().__init__()
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.url.path.endswith("/steps") and self.lost == 0:
            response.read()
            self.lost += 1
            raise httpx.ReadError("connection reset after the request was sent")
        return response


def test_a_step_whose_answer_was_lost_is_retried_and_counted_once(server: Served) -> None:
    transport = LosesFirstAnswer()
    lever = Lever(server.url, server.token, transport=transport, retry=Retry(backoff=0.01))
    run = lever.start_run(tenant="acme", agent="budget-bot")
    d = run.step(cost="0.40", model="gpt-4o")
    assert transport.lost == 1
    assert (d.seq, d.replayed) == (2, True)
    d = run.step(cost="0.40")
    assert (d.seq, d.replayed, d.signals[0].observed) == (3, False, Decimal("0.80"))
    assert run.state()["totals"]["steps"] == 2


def test_errors_name_what_went_wrong(server: Served) -> None:
    lever = Lever(server.url, server.token)
    run = lever.start_run(tenant="acme", agent="budget-bot")
    run.id = "no-such-run"
    with pytest.raises(StepRejected, match="unknown_run"):
        run.step(cost="0.01")
    with pytest.raises(ValueError, match="cost must be a finite number"):
        run.step(cost="-1")
    with pytest.raises(LeverError, match="HTTP 401"):
        Lever(server.url).start_run(tenant="acme").override(policy="run_budget", kind="suspend")
    dead = Lever("http://127.0.0.1:9", retry=Retry(attempts=2, backoff=0.01))
    with pytest.raises(LeverError, match="POST /v1/runs"):
        dead.start_run(tenant="acme")


def test_the_async_client_stops_a_run_at_its_budget(server: Served) -> None:
    async def main() -> None:
        async with AsyncLever(server.url, server.token, prices=PRICES) as lever:
            run = await lever.start_run(tenant="acme", agent="budget-bot")
            steps = 0
            with pytest.raises(RunStopped):
                for _ in range(20):
                    await run.step(usage=openai_usage(), model="gpt-4o")
                    steps += 1
            assert steps == 6
            assert (await run.state())["state"] == "stopped"
            assert (await run.end()).action == "stop"

    asyncio.run(main())
