"""A backend over the OpenAI API (or any server speaking it, such as our own `/v1`).

Chat models get the program's chat messages (`chat.completions`); completion models get its
text (`completions`). `select`:
- completion models: exact scoring. One request echoes `text + choice` for every choice with
  `max_tokens=0, echo=True, logprobs=0`; a choice's score is the mean logprob of the tokens
  that overlap its characters (found with `text_offset`; a token straddling the boundary
  counts).
- chat models: the API can't score a given continuation, so the model answers (up to enough
  tokens for the longest choice, at the select's temperature) and the answer is matched to the
  choices: a choice the answer starts with wins (the longest such), else the longest common
  prefix, else the most similar text (case-insensitive, leading space ignored). The winner's
  normalized logprob is the mean logprob of the answer tokens that cover it; the others get
  -inf, since they were not scored. `meta["method"]` says which way was used.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Iterator
from typing import Any

from sglang.lang.backend.base import (
    BaseBackend,
    Context,
    GenParams,
    SelectResult,
    decide_select,
)
from sglang.lang.backend.openai_typed import generate_typed, is_typed
from sglang.lang.backend.runtime_endpoint import DEFAULT_MAX_NEW_TOKENS
from sglang.lang.chat_template import ChatTemplate
from sglang.lang.choices import ChoiceScores, ChoicesSamplingMethod, TokenLengthNormalized

# Models that only have the legacy completions endpoint.
COMPLETION_MODELS = ("gpt-3.5-turbo-instruct", "davinci-002", "babbage-002")

CHATML = ChatTemplate(
    name="chatml",
    role_prefix_and_suffix={
        r: (f"<|im_start|>{r}\n", "<|im_end|>\n") for r in ("system", "user", "assistant")
    },
    stop_str=["<|im_end|>"],
)


def _import_openai() -> Any:
    try:
        import openai
    except ImportError as e:
        raise ImportError(
            "the OpenAI backend needs the openai package: pip install 'sglang-lang[openai]'"
        ) from e
    return openai


def guess_is_chat_model(model: str) -> bool:
    name = model.lower().rsplit("/", 1)[-1]
    return not (name.startswith(COMPLETION_MODELS) or name.startswith("text-"))


def _usage(resp: Any) -> tuple[int, int]:
    u = getattr(resp, "usage", None)
    return (int(u.prompt_tokens or 0), int(u.completion_tokens or 0)) if u else (0, 0)


class OpenAI(BaseBackend):
    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        is_chat_model: bool | None = None,
        chat_template: ChatTemplate | None = None,
        **client_kwargs: Any,
    ) -> None:
        super().__init__()
        openai = _import_openai()
        if api_key is None and base_url is not None and not os.environ.get("OPENAI_API_KEY"):
            api_key = "EMPTY"  # self-hosted servers usually need none, but the client wants one
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, **client_kwargs)
        self.model = model
        self.is_chat_model = guess_is_chat_model(model) if is_chat_model is None else is_chat_model
        self.chat_template = chat_template or CHATML

    def get_chat_template(self) -> ChatTemplate:
        return self.chat_template

    def get_model_name(self) -> str:
        return self.model

    # num_api_spec_tokens: completion models serve several gens from one completion
    # (sglang.lang.speculative); chat models one answer per assistant block
    # (sglang.lang.chat_speculative).
    @property
    def supports_speculative_gen(self) -> bool:
        return not self.is_chat_model

    @property
    def supports_chat_speculation(self) -> bool:
        return self.is_chat_model

    # ---- request building ---------------------------------------------------------------------
    def _kwargs(self, params: GenParams) -> dict[str, Any]:
        if params.regex is not None:
            raise ValueError("the OpenAI backend does not support regex (typed gens, dtype=..., "
                             "work on completion models)")
        if params.request_fields():
            raise ValueError("the OpenAI backend does not return logprobs for gen "
                             "(return_logprob, ...); use RuntimeEndpoint or sgl.Runtime")
        kw: dict[str, Any] = {
            "model": self.model,
            "max_tokens": params.max_new_tokens
            if params.max_new_tokens is not None else DEFAULT_MAX_NEW_TOKENS,
        }
        for name in ("stop", "temperature", "top_p", "frequency_penalty", "presence_penalty", "n"):
            if getattr(params, name) is not None:
                kw[name] = getattr(params, name)
        # Not OpenAI parameters, but SGLang-compatible servers take them; a user who set one
        # gets it sent (and a clear error from a server that refuses it), never silently dropped.
        extra = {k: getattr(params, k)
                 for k in ("top_k", "min_p", "ignore_eos", "stop_token_ids", "stop_regex")
                 if getattr(params, k) is not None}
        if params.min_new_tokens is not None:
            extra["min_tokens"] = params.min_new_tokens
        if params.json_schema is not None:
            if not self.is_chat_model:
                raise ValueError("the OpenAI backend supports json_schema only for chat models")
            kw["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "output", "schema": json.loads(params.json_schema)}}
        if extra:
            kw["extra_body"] = extra
        return kw

    def _messages(self, ctx: Context) -> list[dict[str, str]]:
        # The messages hold completed blocks only, so text already written in the open
        # assistant block (or a gen outside one) would be silently lost: refuse instead.
        if ctx.text and not ctx.text.endswith(self.chat_template.prefix("assistant")):
            raise ValueError("OpenAI chat models can only generate right at the start of an "
                             "assistant block (sgl.assistant(sgl.gen(...)))")
        messages = list(ctx.messages)
        if messages and messages[-1]["role"] == "assistant":
            if messages[-1]["content"]:
                raise ValueError("OpenAI chat models can't continue a partly written assistant "
                                 "message: put sgl.gen right at the start of sgl.assistant")
            messages.pop()  # the assistant block being generated
        if not messages:
            raise ValueError("chat models need role blocks (sgl.system/user/assistant); use "
                             "is_chat_model=False to send plain text to the completions API")
        return messages

    def _create(self, params: GenParams, **extra: Any) -> Any:
        kw = {**self._kwargs(params), **extra}
        if self.is_chat_model:
            return self.client.chat.completions.create(messages=kw.pop("messages"), **kw)
        return self.client.completions.create(**kw)

    # ---- generation ---------------------------------------------------------------------------
    def generate(self, ctx: Context, params: GenParams) -> tuple[str | list[str], dict[str, Any]]:
        if is_typed(params):
            if self.is_chat_model:
                raise ValueError("typed gens (dtype=..., sgl.gen_int, sgl.gen_string) need a "
                                 "completion model on the OpenAI backend (is_chat_model=False)")
            return generate_typed(ctx.text, params, self._complete)
        target = {"messages": self._messages(ctx)} if self.is_chat_model else {"prompt": ctx.text}
        return self._answer(self._create(params, **target))

    def _complete(self, prompt: str, params: GenParams) -> tuple[str, dict[str, Any]]:
        text, meta = self._answer(self._create(params, prompt=prompt))
        return str(text), meta

    def _answer(self, resp: Any) -> tuple[str | list[str], dict[str, Any]]:
        texts = [(c.message.content or "") if self.is_chat_model else c.text
                 for c in sorted(resp.choices, key=lambda c: c.index)]
        prompt_tokens, completion_tokens = _usage(resp)
        self.token_usage.add(prompt_tokens, completion_tokens)
        meta = {"id": resp.id, "finish_reason": resp.choices[0].finish_reason,
                "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
        if len(texts) > 1:  # n > 1
            return texts, {**meta, "n_meta_info": [
                {"finish_reason": c.finish_reason} for c in resp.choices]}
        return texts[0], meta

    def generate_stream(
        self, ctx: Context, params: GenParams
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        if is_typed(params):  # checked as a whole: nothing to stream piecewise
            yield self.generate(ctx, params)
            return
        target = {"messages": self._messages(ctx)} if self.is_chat_model else {"prompt": ctx.text}
        stream = self._create(params, stream=True, stream_options={"include_usage": True},
                              **target)
        meta: dict[str, Any] = {"finish_reason": None}
        for chunk in stream:
            if chunk.usage is not None:  # the last chunk, with no choices
                meta["prompt_tokens"], meta["completion_tokens"] = _usage(chunk)
                self.token_usage.add(*_usage(chunk))
            for c in chunk.choices:
                delta = (c.delta.content or "") if self.is_chat_model else (c.text or "")
                meta = {**meta, "id": chunk.id, "finish_reason": c.finish_reason}
                if delta or c.finish_reason:
                    yield delta, dict(meta)

    # ---- select -------------------------------------------------------------------------------
    def select(self, ctx: Context, choices: list[str], temperature: float = 0.0,
               choices_method: ChoicesSamplingMethod | None = None) -> SelectResult:
        if not choices or any(not isinstance(c, str) or not c for c in choices):
            raise ValueError("select needs a non-empty list of non-empty string choices")
        if self.is_chat_model:
            if choices_method is not None and not isinstance(choices_method,
                                                             TokenLengthNormalized):
                raise ValueError("chat models on the OpenAI backend can't score given choices, "
                                 "so select takes only the default choices_method")
            scores, meta = self._select_by_answer(ctx, choices, temperature)
            best = max(range(len(choices)), key=lambda i: (scores[i], -i))
            meta["normalized_prompt_logprobs"] = scores
            return SelectResult(choice=choices[best], normalized_logprobs=scores, meta=meta)
        values = self._echo_logprobs([ctx.text + c for c in choices], len(ctx.text), choices)
        uncond = None
        if choices_method is not None and choices_method.requires_unconditional_logprobs:
            uncond = self._echo_logprobs(list(choices), 0, choices)
        return decide_select(choices, ChoiceScores(choices, values, uncond), temperature,
                             choices_method, method="echo_logprobs")

    def _echo_logprobs(self, prompts: list[str], start: int,
                       choices: list[str]) -> list[list[float]]:
        """Per prompt: the logprobs of the tokens overlapping its choice's characters
        [start, start + len(choice)), from one echo request (max_tokens=0)."""
        resp = self.client.completions.create(
            model=self.model, prompt=prompts, max_tokens=0, echo=True, logprobs=0,
            temperature=0.0,
        )
        self.token_usage.add(*_usage(resp))
        out: list[list[float]] = [[] for _ in prompts]
        for ch in resp.choices:
            lp = ch.logprobs
            # A token straddling the boundary counts; the upper bound also drops any token a
            # server generated despite max_tokens=0.
            lo, hi = start, start + len(choices[ch.index])
            out[ch.index] = [v for tok, v, off in zip(lp.tokens, lp.token_logprobs, lp.text_offset)
                             if off < hi and off + len(tok) > lo and v is not None]
        return out

    def _select_by_answer(
        self, ctx: Context, choices: list[str], temperature: float
    ) -> tuple[list[float], dict]:
        # A token is at least one character, so this many tokens can spell any choice.
        params = GenParams(max_new_tokens=max(len(c) for c in choices) + 2,
                           temperature=temperature)
        resp = self._create(params, messages=self._messages(ctx), logprobs=True)
        self.token_usage.add(*_usage(resp))
        answer = resp.choices[0].message.content or ""
        tokens = getattr(resp.choices[0].logprobs, "content", None) or []
        lead = len(answer) - len(answer.lstrip())
        norm = answer.lstrip().casefold()

        def rank(c: str) -> tuple[bool, int, float]:
            k = c.strip().casefold()
            common = len(os.path.commonprefix([norm, k]))
            return norm.startswith(k), common, difflib.SequenceMatcher(None, norm, k).ratio()

        ranks = [rank(c) for c in choices]
        best = max(range(len(choices)), key=lambda i: (ranks[i], -i))
        # Mean logprob of the answer tokens up to the end of the matched characters.
        need, covered, values = lead + max(ranks[best][1], 1), 0, []
        for t in tokens:
            if covered >= need:
                break
            values.append(t.logprob)
            covered += len(t.token)
        scores = [-math.inf] * len(choices)
        scores[best] = sum(values) / len(values) if values else 0.0
        return scores, {"method": "generate_and_match", "answer": answer}


__all__ = ["OpenAI", "guess_is_chat_model"]
