"""The OpenAI Agents SDK's run hooks: `Runner.run` with a model of our own (no network),
a function tool, and the run killed by Lever mid-run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from agents import Agent, ModelResponse, Runner, Usage, function_tool, set_tracing_disabled
from agents.models.interface import Model
from conftest import Served
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from lever_client import AsyncLever, Price, RunKilled, RunStopped
from lever_client.openai_agents import LeverRunHooks

# The tests reach no OpenAI service, traces included.
set_tracing_disabled(True)
PRICES = {"gpt-4o": Price("2.50", "10.00")}
looked_up: list[str] = []


@function_tool
def lookup(order: str) -> str:
    """Looks an order up."""
    looked_up.append(order)
    return f"order {order}: shipped"


class ToolCallingModel(Model):
    """Asks for `lookup` on every turn until `turns` turns, then answers; each turn uses
    20k input and 10k output tokens ($0.15 at gpt-4o's prices)."""

    def __init__(self, turns: int) -> None:
        self.model = "gpt-4o"
        self.turns = turns
        self.calls = 0

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        self.calls += 1
        usage = Usage(requests=1, input_tokens=20_000, output_tokens=10_000, total_tokens=30_000)
        if self.calls <= self.turns:
            item: Any = ResponseFunctionToolCall(
                type="function_call", call_id=f"call_{self.calls}", name="lookup",
                arguments=f'{{"order": "A{self.calls}"}}',
            )  # fmt: skip
        else:
            text = ResponseOutputText(type="output_text", text="done", annotations=[])
            item = ResponseOutputMessage(
                id="msg_1", type="message", role="assistant", status="completed", content=[text]
            )
        return ModelResponse(output=[item], usage=usage, response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        raise NotImplementedError("the tests do not stream")


def agent(model: ToolCallingModel) -> Agent[Any]:
    return Agent(name="budget-bot", instructions="Help.", model=model, tools=[lookup])


def test_an_agent_run_is_stopped_at_its_budget(file_server: Served) -> None:
    looked_up.clear()

    async def main() -> None:
        async with AsyncLever(file_server.url, file_server.token, prices=PRICES) as lever:
            run = await lever.start_run(tenant="acme", agent="budget-bot")
            model = ToolCallingModel(turns=50)
            with pytest.raises(RunStopped) as stopped:
                await Runner.run(agent(model), "where is my order?", hooks=LeverRunHooks(run),
                                 max_turns=50)  # fmt: skip
            # The seventh model call reaches $1.05: no tool runs after it.
            assert (model.calls, len(looked_up)) == (7, 6)
            assert stopped.value.decision.signals[0].kind == "breach"
            totals = (await run.state())["totals"]
            assert (totals["steps"], totals["cost"]) == (13, "1.05")

    asyncio.run(main())


def test_an_agent_run_ends_when_it_stays_under_its_limits(file_server: Served) -> None:
    async def main() -> None:
        async with AsyncLever(file_server.url, file_server.token, prices=PRICES) as lever:
            run = await lever.start_run(tenant="acme", agent="budget-bot")
            result = await Runner.run(agent(ToolCallingModel(turns=2)), "where is my order?",
                                      hooks=LeverRunHooks(run))  # fmt: skip
            assert result.final_output == "done"
            assert (await run.end()).action == "continue"

            run = await lever.start_run(tenant="acme", agent="kill-bot")
            with pytest.raises(RunKilled):
                await Runner.run(Agent(name="kill-bot", model=ToolCallingModel(turns=9),
                                       tools=[lookup]), "go", hooks=LeverRunHooks(run))  # fmt: skip

    asyncio.run(main())
