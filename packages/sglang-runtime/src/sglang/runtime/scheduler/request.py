"""A request as the scheduler sees it: token ids, sampling params, and its KV bookkeeping."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import torch

from sglang.protocol.sampling_params import SamplingParams
from sglang.runtime.messages import FinishReason, MultimodalItem, TokenizedGenerateReq
from sglang.runtime.pooling import PoolState, needs_every_token
from sglang.runtime.speculative.base import SpecCounters


class ReqState(enum.Enum):
    WAITING = enum.auto()  # queued (new or retracted); holds no KV
    PREFILLING = enum.auto()  # admitted, prompt partly computed (chunked prefill)
    DECODING = enum.auto()
    FINISHED = enum.auto()


@dataclass
class LogprobRecord:
    """Logprobs collected for a request; each entry is (logprob, token_id)."""

    input_token: list[tuple[float | None, int]] = field(default_factory=list)
    input_top: list[list[tuple[float, int]] | None] = field(default_factory=list)
    output_token: list[tuple[float, int]] = field(default_factory=list)
    output_top: list[list[tuple[float, int]]] = field(default_factory=list)


@dataclass(eq=False)
class Req:
    rid: str
    prompt_ids: list[int]
    params: SamplingParams
    return_logprob: bool = False
    logprob_start_len: int = -1
    top_logprobs_num: int = 0
    output_ids: list[int] = field(default_factory=list)
    state: ReqState = ReqState.WAITING
    finish_reason: FinishReason | None = None
    generator: torch.Generator | None = None
    # KV bookkeeping. req_to_token[row, :kv_len] hold this request's slots; the first tree_len of
    # them belong to the radix tree (locked through `handle`), the rest are owned by the request.
    row: int | None = None
    handle: Any = None
    tree_len: int = 0
    kv_len: int = 0
    # Prompt tokens found in the cache at first admission (reported as cached_tokens).
    cached_tokens: int | None = None
    # Set during admission: how many tokens the current extend computes.
    extend_len: int = 0
    logprobs: LogprobRecord = field(default_factory=LogprobRecord)
    arrival: int = 0
    # Steps in which later requests were admitted ahead of this one (bounded skip-ahead).
    passed_over: int = 0
    # Output logprob entries already sent out (streams carry deltas).
    sent_output_logprobs: int = 0
    sent_input_logprobs: bool = False
    # Constrained decoding: this request's grammar matcher (a `grammar.base.Matcher`), set once
    # its grammar has compiled; None for free generation.
    grammar: Any = None
    # Images/videos whose placeholder spans lie in prompt_ids (None: text only).
    mm_items: list[MultimodalItem] | None = None
    # Embedding requests (`embed`): prefill only; `pool` gathers the hidden states (set by the
    # scheduler, which knows the model's pooling) and `embedding` is the normalised result.
    embed: bool = False
    pool: PoolState | None = None
    embedding: list[float] | None = None
    # Speculative decoding: the proposer's per-request state (its n-gram index) and the
    # counters meta_info reports; None when the runtime does not speculate.
    draft_state: Any = None
    spec: SpecCounters | None = None
    # False: outputs are held back until the request finishes (TokenizedGenerateReq.stream);
    # `held_ids` are the tokens generated since the last output sent.
    stream: bool = True
    held_ids: list[int] = field(default_factory=list)

    @property
    def fill_ids(self) -> list[int]:
        """Tokens whose KV a (re-)prefill must hold: the prompt plus any output so far."""
        return self.prompt_ids + self.output_ids

    @property
    def fill_len(self) -> int:
        """len(fill_ids) without building the list."""
        return len(self.prompt_ids) + len(self.output_ids)

    @property
    def owned_slots(self) -> int:
        return self.kv_len - self.tree_len

    @property
    def is_prefill_done(self) -> bool:
        return self.kv_len >= self.fill_len

    @property
    def remaining_new_tokens(self) -> int:
        return max(self.params.max_new_tokens - len(self.output_ids), 0)

    @property
    def wants_input_logprobs(self) -> bool:
        return self.return_logprob and self.logprob_start_len >= 0

    @property
    def max_cacheable_prefix(self) -> int:
        """How much of fill_ids may come from the cache: the last token always needs logits, and
        prompt logprobs need logits from the position before logprob_start_len."""
        if self.pool is not None and needs_every_token(self.pool.pooling):
            return 0
        limit = self.fill_len - 1
        if self.wants_input_logprobs and not self.output_ids:
            limit = min(limit, max(self.logprob_start_len - 1, 0))
        return max(limit, 0)

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


def make_req(msg: TokenizedGenerateReq, device: torch.device) -> Req:
    """A scheduler request from its message; a seeded request gets its own generator so its
    samples do not depend on what else shares the batch."""
    p = msg.sampling_params
    gen = None
    if p.seed is not None:
        gen = torch.Generator(device=device).manual_seed(p.seed)
    return Req(
        rid=msg.rid, prompt_ids=list(msg.input_ids), params=p,
        return_logprob=msg.return_logprob, logprob_start_len=msg.logprob_start_len,
        top_logprobs_num=msg.top_logprobs_num, generator=gen, mm_items=msg.mm_items,
        embed=msg.embed, stream=msg.stream,
    )
