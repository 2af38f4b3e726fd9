"""LangChain callbacks: one Lever step per LLM call and per tool call, with the usage
LangChain reports, raising `RunStopped` (and its kin) out of the chain when Lever halts
the run.

```python
from lever_client.langchain import LeverCallbackHandler

handler = LeverCallbackHandler(run)
agent.invoke({"input": "..."}, config={"callbacks": [handler]})
```

Needs `langchain-core` (`pip install './clients/python[langchain]'`).
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.outputs import LLMResult

from ._async import AsyncRun
from ._client import Run
from .usage import tokens


def usage_of(response: LLMResult) -> tuple[int, int, str | None]:
    """Input and output tokens of an LLM call, summed over its generations, and its model:
    from each message's `usage_metadata`, else the provider's `llm_output`."""
    inp = out = 0
    model: str | None = None
    found = False
    for generations in response.generations:
        for g in generations:
            message = getattr(g, "message", None)
            usage = getattr(message, "usage_metadata", None)
            if usage:
                i, o = tokens(usage)
                inp, out, found = inp + i, out + o, True
            meta = getattr(message, "response_metadata", None) or {}
            model = model or meta.get("model_name") or meta.get("model")
    llm_output = response.llm_output or {}
    if not found:
        usage = llm_output.get("token_usage") or llm_output.get("usage")
        if usage:
            inp, out = tokens(usage)
    return inp, out, model or llm_output.get("model_name")


class _Timing:
    """When each LangChain run began, and its model or tool name."""

    def __init__(self) -> None:
        self.began: dict[UUID, tuple[float, str | None]] = {}

    def begin(self, run_id: UUID, name: str | None) -> None:
        self.began[run_id] = (time.monotonic(), name)

    def end(self, run_id: UUID) -> tuple[float | None, str | None]:
        began = self.began.pop(run_id, None)
        if began is None:
            return None, None
        return round((time.monotonic() - began[0]) * 1000, 3), began[1]


def _model_name(metadata: dict[str, Any] | None, kwargs: dict[str, Any]) -> str | None:
    params = kwargs.get("invocation_params") or {}
    name = (metadata or {}).get("ls_model_name") or params.get("model") or params.get("model_name")
    return str(name) if name else None


def _tool_name(serialized: dict[str, Any] | None, kwargs: dict[str, Any]) -> str | None:
    name = (serialized or {}).get("name") or kwargs.get("name")
    return str(name) if name else None


class LeverCallbackHandler(BaseCallbackHandler):
    """Reports every LLM call and tool call of a chain to `run` as a step. A decision that
    halts the run raises out of the chain (`raise_error` is on)."""

    raise_error = True

    def __init__(self, run: Run) -> None:
        self.run = run
        self._timing = _Timing()

    def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[Any], *, run_id: UUID,
        metadata: dict[str, Any] | None = None, **kwargs: Any,
    ) -> None:  # fmt: skip
        self._timing.begin(run_id, _model_name(metadata, kwargs))

    def on_llm_start(
        self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID,
        metadata: dict[str, Any] | None = None, **kwargs: Any,
    ) -> None:  # fmt: skip
        self._timing.begin(run_id, _model_name(metadata, kwargs))

    def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        latency, model = self._timing.end(run_id)
        inp, out, named = usage_of(response)
        self.run.step(input_tokens=inp, output_tokens=out, model=named or model,
                      kind="llm_call", latency_ms=latency)  # fmt: skip

    def on_tool_start(
        self, serialized: dict[str, Any], input_str: str, *, run_id: UUID, **kwargs: Any
    ) -> None:
        self._timing.begin(run_id, _tool_name(serialized, kwargs))

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        latency, tool = self._timing.end(run_id)
        self.run.step(kind="tool_call", tool=tool, latency_ms=latency)

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        latency, tool = self._timing.end(run_id)
        meta = {"error": type(error).__name__}
        self.run.step(kind="tool_call", tool=tool, latency_ms=latency, meta=meta)


class AsyncLeverCallbackHandler(AsyncCallbackHandler):
    """`LeverCallbackHandler` for chains run with `ainvoke`, reporting to an `AsyncRun`."""

    raise_error = True

    def __init__(self, run: AsyncRun) -> None:
        self.run = run
        self._timing = _Timing()

    async def on_chat_model_start(
        self, serialized: dict[str, Any], messages: list[Any], *, run_id: UUID,
        metadata: dict[str, Any] | None = None, **kwargs: Any,
    ) -> None:  # fmt: skip
        self._timing.begin(run_id, _model_name(metadata, kwargs))

    async def on_llm_start(
        self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID,
        metadata: dict[str, Any] | None = None, **kwargs: Any,
    ) -> None:  # fmt: skip
        self._timing.begin(run_id, _model_name(metadata, kwargs))

    async def on_llm_end(self, response: LLMResult, *, run_id: UUID, **kwargs: Any) -> None:
        latency, model = self._timing.end(run_id)
        inp, out, named = usage_of(response)
        await self.run.step(input_tokens=inp, output_tokens=out, model=named or model,
                            kind="llm_call", latency_ms=latency)  # fmt: skip

    async def on_tool_start(
        self, serialized: dict[str, Any], input_str: str, *, run_id: UUID, **kwargs: Any
    ) -> None:
        self._timing.begin(run_id, _tool_name(serialized, kwargs))

    async def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        latency, tool = self._timing.end(run_id)
        await self.run.step(kind="tool_call", tool=tool, latency_ms=latency)

    async def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        latency, tool = self._timing.end(run_id)
        meta = {"error": type(error).__name__}
        await self.run.step(kind="tool_call", tool=tool, latency_ms=latency, meta=meta)
