"""Messages between the runtime's parts: msgspec Structs, tagged so one socket can carry several
kinds (`msgspec.msgpack.Decoder(SchedulerInput)` decodes any of them)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from sglang.protocol.sampling_params import SamplingParams

# (logprob, token_id); a prompt's first token has no logprob.
TokenLogprob = tuple[float | None, int]
TopLogprobs = list[tuple[float, int]]


# ---- into the scheduler ------------------------------------------------------------------
class MultimodalItem(msgspec.Struct, kw_only=True, frozen=True):
    """One image or video of a prompt, preprocessed by an input processor.

    Its placeholder ids fill input_ids[offset : offset + length] and derive from `content_hash`
    (see `multimodal_inputs.placeholder_ids`), so the radix cache tells items apart by content.
    `features` is the raw buffer of a C-contiguous array of `dtype` (a numpy/torch dtype name)
    and `shape`: what the model's encoder takes, sent through msgpack as plain bytes."""

    modality: Literal["image", "video"]
    content_hash: str  # hex digest of the modality and the preprocessed features
    offset: int
    length: int
    features: bytes
    dtype: str
    shape: list[int]

    @property
    def end(self) -> int:
        return self.offset + self.length


class TokenizedGenerateReq(msgspec.Struct, kw_only=True, tag=True):
    """One prompt, tokenized and validated by the tokenizer manager (n == 1: fan-out of n
    happens before, each copy with its own rid and seed)."""

    rid: str
    input_ids: list[int]
    sampling_params: SamplingParams
    return_logprob: bool = False
    logprob_start_len: int = -1
    top_logprobs_num: int = 0
    # Images and videos of the prompt, in order of their placeholder spans; None for text only.
    mm_items: list[MultimodalItem] | None = None


class AbortReq(msgspec.Struct, kw_only=True, tag=True):
    rid: str


class FlushCacheReq(msgspec.Struct, kw_only=True, tag=True):
    pass


class StatsReq(msgspec.Struct, kw_only=True, tag=True):
    pass


SchedulerInput = TokenizedGenerateReq | AbortReq | FlushCacheReq | StatsReq


# ---- out of the scheduler ----------------------------------------------------------------
class TokenOutput(msgspec.Struct, kw_only=True, tag=True):
    """What one scheduler step produced for one request: new tokens, and at the end why it
    finished. Logprob lists are deltas, in step with `new_token_ids`."""

    rid: str
    new_token_ids: list[int]
    finished: bool = False
    finish_reason: dict[str, Any] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    output_token_logprobs: list[TokenLogprob] | None = None
    output_top_logprobs: list[TopLogprobs] | None = None
    # Sent once, with the first output of a request that asked for prompt logprobs.
    input_token_logprobs: list[TokenLogprob] | None = None
    input_top_logprobs: list[TopLogprobs | None] | None = None
    error: str | None = None


class TokenOutputBatch(msgspec.Struct, kw_only=True, tag=True):
    outputs: list[TokenOutput]


class FlushCacheResult(msgspec.Struct, kw_only=True, tag=True):
    success: bool
    message: str = ""


class SchedulerStats(msgspec.Struct, kw_only=True, tag=True):
    num_running: int
    num_waiting: int
    kv_used_tokens: int
    kv_total_tokens: int
    cached_prompt_tokens: int  # total prompt tokens served from the radix cache
    prompt_tokens: int  # total prompt tokens admitted
    generated_tokens: int
    forward_steps: int
    decode_steps: int
    decode_batch_tokens: int  # sum of decode batch sizes (mean batch = this / decode_steps)
    num_retractions: int


SchedulerOutput = TokenOutputBatch | FlushCacheResult | SchedulerStats
