"""The LangChain handler on langchain-core's fake chat model and a fake tool: every LLM
call and tool call is a step, and the chain is stopped at its budget."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal

import pytest
from conftest import Served
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool

from lever_client import AsyncLever, Lever, Price, RunStopped
from lever_client.langchain import AsyncLeverCallbackHandler, LeverCallbackHandler

PRICES = {"gpt-4o": Price("2.50", "10.00")}


def answers() -> Iterator[AIMessage]:
    """The model's answers: 20k input and 10k output tokens each, $0.15 at gpt-4o's prices."""
    while True:
        yield AIMessage(
            content="searching",
            usage_metadata={"input_tokens": 20_000, "output_tokens": 10_000,
                            "total_tokens": 30_000},
            response_metadata={"model_name": "gpt-4o"},
        )  # fmt: skip


searches: list[str] = []


@tool
def search(query: str) -> str:
    """Looks a query up."""
    searches.append(query)
    return f"results for {query}"


def test_a_chain_is_stopped_at_its_budget_and_every_call_is_a_step(file_server: Served) -> None:
    searches.clear()
    lever = Lever(file_server.url, file_server.token, prices=PRICES)
    run = lever.start_run(tenant="acme", agent="budget-bot")
    handler = LeverCallbackHandler(run)
    chain = ChatPromptTemplate.from_messages([("human", "{question}")]) | GenericFakeChatModel(
        messages=answers()
    )
    config = RunnableConfig(callbacks=[handler])
    calls = 0
    with pytest.raises(RunStopped) as stopped:
        for i in range(20):
            chain.invoke({"question": f"question {i}"}, config=config)
            calls += 1
            search.invoke({"query": f"q{i}"}, config=config)
    # $0.15 a call: the seventh call reaches $1.05 and stops the chain before its search.
    assert (calls, len(searches)) == (6, 6)
    d = stopped.value.decision
    assert (d.action, d.signals[0].observed) == ("stop", Decimal("1.05"))
    state = run.state()
    assert state["totals"]["steps"] == 13
    assert (state["totals"]["input_tokens"], state["totals"]["cost"]) == ("140000", "1.05")
    evidence = run.client.get(f"/v1/runs/{run.id}")
    assert evidence["state"] == "stopped"


def test_the_async_handler_stops_an_ainvoked_chain(file_server: Served) -> None:
    async def main() -> int:
        async with AsyncLever(file_server.url, file_server.token, prices=PRICES) as lever:
            run = await lever.start_run(tenant="acme", agent="budget-bot")
            config = RunnableConfig(callbacks=[AsyncLeverCallbackHandler(run)])
            model = GenericFakeChatModel(messages=answers())
            calls = 0
            with pytest.raises(RunStopped):
                for _ in range(20):
                    await model.ainvoke("go", config=config)
                    calls += 1
            return calls

    assert asyncio.run(main()) == 6
