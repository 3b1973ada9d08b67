"""A backend that talks to a running sglang server over its native HTTP API (`/generate`).

`select` scores choices with the runtime's prompt logprobs: it never generates. The prompt is
sent once on its own (`max_new_tokens=0`), which caches it and tells us its token count P;
then one batch request scores `prompt + choice` for every choice. See `_score_choices` for how
a token merging across the prompt/choice boundary is handled.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Iterator
from typing import Any

import httpx

from sglang.lang.backend.base import (
    BaseBackend,
    Context,
    GenParams,
    SelectResult,
    decide_select,
)
from sglang.lang.backend.media_fields import media_fields, per_prompt
from sglang.lang.chat_template import PLAIN, ChatTemplate
from sglang.lang.choices import ChoiceScores, ChoicesSamplingMethod, pick_choice

logger = logging.getLogger("sglang.lang")

# SGLang's frontend default when `sgl.gen` gives no max_tokens.
DEFAULT_MAX_NEW_TOKENS = 128
# How many of the prompt's last tokens are re-scored with each choice, to notice a choice whose
# first characters merge with the end of the prompt into different tokens (e.g. prompt
# "Answer: " + choice "yes" tokenizes as "Answer", ":", " yes", not "...", " ", "yes").
BOUNDARY_TOKENS = 3

Triple = list[Any]  # (logprob | None, token id, token text | None), as JSON gives it


class RuntimeEndpointError(RuntimeError):
    """The server failed or could not be reached."""

    def __init__(self, message: str, status: int | None = None, param: str | None = None):
        super().__init__(message)
        self.message, self.status, self.param = message, status, param


class RequestRejected(RuntimeEndpointError, ValueError):
    """The server refused the request (4xx): something in it is invalid. Also a ValueError, so
    callers can treat it as bad input."""


def _raise_for_status(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    message, param = resp.text.strip() or resp.reason_phrase, None
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error", body.get("detail"))
        if isinstance(err, dict):
            message, param = str(err.get("message", err)), err.get("param")
        elif err is not None:
            message = str(err)
    where = f"{resp.request.method} {resp.request.url.path}"
    text = f"{where} failed with HTTP {resp.status_code}: {message}"
    cls = RequestRejected if 400 <= resp.status_code < 500 else RuntimeEndpointError
    raise cls(text, resp.status_code, param)


def chat_template_from_info(info: dict[str, Any] | None) -> ChatTemplate | None:
    """The ChatTemplate a server describes in /get_model_info, or None if it gives none."""
    if not isinstance(info, dict) or not info.get("role_prefix_and_suffix"):
        return None
    return ChatTemplate(
        name=str(info.get("name") or "server"),
        role_prefix_and_suffix={r: (str(p), str(s))
                                for r, (p, s) in info["role_prefix_and_suffix"].items()},
        default_system_prompt=info.get("default_system_prompt"),
        stop_str=list(info.get("stop_str") or []),
        **{k: str(info[k]) for k in ("image_token", "video_token") if info.get(k)},
    )


class RuntimeEndpoint(BaseBackend):
    """`token_usage` counts every /generate request this backend sends, including select's
    scoring requests and cache_prefix: it measures what the server computed for us.
    sgl.image / sgl.video items go as image_data / video_data with every request that carries
    their text (generation, select's scoring, cache_prefix)."""

    supports_images = True
    supports_videos = True

    def __init__(self, base_url: str, api_key: str | None = None,
                 timeout: float | None = None) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # No read limit by default, as in SGLang: a long program's generation may take hours
        # on a loaded server. Connecting should not take long.
        self._client = httpx.Client(
            base_url=self.base_url, headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout or 30.0, 30.0)),
        )
        self._model_info: dict[str, Any] | None = None
        self._chat_template: ChatTemplate | None = None
        self.rng = random.Random()  # used by select at temperature > 0; seed it for repeatability

    # ---- HTTP ---------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        try:
            resp = self._client.request(method, path, json=body)
        except httpx.HTTPError as e:
            raise RuntimeEndpointError(f"{method} {self.base_url}{path} failed: {e}") from e
        _raise_for_status(resp)
        return resp

    def _generate(self, body: dict[str, Any]) -> Any:
        data = self._request("POST", "/generate", body).json()
        for item in data if isinstance(data, list) else [data]:
            self._count(item.get("meta_info") or {})
        return data

    def _count(self, meta: dict[str, Any]) -> None:
        self.token_usage.add(int(meta.get("prompt_tokens") or 0),
                             int(meta.get("completion_tokens") or 0))

    @staticmethod
    def _sampling_params(params: GenParams) -> dict[str, Any]:
        sp = params.to_sampling_params()  # regex / json_schema go as-is: the server decides
        sp.setdefault("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
        return sp

    def _media(self, media: list[dict[str, Any]] | None) -> dict[str, Any]:
        """image_data / video_data for a request body (files and bytes as base64)."""
        return media_fields(media)

    # ---- server info --------------------------------------------------------------------------
    def get_model_info(self) -> dict[str, Any]:
        if self._model_info is None:
            self._model_info = self._request("GET", "/get_model_info").json()
        return self._model_info

    def get_model_name(self) -> str:
        """The served model's path or name, as the server reports it."""
        return str(self.get_model_info().get("model_path"))

    def get_chat_template(self) -> ChatTemplate:
        if self._chat_template is None:
            template = chat_template_from_info(self.get_model_info().get("chat_template"))
            if template is None:
                logger.warning("the server at %s does not describe its chat template; role "
                               "blocks use the plain 'ROLE: text' format", self.base_url)
                template = PLAIN
            self._chat_template = template
        return self._chat_template

    def get_server_args(self) -> dict[str, Any]:
        return self._request("GET", "/get_server_args").json()

    def flush_cache(self) -> bool:
        """True if the cache was flushed (the server refuses while requests are running)."""
        try:
            self._request("POST", "/flush_cache")
        except RequestRejected:
            return False
        return True

    # ---- generation ---------------------------------------------------------------------------
    def generate(self, ctx: Context, params: GenParams) -> tuple[str | list[str], dict[str, Any]]:
        data = self._generate({"text": ctx.text, "sampling_params": self._sampling_params(params),
                               **params.request_fields(), **self._media(ctx.media)})
        if isinstance(data, list):  # sampling_params.n > 1: one result per sample
            metas = [d["meta_info"] for d in data]
            return [d["text"] for d in data], {**metas[0], "n_meta_info": metas}
        return data["text"], data["meta_info"]

    def generate_stream(
        self, ctx: Context, params: GenParams
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        body = {"text": ctx.text, "sampling_params": self._sampling_params(params), "stream": True,
                **params.request_fields(), **self._media(ctx.media)}
        try:
            with self._client.stream("POST", "/generate", json=body) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    _raise_for_status(resp)
                text, meta = "", {}
                for line in resp.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    chunk = json.loads(payload)
                    if "error" in chunk:  # a failure after the stream started
                        err = chunk["error"]
                        raise RuntimeEndpointError(
                            f"POST /generate failed while streaming: {err.get('message', err)}",
                            err.get("code"), err.get("param"))
                    # `text` is cumulative; the delta is what is new since the last chunk.
                    new_text, meta = chunk["text"], chunk.get("meta_info") or {}
                    delta = new_text[len(text):] if new_text.startswith(text) else new_text
                    text = new_text
                    yield delta, meta
        except httpx.HTTPError as e:
            raise RuntimeEndpointError(f"POST {self.base_url}/generate failed: {e}") from e
        self._count(meta)

    def cache_prefix(self, prefix: str, media: list[dict[str, Any]] | None = None) -> None:
        if prefix:  # the server refuses empty prompts; there is nothing to cache anyway
            self._generate({"text": prefix, "sampling_params": {"max_new_tokens": 0},
                            **self._media(media)})

    # ---- select -------------------------------------------------------------------------------
    def select(self, ctx: Context, choices: list[str], temperature: float = 0.0,
               choices_method: ChoicesSamplingMethod | None = None) -> SelectResult:
        if not choices:
            raise ValueError("select needs at least one choice")
        if any(not isinstance(c, str) or not c for c in choices):
            raise ValueError("select choices must be non-empty strings")
        _, scored, merged, prompt_len = self._score_choices(
            ctx.text, choices, self._media(ctx.media))
        values = [[t[0] for t in own if t[0] is not None] for own in scored]
        uncond = None
        if choices_method is not None and choices_method.requires_unconditional_logprobs:
            uncond = self._unconditional_logprobs(choices)
        return decide_select(
            choices, ChoiceScores(choices, values, uncond), temperature, choices_method, self.rng,
            input_token_logprobs=scored,  # per choice: the tokens its score averages
            boundary_merged=merged, prompt_tokens=prompt_len,
        )

    def _unconditional_logprobs(self, choices: list[str]) -> list[list[float]]:
        """Each choice scored on its own (no prompt): its tokens' logprobs after the first."""
        results = self._generate({
            "text": list(choices), "sampling_params": {"max_new_tokens": 0, "temperature": 0.0},
            "return_logprob": True, "logprob_start_len": 0,
        })
        return [[t[0] for t in r["meta_info"]["input_token_logprobs"] if t[0] is not None]
                for r in results]

    def _score_choices(
        self, prompt: str, choices: list[str], media: dict[str, Any] | None = None
    ) -> tuple[list[float], list[list[Triple]], list[bool], int]:
        """(normalized logprob, scored tokens, merged-at-boundary flag) per choice, and P.

        Boundary handling: the choices are scored from position max(P - BOUNDARY_TOKENS, 0) and
        the prompt itself rides in the same batch (scored from there too), which gives the ids
        of its last tokens. A choice's scored tokens start at the first position where its ids
        differ from the prompt's, so normally exactly its own tokens (positions P..) count; when
        its first characters merged with the prompt's end into other tokens, the merged tokens
        count too (they hold the choice's start, plus a few prompt characters shared by every
        choice). A merge reaching further back than BOUNDARY_TOKENS is not detected; those
        choices are scored from P - BOUNDARY_TOKENS. The first token of a text has no logprob
        (nothing precedes it), so it never counts.
        """
        media = media or {}  # each text holds the prompt's media tokens: all get its media
        prompt_len = 0
        if prompt:
            probe = self._generate({"text": prompt, "sampling_params": {"max_new_tokens": 0},
                                    **media})
            prompt_len = int(probe["meta_info"]["prompt_tokens"])
        start = max(prompt_len - BOUNDARY_TOKENS, 0)
        texts = [prompt + c for c in choices] + ([prompt] if prompt else [])
        results = self._generate({
            "text": texts,
            "sampling_params": {"max_new_tokens": 0, "temperature": 0.0},
            "return_logprob": True,
            "logprob_start_len": start,
            "return_text_in_logprobs": True,
            **per_prompt(media, len(texts)),
        })
        tail = results[-1]["meta_info"]["input_token_logprobs"] if prompt else []
        tail_ids = [t[1] for t in tail]
        scores, scored, merged = [], [], []
        for res in results[: len(choices)]:
            entries = res["meta_info"]["input_token_logprobs"]
            d = 0
            while d < len(tail_ids) and d < len(entries) and entries[d][1] == tail_ids[d]:
                d += 1
            own = entries[d:]
            values = [t[0] for t in own if t[0] is not None]
            scores.append(sum(values) / len(values) if values else -math.inf)
            scored.append(own)
            merged.append(d < len(tail_ids))
        return scores, scored, merged, prompt_len

    def shutdown(self) -> None:
        self._client.close()


__all__ = ["RequestRejected", "RuntimeEndpoint", "RuntimeEndpointError", "pick_choice"]
