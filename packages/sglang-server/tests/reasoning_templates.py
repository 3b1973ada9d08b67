"""Qwen3-style Jinja chat templates for the reasoning tests: ChatML turns, an assistant turn's
`reasoning_content` rendered back as a <think> block, and a generation prompt that follows
`enable_thinking` (false: an empty, closed block, as Qwen3's template writes it)."""

from __future__ import annotations

_TURNS = (
    "{%- for message in messages %}"
    "{%- if message.role == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if message.reasoning_content %}"
    "{{- '<think>\\n' + message.reasoning_content + '\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{{- (message.content or '') + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
)

# Qwen3: the model opens <think> itself; enable_thinking=false closes an empty block.
QWEN3 = _TURNS + (
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}"
)

# Qwen3-Thinking / DeepSeek-R1 style: the template opens <think>, so the output starts inside
# the reasoning (unless thinking is switched off).
OPENS_THINK = _TURNS + (
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}{%- else %}{{- '<think>\\n' }}{%- endif %}{%- endif %}"
)
