"""Run hooks for the OpenAI Agents SDK: one Lever step per model call and per local tool
call, with the usage the SDK reports, raising `RunStopped` (and its kin) out of
`Runner.run` when Lever halts the run: the per-run kill switch.

```python
from lever_client.openai_agents import LeverRunHooks

run = await lever.start_run(tenant="acme", agent=agent.name)
result = await Runner.run(agent, "...", hooks=LeverRunHooks(run))
```

Needs `openai-agents` (`pip install './clients/python[openai-agents]'`).
"""

from __future__ import annotations

import time
from typing import Any

from agents import Agent, ModelResponse, RunContextWrapper, RunHooks, Tool

from ._async import AsyncRun
from .usage import tokens


def _model_name(agent: Agent[Any]) -> str | None:
    model = getattr(agent, "model", None)
    if isinstance(model, str):
        return model
    name = getattr(model, "model", None)
    return name if isinstance(name, str) else None


class LeverRunHooks(RunHooks[Any]):
    """Reports every model call and local tool call of an agent run to `run` as a step.
    A decision that halts the run raises out of `Runner.run`."""

    def __init__(self, run: AsyncRun) -> None:
        self.run = run
        self._llm_began: float | None = None
        self._tools_began: dict[str, float] = {}

    async def on_llm_start(
        self, context: RunContextWrapper[Any], agent: Agent[Any], system_prompt: str | None,
        input_items: list[Any],
    ) -> None:  # fmt: skip
        self._llm_began = time.monotonic()

    async def on_llm_end(
        self, context: RunContextWrapper[Any], agent: Agent[Any], response: ModelResponse
    ) -> None:
        latency = None
        if self._llm_began is not None:
            latency = round((time.monotonic() - self._llm_began) * 1000, 3)
        inp, out = tokens(response.usage)
        await self.run.step(input_tokens=inp, output_tokens=out, model=_model_name(agent),
                            kind="llm_call", latency_ms=latency)  # fmt: skip

    async def on_tool_start(
        self, context: RunContextWrapper[Any], agent: Agent[Any], tool: Tool
    ) -> None:
        self._tools_began[tool.name] = time.monotonic()

    async def on_tool_end(
        self, context: RunContextWrapper[Any], agent: Agent[Any], tool: Tool, result: object
    ) -> None:
        began = self._tools_began.pop(tool.name, None)
        latency = None if began is None else round((time.monotonic() - began) * 1000, 3)
        await self.run.step(kind="tool_call", tool=tool.name, latency_ms=latency)
