"""Tools in prompts: our built-in templates write tools, past calls and tool results into
ordinary turns in their family's format (each call text read back by that family's parser),
and templates that cannot show tools are refused with a 400 instead of dropping them."""

from __future__ import annotations

import json

import pytest

from sglang.server.chat_templates import get_chat_template
from sglang.server.errors import APIError
from sglang.server.openai.tool_parsers import BUILTIN_TEMPLATE_HINTS, get_format
from sglang.server.openai.tool_prompts import builtin_messages, jinja_kwargs

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}}]
CALL = {"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
HISTORY = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [CALL]},
    {"role": "tool", "content": '{"sky": "clear"}', "tool_call_id": "call_1"},
]
# SmolLM2-Instruct's template: it renders role and content only.
NO_TOOLS_JINJA = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                  "message['content'] + '<|im_end|>\\n'}}{% endfor %}")


@pytest.mark.parametrize("template", sorted(BUILTIN_TEMPLATE_HINTS))
def test_builtin_templates_render_tools_and_history(template: str) -> None:
    messages = builtin_messages(template, HISTORY, TOOLS)
    assert {m["role"] for m in messages} <= {"system", "user", "assistant"}
    prompt = get_chat_template(template).render(messages)
    assert "get_weather" in prompt and "Weather in a city." in prompt and "Be brief." in prompt
    assert '{"sky": "clear"}' in prompt
    # The past call is written as the model writes calls: its format's parser reads it back.
    (assistant,) = [m for m in messages if m["role"] == "assistant"]
    _, calls = get_format(BUILTIN_TEMPLATE_HINTS[template]).parse(assistant["content"])
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather",
                                                                   {"city": "Paris"})]


def test_tool_results_follow_the_call_as_a_user_turn() -> None:
    messages = builtin_messages("qwen", HISTORY, None)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[-1]["content"] == '<tool_response>\n{"sky": "clear"}\n</tool_response>'
    assert "<tools>" not in messages[0]["content"]  # tools not offered (tool_choice none)


def test_plain_conversations_are_untouched() -> None:
    plain = [{"role": "user", "content": "hi"}]
    assert builtin_messages("vicuna_v1.1", plain, None) is plain


def test_template_without_tools_support_is_400() -> None:
    with pytest.raises(APIError) as e:
        builtin_messages("vicuna_v1.1", HISTORY[:2], TOOLS)
    assert e.value.status == 400 and e.value.param == "tools"
    with pytest.raises(APIError) as e:
        builtin_messages("gemma", HISTORY, None)
    assert e.value.param == "messages"
    with pytest.raises(APIError) as e:
        jinja_kwargs(NO_TOOLS_JINJA, TOOLS)
    assert e.value.status == 400 and "cannot render tools" in e.value.message
    assert jinja_kwargs(NO_TOOLS_JINJA, None) == {}
    assert jinja_kwargs("{% if tools %}{{ tools | tojson }}{% endif %}", TOOLS) == {"tools": TOOLS}
