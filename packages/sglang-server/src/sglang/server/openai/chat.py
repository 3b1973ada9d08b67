"""`POST /v1/chat/completions`: messages → prompt (server chat template or the tokenizer's) →
token ids → n generations."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from sglang.protocol.generate import GenerateReqInput
from sglang.protocol.media import MEDIA_TOKENS, processor_media_tokens
from sglang.runtime.result import ResultStep
from sglang.server.chat_templates import render_with_tokenizer
from sglang.server.errors import bad_request
from sglang.server.openai.chat_media import (
    ChatInputs,
    check_modalities,
    collect_chat_inputs,
    template_places_media,
)
from sglang.server.openai.common import (
    LogprobEntry,
    TokenizerManagerLike,
    abort_error,
    check_common,
    decode_request,
    finish_reason,
    openai_names,
    response_format_schema,
    sampling_params,
    token_text,
    usage_totals,
    with_copies,
)
from sglang.server.openai.protocol import (
    MAX_TOP_LOGPROBS,
    ChatCompletionRequest,
    new_id,
    now,
    usage_dict,
)
from sglang.server.openai.reasoning import (
    ReasoningStream,
    gate_constraint,
    message_fields,
    plan_reasoning,
    stream_for,
    with_history_reasoning,
)
from sglang.server.openai.streaming import (
    StreamFormat,
    gather_or_cancel,
    json_response,
    run_to_end,
    sse_response,
    start_all,
    stream_events,
)
from sglang.server.openai.template_args import (
    TemplateArgs,
    render_server_template,
    template_args,
)
from sglang.server.openai.tool_calls import (
    ToolPlan,
    call_finish_reason,
    plan_tools,
    tool_choices,
    tool_finish,
)
from sglang.server.openai.tool_prompts import builtin_messages, jinja_kwargs
from sglang.server.role_format import adds_bos


def _first_media_part(req: ChatCompletionRequest) -> str | None:
    """Where the first image/video part is (an error's `param`), or None without media."""
    for i, m in enumerate(req.messages):
        if isinstance(m.content, list):
            for j, part in enumerate(m.content):
                if part.type != "text":
                    return f"messages[{i}].content[{j}]"
    return None


async def media_tokens(tm: TokenizerManagerLike, req: ChatCompletionRequest) -> dict[str, str]:
    """The model's image/video token texts; a 400 when the request has media parts and the
    model takes none. Looked up only for requests with media, off the event loop (the first
    lookup reads the model's config)."""
    where = _first_media_part(req)
    if where is None:
        return MEDIA_TOKENS
    source = getattr(tm, "input_processor", None)
    if source is None:
        raise bad_request("this server takes no images or videos", where)
    try:
        processor = await asyncio.to_thread(source)
    except ValueError as e:
        raise bad_request(str(e), where) from e
    return processor_media_tokens(processor)


def render_chat(
    tm: TokenizerManagerLike, inputs: ChatInputs, args: TemplateArgs | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> tuple[str, list[str]]:
    """(prompt, template stop strings) through the server's template or the tokenizer's;
    `tools` are offered to the model."""
    args = args or TemplateArgs()
    template = tm.chat_template
    if template is not None:
        messages = builtin_messages(template.name, inputs.messages, tools)
        try:
            return render_server_template(template, messages, args), template.stop_strs
        except ValueError as e:
            raise bad_request(str(e), "messages") from e
    jinja = getattr(tm.tokenizer, "chat_template", None)
    messages = inputs.hf_messages if template_places_media(jinja) else inputs.messages
    return render_with_tokenizer(tm.tokenizer, messages,
                                 **args.jinja(), **jinja_kwargs(jinja, tools)), []


def check_chat(req: ChatCompletionRequest) -> tuple[int | None, str | None]:
    """Validate; return (max_tokens or None, json_schema from response_format or None)."""
    check_common(req)
    param = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
    max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None \
        else req.max_tokens
    if max_tokens is not None and max_tokens < 1:
        raise bad_request(f"{param} must be >= 1, got {max_tokens}", param)
    if req.top_logprobs is not None:
        if not req.logprobs:
            raise bad_request("top_logprobs requires logprobs to be true", "top_logprobs")
        if not 0 <= req.top_logprobs <= MAX_TOP_LOGPROBS:
            raise bad_request(
                f"top_logprobs must be in [0, {MAX_TOP_LOGPROBS}], got {req.top_logprobs}",
                "top_logprobs",
            )
    return max_tokens, response_format_schema(req)


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    # Templates that write the BOS token themselves (most Jinja ones) must not get a second one;
    # our built-ins leave it out and let the tokenizer add it.
    bos = getattr(tokenizer, "bos_token", None)
    add_special = not (isinstance(bos, str) and bos and prompt.startswith(bos))
    return list(tokenizer.encode(prompt, add_special_tokens=add_special))


def without_bos(tokenizer: Any, prompt: str) -> str:
    """A prompt sent as text: its leading BOS text dropped when the tokenizer adds BOS itself
    (the input processor tokenizes it with special tokens, which would put BOS twice)."""
    bos = getattr(tokenizer, "bos_token", None)
    if isinstance(bos, str) and bos and prompt.startswith(bos) and adds_bos(tokenizer):
        return prompt[len(bos):]
    return prompt


def special_token_ids(tokenizer: Any, strings: list[str]) -> list[int]:
    """Ids of stop strings that are single added tokens: stopping on the id also works when
    special tokens are skipped in the detokenized text."""
    get_added = getattr(tokenizer, "get_added_vocab", None)
    added: dict[str, int] = get_added() if get_added is not None else {}
    return [added[s] for s in strings if s in added]


def chat_logprobs(entries: list[LogprobEntry], tops: list[Any], tokenizer: Any) -> list[dict]:
    def item(e: LogprobEntry) -> dict[str, Any]:
        text = token_text(e, tokenizer)
        return {"token": text, "logprob": e[0], "bytes": list(text.encode("utf-8"))}

    return [{**item(e), "top_logprobs": [item(t) for t in top or []]}
            for e, top in zip(entries, tops)]


class _ChatStream(StreamFormat):
    object_name = "chat.completion.chunk"

    def __init__(self, want_logprobs: bool, tokenizer: Any, tools: ToolPlan | None = None,
                 n: int = 1, reasoning: ReasoningStream | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.want_logprobs, self.tokenizer = want_logprobs, tokenizer
        self.tool_streams = [tools.stream() if tools else None for _ in range(n)]
        self.reasoning = reasoning

    def opening(self, k: int) -> dict[str, Any]:
        return {"index": k, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                "finish_reason": None}

    def content(
        self, k: int, step: ResultStep, first: bool, lps: list[LogprobEntry], tops: list[Any]
    ) -> dict[str, Any] | None:
        text = step.delta
        delta = {"content": text} if self.reasoning is None else \
            self.reasoning.delta(k, text, final=finish_reason(step) is not None)
        if not any(delta.values()) and not lps:
            return None
        logprobs = {"content": chat_logprobs(lps, tops, self.tokenizer)} \
            if self.want_logprobs else None
        return {"index": k, "delta": delta, "logprobs": logprobs,
                "finish_reason": None}

    def finish(self, k: int, reason: str) -> dict[str, Any]:
        return {"index": k, "delta": {}, "logprobs": None, "finish_reason": reason}

    def content_chunks(
        self, k: int, step: ResultStep, first: bool, lps: list[LogprobEntry], tops: list[Any]
    ) -> list[dict[str, Any]]:
        stream = self.tool_streams[k]
        if stream is None:
            return super().content_chunks(k, step, first, lps, tops)
        logprobs = {"content": chat_logprobs(lps, tops, self.tokenizer)} \
            if self.want_logprobs and lps else None
        # Calls are read from the answer only: the reasoning is split off first.
        delta = {"content": step.delta} if self.reasoning is None else \
            self.reasoning.delta(k, step.delta, final=finish_reason(step) is not None)
        thinking = [{"reasoning_content": delta["reasoning_content"]}] \
            if delta.get("reasoning_content") else []
        return tool_choices(k, [*thinking, *stream.feed(delta.get("content", ""))], logprobs)

    def finish_chunks(self, k: int, reason: str) -> list[dict[str, Any]]:
        stream = self.tool_streams[k]
        if stream is None:
            return super().finish_chunks(k, reason)
        return tool_finish(k, stream, reason)


async def create_chat_completion(tm: TokenizerManagerLike, request: Request) -> Response:
    req = decode_request(await request.body(), ChatCompletionRequest)
    check_modalities(req)
    inputs = collect_chat_inputs(req, await media_tokens(tm, req))
    max_tokens, schema = check_chat(req)
    tools = plan_tools(req, tm)
    inputs.messages = with_history_reasoning(req, inputs.messages)
    inputs.hf_messages = with_history_reasoning(req, inputs.hf_messages)
    prompt, stops = render_chat(tm, inputs, template_args(req), tools.tools)
    reasoning = plan_reasoning(tm, req, prompt)
    prompt_fields: dict[str, Any]
    if inputs.has_media:
        # The model's input processor tokenizes the text around each media token and splices
        # in the placeholders; its length is known only then, so max_tokens defaults to the
        # context length, which the front door clips to what the prompt leaves.
        prompt_fields = {"text": without_bos(tm.tokenizer, prompt),
                         "image_data": inputs.images or None,
                         "video_data": inputs.videos or None}
        default_max = tm.context_len
    else:
        input_ids = encode_prompt(tm.tokenizer, prompt)
        prompt_fields = {"input_ids": input_ids}
        default_max = max(1, tm.context_len - len(input_ids))
    if max_tokens is None:  # OpenAI: up to the context limit
        max_tokens = default_max
    params = sampling_params(req, max_tokens, stops, special_token_ids(tm.tokenizer, stops))
    schema = tools.schema or schema
    if schema is not None:
        params["json_schema"] = schema
    gate_constraint(params, reasoning)
    response_id = new_id("chatcmpl")
    base_rid = req.rid or response_id
    objs = [GenerateReqInput(
        **prompt_fields,
        sampling_params=with_copies(params, req.n, req.seed),
        return_logprob=req.logprobs,
        top_logprobs_num=req.top_logprobs or 0,
        return_text_in_logprobs=True,
        stream=req.stream,
        rid=base_rid,
    )]
    # The max_tokens an error names is the one the client sent.
    named = {"sampling_params.max_new_tokens": "max_completion_tokens"} \
        if req.max_completion_tokens is not None else {}
    with openai_names("chat", named), tools.grammar_errors():
        started = await start_all(tm, objs, request)
    created, model = now(), tm.served_model_name
    if req.stream:
        fmt = _ChatStream(req.logprobs, tm.tokenizer, tools, len(started),
                          stream_for(reasoning), response_id=response_id, model=model,
                          created=created, include_usage=req.include_usage,
                          continuous_usage=req.continuous_usage)
        return sse_response(stream_events(started, req.n, fmt))

    gens = await gather_or_cancel([run_to_end(s) for s in started])
    choices = []
    for k, gen in enumerate(gens):
        final = gen.step("")
        reason = finish_reason(final)
        if reason == "abort" and not gen.text:
            raise abort_error(final)
        logprobs = None
        if req.logprobs:
            lps, tops = final.new_output_logprobs(0)
            logprobs = {"content": chat_logprobs(lps, tops, tm.tokenizer), "refusal": None}
        fields = message_fields(reasoning, gen.text)
        message = tools.message(fields["content"])
        if "reasoning_content" in fields:
            message["reasoning_content"] = fields["reasoning_content"]
        choices.append({
            "index": k, "message": message, "logprobs": logprobs,
            "finish_reason": call_finish_reason(reason, "tool_calls" in message),
        })
    return json_response({
        "id": response_id, "object": "chat.completion", "created": created, "model": model,
        "choices": choices, "usage": usage_dict(*usage_totals(gens, req.n)),
    })
