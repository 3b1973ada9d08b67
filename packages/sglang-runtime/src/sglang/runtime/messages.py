"""Every message that crosses a process: msgspec Structs, tagged so one socket can carry several
kinds (`msgspec.msgpack.Decoder(SchedulerInput)` decodes any of them).

The unions at the end name what each receiver decodes: the scheduler process, the detokenizer
(and the Engine's receiver under tensor parallelism), and the server's tokenizer manager.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from sglang.protocol.sampling_params import SamplingParams

# (logprob, token_id); a prompt's first token has no logprob.
TokenLogprob = tuple[float | None, int]
TopLogprobs = list[tuple[float, int]]


class FinishReason(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Why a request stopped. `to_dict()` is the `meta_info["finish_reason"]` clients see:
    {"type": "length", "length": n}, {"type": "stop", "matched": token id or stop string},
    {"type": "abort", "message": ..., "status_code": ...} (status_code only when known)."""

    type: Literal["stop", "length", "abort"]
    matched: int | str | None = None
    length: int | None = None
    message: str | None = None
    status_code: int | None = None

    @classmethod
    def stop(cls, matched: int | str | None) -> FinishReason:
        return cls(type="stop", matched=matched)

    @classmethod
    def at_length(cls, n: int) -> FinishReason:
        return cls(type="length", length=n)

    @classmethod
    def abort(cls, message: str, status_code: int | None = None) -> FinishReason:
        return cls(type="abort", message=message, status_code=status_code)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        # A stop always reports what matched (None: the EOS of a model without a known id).
        if self.type == "stop":
            out["matched"] = self.matched
        elif self.type == "length":
            out["length"] = self.length
        else:
            out["message"] = self.message
            if self.status_code is not None:
                out["status_code"] = self.status_code
        return out


# ---- into the scheduler ------------------------------------------------------------------
class MultimodalItem(msgspec.Struct, kw_only=True, frozen=True):
    """One image or video of a prompt, preprocessed by an input processor.

    Its placeholder ids fill input_ids[offset : offset + length] and derive from `content_hash`
    (see `multimodal_inputs.placeholder_ids`), so the radix cache tells items apart by content.
    `features` is the raw buffer of a C-contiguous array of `dtype` (a numpy/torch dtype name)
    and `shape`: what the model's encoder takes, sent through msgpack as plain bytes. `meta`
    holds the few numbers an encoder needs beside the array (LLaVA-NeXT's original image size);
    the content hash covers it."""

    modality: Literal["image", "video"]
    content_hash: str  # hex digest of the modality and the preprocessed features
    offset: int
    length: int
    features: bytes
    dtype: str
    shape: list[int]
    meta: dict[str, int | float | str | list[int]] = {}

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
    # An embedding request (the runtime serves an embedding model): prefill only, and the
    # pooled hidden state comes back in TokenOutput.embedding.
    embed: bool = False
    # Whether the receiver reads outputs as they come (every `stream_interval` tokens). False:
    # it reads only the final one, so the scheduler holds the request's tokens back and sends
    # them all when it finishes (one message per request instead of one per step; see
    # OutputProcessor.emit).
    stream: bool = True


class AbortReq(msgspec.Struct, kw_only=True, tag=True):
    rid: str


class FlushCacheReq(msgspec.Struct, kw_only=True, tag=True):
    pass


class StatsReq(msgspec.Struct, kw_only=True, tag=True):
    pass


class CheckIntegrityReq(msgspec.Struct, kw_only=True, tag=True):
    """Ask the scheduler to run its KV accounting check now (between steps)."""


SchedulerInput = TokenizedGenerateReq | AbortReq | FlushCacheReq | StatsReq | CheckIntegrityReq


# ---- out of the scheduler ----------------------------------------------------------------
class TokenOutput(msgspec.Struct, kw_only=True, tag=True):
    """What one scheduler step produced for one request: new tokens, and at the end why it
    finished. Logprob lists are deltas, in step with `new_token_ids`."""

    rid: str
    new_token_ids: list[int]
    finished: bool = False
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    output_token_logprobs: list[TokenLogprob] | None = None
    output_top_logprobs: list[TopLogprobs] | None = None
    # Sent once, with the first output of a request that asked for prompt logprobs.
    input_token_logprobs: list[TokenLogprob] | None = None
    input_top_logprobs: list[TopLogprobs | None] | None = None
    error: str | None = None
    # An embedding request's L2-normalised pooled hidden state, with its finishing output.
    embedding: list[float] | None = None
    # Speculative decoding (None when off), totals so far: verify steps that carried drafts,
    # draft tokens verified, and draft tokens accepted.
    spec_verify_ct: int | None = None
    spec_draft_tokens: int | None = None
    spec_accepted_tokens: int | None = None


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


class IntegrityResult(msgspec.Struct, kw_only=True, tag=True):
    ok: bool
    message: str = ""
    idle: bool = True
    # KV slots held by the tree's locks or by running requests: 0 whenever idle.
    kv_used_tokens: int = 0
    # Failures of the checks the loop ran on its own (each time it fell idle) since start.
    idle_check_failures: int = 0
    last_failure: str = ""
    # Tensor parallelism: how many ranks ran the check (each checks its own KV state, and
    # rank 0 checks that all of them agree).
    tp_ranks_checked: int = 1


# Replies to the control requests, in the order the requests were sent.
ControlReply = FlushCacheResult | SchedulerStats | IntegrityResult
# Everything the scheduler process sends: before a request's first output, the request itself
# (without its prompt ids) as an echo that carries its sampling params to the detokenizer.
SchedulerOutput = TokenizedGenerateReq | TokenOutputBatch | ControlReply


# ---- between tensor-parallel ranks -------------------------------------------------------
class RankBroadcast(msgspec.Struct, array_like=True):
    """Rank 0's word to every rank at the top of each loop iteration: stop now, or handle these
    raw scheduler messages (in this order)."""

    stop: bool
    frames: list[bytes]


# ---- out of the detokenizer --------------------------------------------------------------
class DetokOutput(TokenOutput, kw_only=True, tag=True):
    """A scheduler output with its text: `text` (like `new_token_ids`) is what is new since the
    previous DetokOutput of the request (deltas join into the final text); logprob lists are
    deltas too, except the prompt's, which come once."""

    text: str = ""


class DetokOutputBatch(msgspec.Struct, kw_only=True, tag=True):
    outputs: list[DetokOutput]


# What the tokenizer manager receives: text outputs, plus the scheduler's control replies that
# the detokenizer forwards untouched.
TokenizerManagerInput = DetokOutputBatch | ControlReply
