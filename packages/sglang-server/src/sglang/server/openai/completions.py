"""`POST /v1/completions`: OpenAI's legacy text completion over the tokenizer manager."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response

from sglang.protocol.generate import GenerateReqInput
from sglang.runtime.inputs import MAX_BATCH, MAX_GENERATIONS
from sglang.runtime.result import ResultAccumulator, ResultStep
from sglang.server.errors import bad_request
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
    CompletionRequest,
    new_id,
    now,
    usage_dict,
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

DEFAULT_MAX_TOKENS = 16  # OpenAI's default for this endpoint
Prompt = str | list[int]


def normalize_prompts(prompt: Any) -> list[Prompt]:
    """`prompt` as a list of prompts: str, list[str], list[int] or list[list[int]]."""

    def is_ids(x: Any) -> bool:
        return isinstance(x, list) and bool(x) and all(
            isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in x
        )

    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and len(prompt) > MAX_BATCH and not is_ids(prompt):
        raise bad_request(f"prompt may hold at most {MAX_BATCH} prompts, got {len(prompt)}",
                          "prompt")
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return list(prompt)
        if is_ids(prompt):
            return [list(prompt)]
        if all(is_ids(p) for p in prompt):
            return [list(p) for p in prompt]
    raise bad_request(
        "prompt must be a string, a non-empty list of strings, a non-empty list of token ids "
        "(non-negative integers) or a list of such lists",
        "prompt",
    )


def check_completion(req: CompletionRequest, prompts: int) -> None:
    check_common(req)
    if prompts * req.n > MAX_GENERATIONS:
        # Each prompt is its own front-door request, so the per-request cap is applied here.
        raise bad_request(
            f"{prompts} prompts x n={req.n} is {prompts * req.n} generations; at most "
            f"{MAX_GENERATIONS} are allowed per request", "n",
        )
    if req.suffix:
        raise bad_request("suffix is not supported", "suffix")
    if req.best_of is not None and req.best_of != req.n:
        raise bad_request("best_of is not supported (it must equal n when given)", "best_of")
    if req.logprobs is not None and not 0 <= req.logprobs <= MAX_TOP_LOGPROBS:
        raise bad_request(
            f"logprobs must be in [0, {MAX_TOP_LOGPROBS}], got {req.logprobs}", "logprobs"
        )
    mt = req.max_tokens
    if mt is not None and (mt < 0 or (mt == 0 and not req.echo)):
        # max_tokens=0 with echo is the "score the prompt" idiom (echo + logprobs).
        raise bad_request(f"max_tokens must be >= 1 (or 0 with echo), got {mt}", "max_tokens")


def completion_logprobs(
    entries: list[LogprobEntry], tops: list[Any], tokenizer: Any, offset: int
) -> dict[str, Any]:
    """OpenAI's legacy logprobs object; `text_offset` counts characters of the choice's text."""
    out: dict[str, Any] = {
        "tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": [],
    }
    for entry, top in zip(entries, tops):
        text = token_text(entry, tokenizer)
        out["tokens"].append(text)
        out["token_logprobs"].append(entry[0])
        out["top_logprobs"].append(
            None if top is None else {token_text(t, tokenizer): t[0] for t in top}
        )
        out["text_offset"].append(offset)
        offset += len(text)
    return out


def _prompt_logprobs(acc: ResultAccumulator) -> tuple[list[LogprobEntry], list[Any]]:
    lps = list(acc.input_token_logprobs)
    tops = list(acc.input_top_logprobs)
    return lps, tops + [None] * (len(lps) - len(tops))


class _CompletionStream(StreamFormat):
    object_name = "text_completion"

    def __init__(self, req: CompletionRequest, prompt_texts: list[str], tokenizer: Any,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.req, self.prompt_texts, self.tokenizer = req, prompt_texts, tokenizer
        self.offsets: dict[int, int] = {}

    def content(
        self, k: int, step: ResultStep, first: bool, lps: list[LogprobEntry], tops: list[Any]
    ) -> dict[str, Any] | None:
        text = step.delta
        if first and self.req.echo:
            text = self.prompt_texts[k // self.req.n] + text
            in_lps, in_tops = _prompt_logprobs(step.acc)
            lps, tops = in_lps + lps, in_tops + tops
        if not text and not lps:
            return None
        logprobs = None
        if self.req.logprobs is not None:
            offset = self.offsets.get(k, 0)
            logprobs = completion_logprobs(lps, tops, self.tokenizer, offset)
            self.offsets[k] = offset + sum(len(t) for t in logprobs["tokens"])
        return {"index": k, "text": text, "logprobs": logprobs, "finish_reason": None}

    def finish(self, k: int, reason: str) -> dict[str, Any]:
        return {"index": k, "text": "", "logprobs": None, "finish_reason": reason}


async def create_completion(tm: TokenizerManagerLike, request: Request) -> Response:
    req = decode_request(await request.body(), CompletionRequest)
    prompts = normalize_prompts(req.prompt)
    check_completion(req, len(prompts))
    response_id = new_id("cmpl")
    max_new = DEFAULT_MAX_TOKENS if req.max_tokens is None else req.max_tokens
    params = sampling_params(req, max_new)
    schema = response_format_schema(req)
    if schema is not None:
        params["json_schema"] = schema
    want_lp = req.logprobs is not None
    base_rid = req.rid or response_id
    objs = [
        GenerateReqInput(
            text=p if isinstance(p, str) else None,
            input_ids=p if isinstance(p, list) else None,
            sampling_params=with_copies(params, req.n, req.seed),
            return_logprob=want_lp,
            top_logprobs_num=req.logprobs or 0,
            # Prompt logprobs are only needed to echo them.
            logprob_start_len=0 if (want_lp and req.echo) else -1,
            return_text_in_logprobs=True,
            stream=req.stream,
            rid=base_rid if len(prompts) == 1 else f"{base_rid}-{i}",
        )
        for i, p in enumerate(prompts)
    ]
    prompt_texts = [p if isinstance(p, str) else tm.tokenizer.decode(p) for p in prompts] \
        if req.echo else [""] * len(prompts)
    with openai_names("completions"):
        started = await start_all(tm, objs, request)
    created, model = now(), tm.served_model_name
    if req.stream:
        fmt = _CompletionStream(
            req, prompt_texts, tm.tokenizer, response_id=response_id, model=model,
            created=created, include_usage=req.include_usage,
            continuous_usage=req.continuous_usage,
        )
        return sse_response(stream_events(started, req.n, fmt))

    gens = await gather_or_cancel([run_to_end(s) for s in started])
    choices = []
    for k, gen in enumerate(gens):
        final = gen.step("")
        reason = finish_reason(final)
        if reason == "abort" and not gen.text:
            raise abort_error(final)
        logprobs = None
        if want_lp:
            lps, tops = final.new_output_logprobs(0)
            if req.echo:
                in_lps, in_tops = _prompt_logprobs(gen)
                lps, tops = in_lps + lps, in_tops + tops
            logprobs = completion_logprobs(lps, tops, tm.tokenizer, 0)
        choices.append({
            "index": k, "text": prompt_texts[k // req.n] + gen.text, "logprobs": logprobs,
            "finish_reason": reason,
        })
    return json_response({
        "id": response_id, "object": "text_completion", "created": created, "model": model,
        "choices": choices, "usage": usage_dict(*usage_totals(gens, req.n)),
    })
