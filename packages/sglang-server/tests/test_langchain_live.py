"""LangChain's `ChatOpenAI` against a live server, as an agent framework calls us: tools bound
with `bind_tools` (required, named, streamed), a tool result sent back as a `ToolMessage`, and
`with_structured_output` through `response_format` (json_schema) and through function calling.
The model is the tiny random one with a tools template (tool_models); its answers are made
well-formed by the grammar backend, which is what the framework relies on."""

from __future__ import annotations

import json
from typing import Any, Literal

import jsonschema
import pytest
from live_server import LiveServer, wait_idle
from tool_models import CLOCK, SCHEMAS, TOOLS

langchain_openai = pytest.importorskip("langchain_openai")
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage  # noqa: E402
from pydantic import BaseModel, Field  # noqa: E402


class Forecast(BaseModel):
    """A forecast for one city."""

    city: Literal["Paris", "Oslo", "Lima"]
    days: int = Field(ge=1, le=9)
    rain: bool


@pytest.fixture(scope="module")
def llm(tools_server: LiveServer) -> Any:
    return langchain_openai.ChatOpenAI(
        base_url=f"{tools_server.url}/v1", api_key="x", model="tiny", max_retries=0,
        temperature=0.9, max_tokens=512, seed=5, timeout=120,
    )


def check(calls: list[dict[str, Any]], allowed: set[str]) -> None:
    assert calls
    for call in calls:
        assert call["name"] in allowed and call["id"].startswith("call_")
        jsonschema.validate(call["args"], SCHEMAS[call["name"]])


def test_bind_tools_required_then_tool_result(llm: Any, tools_server: LiveServer) -> None:
    question = HumanMessage("What's the weather in Oslo?")
    ai = llm.bind_tools(TOOLS, tool_choice="required").invoke([question])
    assert isinstance(ai, AIMessage) and not ai.invalid_tool_calls
    check(ai.tool_calls, set(SCHEMAS))
    results = [ToolMessage(json.dumps({"sky": "clear"}), tool_call_id=c["id"])
               for c in ai.tool_calls]
    final = llm.bind_tools(TOOLS).invoke([question, ai, *results], max_tokens=12)
    assert final.tool_calls == [] and isinstance(final.content, str) and final.content
    wait_idle(tools_server)


def test_bind_tools_named_and_streamed(llm: Any) -> None:
    bound = llm.bind_tools(TOOLS, tool_choice="get_time")
    ai = bound.invoke("What time is it?")
    check(ai.tool_calls, {"get_time"})
    assert len(ai.tool_calls) == 1
    merged = None
    for chunk in bound.stream("What time is it in Paris?"):
        merged = chunk if merged is None else merged + chunk
    assert merged is not None and not merged.invalid_tool_calls
    check(merged.tool_calls, {"get_time"})
    assert merged.response_metadata.get("finish_reason") == "tool_calls"


def test_bind_tools_parallel_off(llm: Any) -> None:
    bound = llm.bind_tools(TOOLS, tool_choice="required", parallel_tool_calls=False)
    for seed in range(4):
        ai = bound.invoke("Weather and time in Lima?", seed=seed)
        check(ai.tool_calls, set(SCHEMAS))
        assert len(ai.tool_calls) == 1


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_structured_output(llm: Any, method: str) -> None:
    structured = llm.with_structured_output(Forecast, method=method)
    for seed in range(3):
        out = structured.invoke("Forecast for Lima?", seed=seed)
        assert isinstance(out, Forecast) and 1 <= out.days <= 9


def test_tool_dict_is_taken_as_given(llm: Any) -> None:
    ai = llm.bind_tools([CLOCK], tool_choice="required").invoke("Time?")
    check(ai.tool_calls, {"get_time"})
