"""The interface every frontend backend implements (our runtime over HTTP, OpenAI, ...).

The interpreter owns the program state; a backend only sees what it needs: the text so far (for
completion-style backends) and the chat messages so far (for chat backends).
"""

from __future__ import annotations

import abc
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sglang.lang.chat_template import ChatTemplate
from sglang.lang.choices import ChoiceScores, ChoicesSamplingMethod, token_length_normalized


@dataclass
class GenParams:
    """Sampling arguments of one `sgl.gen`, in SGLang's names; None means 'backend default'."""

    max_new_tokens: int | None = None
    min_new_tokens: int | None = None
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    ignore_eos: bool | None = None
    regex: str | None = None
    json_schema: str | None = None
    dtype: type | str | None = None
    stop_regex: str | list[str] | None = None
    n: int | None = None  # n > 1: the gen's value is the list of n samples
    # Not sampling parameters: the native API takes these beside sampling_params, and the
    # logprobs come back in the gen's meta info (state.get_meta_info(name)).
    return_logprob: bool | None = None
    logprob_start_len: int | None = None
    top_logprobs_num: int | None = None
    return_text_in_logprobs: bool | None = None

    def to_sampling_params(self) -> dict[str, Any]:
        """The non-None sampling fields as the runtime's sampling_params."""
        return {k: v for k, v in self.__dict__.items()
                if v is not None and k not in NOT_SAMPLING_FIELDS}

    def request_fields(self) -> dict[str, Any]:
        """The non-None logprob fields, for the top level of a /generate body."""
        return {k: getattr(self, k) for k in LOGPROB_FIELDS if getattr(self, k) is not None}


LOGPROB_FIELDS = ("return_logprob", "logprob_start_len", "top_logprobs_num",
                  "return_text_in_logprobs")
NOT_SAMPLING_FIELDS = frozenset({"dtype", *LOGPROB_FIELDS})


@dataclass
class Context:
    """What a backend call sees of the program: its text so far and its chat messages so far."""

    text: str
    messages: list[dict[str, str]] = field(default_factory=list)
    # sgl.image / sgl.video items in prompt order: {"type": "image"|"video", "data": path, URL,
    # base64 or bytes, "num_frames": N (videos)}; their tokens are already in `text`.
    media: list[dict[str, Any]] = field(default_factory=list)


def decide_select(choices: list[str], scores: ChoiceScores, temperature: float,
                  choices_method: ChoicesSamplingMethod | None, rng: Any = None,
                  **meta: Any) -> SelectResult:
    """The SelectResult of `choices_method` (default token_length_normalized) over `scores`;
    `meta` is added to the method's meta info."""
    decision = (choices_method or token_length_normalized)(scores, temperature, rng or random)
    return SelectResult(choice=choices[decision.index],
                        normalized_logprobs=scores.normalized_logprobs,
                        meta={**decision.meta, **meta})


@dataclass
class SelectResult:
    choice: str
    normalized_logprobs: list[float]  # one per choice, mean token logprob of the choice tokens
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class TokenUsage:
    """Tokens a backend's requests used; run_batch's threads add to it concurrently."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, prompt: int, completion: int) -> None:
        with self._lock:
            self.prompt_tokens += prompt
            self.completion_tokens += completion

    def reset(self) -> None:
        with self._lock:
            self.prompt_tokens = self.completion_tokens = 0


class BaseBackend(abc.ABC):
    def __init__(self) -> None:
        self.token_usage = TokenUsage()

    @abc.abstractmethod
    def get_chat_template(self) -> ChatTemplate:
        """How role blocks (sgl.system/user/assistant) render into text for this model."""

    @abc.abstractmethod
    def generate(self, ctx: Context, params: GenParams) -> tuple[str | list[str], dict[str, Any]]:
        """Continue `ctx`; return (generated text, meta_info), or with `params.n` > 1 the list
        of the n texts (meta_info then describes the first, `"n_meta_info"` lists all)."""

    def generate_stream(
        self, ctx: Context, params: GenParams
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield (text delta, meta_info) pieces; by default one piece."""
        yield self.generate(ctx, params)

    @abc.abstractmethod
    def select(
        self, ctx: Context, choices: list[str], temperature: float = 0.0,
        choices_method: ChoicesSamplingMethod | None = None,
    ) -> SelectResult:
        """Score every choice after `ctx` and let `choices_method` (default
        `token_length_normalized`, see `sglang.lang.choices`) pick one."""

    def cache_prefix(  # noqa: B027 - optional: a no-op by default
        self, prefix: str, media: list[dict[str, Any]] | None = None
    ) -> None:
        """Ask the runtime to compute and cache `prefix` (fork and run_batch use this), with
        the media items it holds (backends with `supports_images`)."""

    def flush_cache(self) -> bool:
        return False

    def get_server_args(self) -> dict[str, Any]:
        return {}

    def shutdown(self) -> None:  # noqa: B027 - optional: a no-op by default
        """Release connections or processes the backend holds."""
