"""A tiny random Llama with SmolLM2's tokenizer and a Qwen2-style chat template that renders
tools (SmolLM2-Instruct's own template ignores them), for the tool-calling server tests."""

from __future__ import annotations

import json
from pathlib import Path

# Tools whose arguments a random model can only fill in a bounded way under the grammar (enums,
# bounded integers, booleans), so every constrained answer ends well within max_tokens.
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "enum": ["Paris", "Oslo", "Lima"]},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 9},
    }, "required": ["city", "unit", "days"], "additionalProperties": False},
}}
CLOCK = {"type": "function", "function": {
    "name": "get_time", "description": "The time in a time zone.",
    "parameters": {"type": "object", "properties": {
        "tz": {"type": "string", "enum": ["UTC", "CET"]}, "exact": {"type": "boolean"},
    }, "required": ["tz", "exact"], "additionalProperties": False},
}}
TOOLS = [WEATHER, CLOCK]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


# Written for these tests in the shape of Qwen2's tool template: the tools in the system turn,
# past calls as <tool_call> blocks in the assistant turn, results as <tool_response> user turns.
TOOLS_TEMPLATE = (
    "{%- set sys = messages[0].content if messages[0].role == 'system' else '' -%}"
    "{%- if tools -%}<|im_start|>system\n{% if sys %}{{ sys }}\n\n{% endif %}# Tools\n"
    "Functions you may call:\n<tools>\n{% for tool in tools %}{{ tool | tojson }}\n{% endfor %}"
    "</tools>\nTo call one, write <tool_call>{\"name\": ..., \"arguments\": {...}}</tool_call>."
    "<|im_end|>\n{%- elif sys -%}<|im_start|>system\n{{ sys }}<|im_end|>\n{%- endif -%}"
    "{%- for m in messages -%}"
    "{%- if m.role == 'tool' -%}<|im_start|>user\n<tool_response>\n{{ m.content }}\n"
    "</tool_response><|im_end|>\n"
    "{%- elif m.role == 'assistant' and m.tool_calls -%}<|im_start|>assistant\n"
    "{% if m.content %}{{ m.content }}\n{% endif %}{% for c in m.tool_calls %}<tool_call>\n"
    "{\"name\": {{ c.function.name | tojson }}, \"arguments\": {{ c.function.arguments | tojson }}}"
    "\n</tool_call>\n{% endfor %}<|im_end|>\n"
    "{%- elif m.role != 'system' -%}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_start|>assistant\n{%- endif -%}"
)


def save_tools_model(folder: Path, seed: int = 0) -> str:
    """The model folder: random weights over SmolLM2's vocabulary, its tokenizer, TOOLS_TEMPLATE."""
    import transformers
    from tiny_models import save_tiny_model

    from sglang.runtime.loading.default_model import default_model_path
    from sglang.runtime.loading.source import load_tokenizer

    tokenizer = load_tokenizer(str(default_model_path()))
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    save_tiny_model(config, folder, seed=seed, with_tokenizer=False)
    tokenizer.save_pretrained(str(folder))
    config_path = Path(folder) / "tokenizer_config.json"
    data = json.loads(config_path.read_text())
    data["chat_template"] = TOOLS_TEMPLATE
    config_path.write_text(json.dumps(data))
    stray = Path(folder) / "chat_template.jinja"  # newer transformers save it apart
    if stray.exists():
        stray.unlink()
    return str(folder)
