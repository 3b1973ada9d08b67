"""The chat path's reasoning and rendering pieces without a model: the response builder's
`reasoning_content`, the stream's deltas at every split, the reasoning plan, the grammar gate's
sampling param, Jinja rendering with chat_template_kwargs / continue_final_message, built-in
templates' assistant prefill, and the 400s (in-process app, refused before anything is queued)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from reasoning_templates import OPENS_THINK, QWEN3

from sglang.protocol.reasoning import split_reasoning
from sglang.server.chat_templates import builtin_chat_template_names, get_chat_template
from sglang.server.openai.chat import render_chat
from sglang.server.openai.chat_media import ChatInputs
from sglang.server.openai.protocol import ChatCompletionRequest, ChatMessage
from sglang.server.openai.reasoning import (
    ReasoningStream,
    gate_constraint,
    message_fields,
    plan_reasoning,
)
from sglang.server.openai.template_args import TemplateArgs

RUNTIME_TESTS = Path(__file__).resolve().parents[2] / "sglang-runtime" / "tests"
sys.path.insert(0, str(RUNTIME_TESTS))
from tiny_models import save_tiny_model  # noqa: E402

RECORDED = "<think>\nFirst, 6 x 7.\nThat is 42.\n</think>\n\nThe answer is 42."
HELLO = [{"role": "user", "content": "Hi"}]


def _req(**kw: Any) -> ChatCompletionRequest:
    kw.setdefault("messages", [ChatMessage(role="user", content="Hi")])
    return ChatCompletionRequest(**kw)


def _tm(parser: str | None, tokenizer: Any = None, template: Any = None) -> Any:
    return SimpleNamespace(server_args=SimpleNamespace(reasoning_parser=parser),
                           tokenizer=tokenizer, chat_template=template)


# ---- response builder, stream, plan ------------------------------------------------------------


def test_message_fields_split_and_pass_through() -> None:
    plan = plan_reasoning(_tm("qwen3"), _req(), "<|im_start|>assistant\n")
    assert message_fields(plan, RECORDED) == {
        "content": "The answer is 42.", "reasoning_content": "First, 6 x 7.\nThat is 42."}
    assert message_fields(plan, "Just 42.") == {"content": "Just 42.", "reasoning_content": None}
    off = plan_reasoning(_tm("qwen3"), _req(separate_reasoning=False), "")
    assert message_fields(off, RECORDED) == {"content": RECORDED}
    assert message_fields(plan_reasoning(_tm(None), _req(), ""), RECORDED) == {"content": RECORDED}


def test_plan_follows_the_prompt_and_the_thinking_switch() -> None:
    opened = plan_reasoning(_tm("qwen3"), _req(), "<|im_start|>assistant\n<think>\n")
    assert opened is not None and opened.in_reasoning and opened.thinking
    assert message_fields(opened, "42 it is\n</think>\n\n42") == {
        "content": "42", "reasoning_content": "42 it is"}
    off = plan_reasoning(_tm("qwen3"), _req(chat_template_kwargs={"enable_thinking": False}),
                         "<think>\n\n</think>\n\n")
    assert off is not None and not off.thinking and not off.in_reasoning
    assert message_fields(off, RECORDED) == {"content": RECORDED, "reasoning_content": None}


@pytest.mark.parametrize(("prefill", "thinking", "in_reasoning"), [
    ("<think>\nSo far", True, True),  # the model goes on thinking
    ("<think>\nDone.\n</think>\n\nThe answer is", False, False),  # answering already
    ("The answer is", False, False),  # a prefilled answer, no block
])
def test_plan_of_an_assistant_prefill(prefill: str, thinking: bool, in_reasoning: bool) -> None:
    req = _req(messages=[ChatMessage(role="user", content="Hi"),
                         ChatMessage(role="assistant", content=prefill)],
               continue_final_message=True, add_generation_prompt=False)
    for parser in ("qwen3", "deepseek-r1"):
        plan = plan_reasoning(_tm(parser), req, "...<|im_start|>assistant\n" + prefill)
        assert plan is not None and (plan.thinking, plan.in_reasoning) == (thinking, in_reasoning)
    params = {"regex": "a"}
    gate_constraint(params, plan)
    assert ("constraint_after" in params) == thinking  # a closed block: constrained at once


@pytest.mark.parametrize("stream_reasoning", [True, False])
def test_stream_deltas_at_every_split(stream_reasoning: bool) -> None:
    plan = plan_reasoning(_tm("qwen3"), _req(stream_reasoning=stream_reasoning), "")
    want_r, want_c = split_reasoning(RECORDED, plan.fmt)
    for i in range(len(RECORDED) + 1):
        for cut in ([RECORDED[:i], RECORDED[i:]], list(RECORDED)):
            stream = ReasoningStream(plan)
            deltas = [stream.delta(0, piece, final=j == len(cut) - 1)
                      for j, piece in enumerate(cut)]
            deltas = [d for d in deltas if d]
            reasoning = "".join(d.get("reasoning_content", "") for d in deltas)
            content = "".join(d.get("content", "") for d in deltas)
            assert (reasoning, content) == (want_r, want_c), (i, deltas)
            kinds = [k for d in deltas for k in d]
            assert kinds == sorted(kinds, reverse=True), kinds  # reasoning before content
            if not stream_reasoning:  # one reasoning delta, sent once the block closed
                assert kinds.count("reasoning_content") == 1


def test_choices_have_their_own_parsers() -> None:
    stream = ReasoningStream(plan_reasoning(_tm("deepseek-r1"), _req(n=2), ""))
    assert stream.delta(0, "a</think>", final=False) == {"reasoning_content": "a"}
    assert stream.delta(1, "b", final=False) == {"reasoning_content": "b"}
    assert stream.delta(0, "c", final=True) == {"content": "c"}
    assert stream.delta(1, "", final=True) == {}


def test_grammar_is_gated_only_when_reasoning_is_expected() -> None:
    on = plan_reasoning(_tm("qwen3"), _req(), "")
    params = {"json_schema": "{}"}
    gate_constraint(params, on)
    assert params["constraint_after"] == "</think>"
    off = plan_reasoning(_tm("qwen3"), _req(chat_template_kwargs={"enable_thinking": False}), "")
    for plan, p in ((off, {"json_schema": "{}"}), (on, {"temperature": 0}), (None, {"regex": "a"})):
        gate_constraint(p, plan)
        assert "constraint_after" not in p


# ---- rendering ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import transformers

    from sglang.runtime.loading import load_tokenizer

    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
    )
    return load_tokenizer(save_tiny_model(config, tmp_path_factory.mktemp("reasoning_unit")))


def _render(tokenizer: Any, template: str, messages: list[dict], **args: Any) -> str:
    tokenizer.chat_template = template
    return render_chat(_tm(None, tokenizer), ChatInputs(messages=messages), TemplateArgs(**args))[0]


def test_chat_template_kwargs_reach_the_jinja_template(tokenizer: Any) -> None:
    on = _render(tokenizer, QWEN3, HELLO)
    off = _render(tokenizer, QWEN3, HELLO, kwargs={"enable_thinking": False})
    assert on.endswith("<|im_start|>assistant\n")
    assert off == on + "<think>\n\n</think>\n\n"
    assert _render(tokenizer, OPENS_THINK, HELLO).endswith("<|im_start|>assistant\n<think>\n")


def test_continue_final_message_leaves_the_assistant_turn_open(tokenizer: Any) -> None:
    messages = [*HELLO, {"role": "assistant", "content": "The answer is"}]
    closed = _render(tokenizer, QWEN3, messages, add_generation_prompt=False)
    assert closed.endswith("The answer is<|im_end|>\n")
    prefill = _render(tokenizer, QWEN3, messages, add_generation_prompt=False,
                      continue_final_message=True)
    assert prefill == closed[:-len("<|im_end|>\n")]
    with_reasoning = [*HELLO, {"role": "assistant", "content": "The answer",
                               "reasoning_content": "Think."}]
    assert _render(tokenizer, QWEN3, with_reasoning, add_generation_prompt=False,
                   continue_final_message=True).endswith("<think>\nThink.\n</think>\n\nThe answer")


@pytest.mark.parametrize("name", builtin_chat_template_names())
def test_builtin_templates_continue_the_final_message(name: str) -> None:
    template = get_chat_template(name)
    messages = [{"role": "system", "content": "Be brief."}, *HELLO,
                {"role": "assistant", "content": "Hello, I am"}]
    tm = _tm(None, template=template)
    prompt, _ = render_chat(tm, ChatInputs(messages=messages),
                            TemplateArgs(add_generation_prompt=False,
                                         continue_final_message=True))
    full = template.render(messages)
    assert prompt.endswith("Hello, I am") and full.startswith(prompt), (prompt, full)
    assert "Hello, I am" not in template.render(messages[:-1])


# ---- the 400s ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import transformers
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from sglang.runtime.config import RuntimeArgs
    from sglang.runtime.loading import load_tokenizer
    from sglang.server.args import ServerArgs
    from sglang.server.http_guard import install_exception_handlers
    from sglang.server.ipc import make_ipc_addrs
    from sglang.server.openai import build_openai_router
    from sglang.server.tokenizer_manager import TokenizerManager

    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
    )
    model = save_tiny_model(config, tmp_path_factory.mktemp("reasoning_400"))
    args = ServerArgs(runtime=RuntimeArgs(model_path=model, device="cpu"),
                      reasoning_parser="qwen3")
    tm = TokenizerManager(args, load_tokenizer(model), make_ipc_addrs(),
                          {"context_len": 512, "vocab_size": 64}, model, model)
    tm.tokenizer.chat_template = QWEN3
    app = FastAPI()
    install_exception_handlers(app)
    app.include_router(build_openai_router(tm))
    try:
        with TestClient(app) as c:
            yield c, tm
    finally:
        asyncio.run(tm.stop())


PREFILL = [{"role": "user", "content": "t1"}, {"role": "assistant", "content": "t2"}]


@pytest.mark.parametrize(("extra", "messages", "param", "words"), [
    ({"continue_final_message": True}, PREFILL, "continue_final_message", "cannot both be true"),
    ({"continue_final_message": True, "add_generation_prompt": False},
     [{"role": "user", "content": "t1"}], "continue_final_message", "last message"),
    ({"chat_template_kwargs": {"tokenize": True}}, PREFILL, "chat_template_kwargs",
     "may not set tokenize"),
])
def test_bad_rendering_options_are_400(client: Any, extra: dict, messages: list, param: str,
                                       words: str) -> None:
    c, _ = client
    r = c.post("/v1/chat/completions", json={"messages": messages, "max_tokens": 2, **extra})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and words in err["message"], err


def test_builtin_template_refuses_what_it_cannot_render(client: Any) -> None:
    c, tm = client
    saved, tm.chat_template = tm.chat_template, get_chat_template("chatml")
    try:
        for extra, param in (({"chat_template_kwargs": {"enable_thinking": False}},
                              "chat_template_kwargs"),
                             ({"add_generation_prompt": False}, "add_generation_prompt")):
            r = c.post("/v1/chat/completions",
                       json={"messages": PREFILL, "max_tokens": 2, **extra})
            assert r.status_code == 400, r.text
            assert r.json()["error"]["param"] == param
    finally:
        tm.chat_template = saved


def test_reasoning_parser_flag_is_checked() -> None:
    from sglang.runtime.config import RuntimeArgs
    from sglang.server.args import ServerArgs, parse_args

    with pytest.raises(ValueError, match="deepseek-r1"):
        ServerArgs(runtime=RuntimeArgs(model_path="m"), reasoning_parser="nope")
    assert parse_args(["--model-path", "m", "--reasoning-parser", "deepseek-r1"]) \
        .reasoning_parser == "deepseek-r1"
