"""Turns the scheduler's chosen requests into a ForwardBatch of flat device tensors."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sglang.runtime.cache.kv_pool import KVPool
from sglang.runtime.executor.forward_context import ForwardBatch, ForwardMode, MultimodalSlice
from sglang.runtime.multimodal.items import overlapping
from sglang.runtime.scheduler.request import Req
from sglang.runtime.transfer import host_int64, to_device


@dataclass
class LogitRows:
    """Which rows of the returned logits belong to a request: [start, start + count)."""

    start: int
    count: int


def _tensors(device: torch.device, *columns: list[int]) -> list[torch.Tensor]:
    """int64 tensors of `columns` on `device`: one host tensor, copied once without waiting
    for the GPU, and sliced (every copy costs the host a pinned staging buffer and a launch)."""
    host = host_int64(*columns)
    return list(to_device(host, device).split_with_sizes([len(c) for c in columns]))


def build_extend(
    reqs: list[Req],
    slots: list[torch.Tensor],
    req_to_token: torch.Tensor,
    kv_pool: KVPool,
    needs_logits: list[bool],
) -> tuple[ForwardBatch, list[LogitRows]]:
    """An EXTEND batch: each request computes `extend_len` tokens after its `kv_len` prefix.

    Requests that want prompt logprobs get logits for every new token; others get the last
    token's only when `needs_logits` says their prompt finishes in this chunk.
    """
    device = req_to_token.device
    input_ids: list[int] = []
    positions: list[int] = []
    logits_indices: list[int] = []
    rows: list[LogitRows] = []
    mm_inputs: list[MultimodalSlice] = []
    for req, want in zip(reqs, needs_logits):
        start, n = req.kv_len, req.extend_len
        offset = len(input_ids)
        input_ids.extend(req.fill_ids[start : start + n])
        if req.mm_items:
            # Items cut by a chunk boundary (or by a cached prefix) contribute only their rows
            # inside [start, start + n); the encoder cache spares the second encode.
            for item, first, last in overlapping(req.mm_items, start, start + n):
                dst = offset + item.offset + first - start
                mm_inputs.append(MultimodalSlice(item, dst, first, last - first))
        positions.extend(range(start, start + n))
        first = len(logits_indices)
        # Embedding requests pool over the hidden states of every token they compute.
        if (req.wants_input_logprobs and not req.output_ids) or req.pool is not None:
            logits_indices.extend(range(offset, offset + n))
        elif want:
            logits_indices.append(offset + n - 1)
        rows.append(LogitRows(first, len(logits_indices) - first))
    batch = _extend_batch(reqs, [r.extend_len for r in reqs], input_ids, positions,
                          torch.cat(slots).to(device, non_blocking=True), req_to_token,
                          kv_pool, logits_indices, mm_inputs)
    return batch, rows


def build_decode(
    reqs: list[Req],
    slots: torch.Tensor,
    req_to_token: torch.Tensor,
    kv_pool: KVPool,
    input_ids: torch.Tensor | None = None,
) -> ForwardBatch:
    """A DECODE batch: one new token per request, the last sampled one (whose KV is not yet
    computed, so kv_len == len(fill_ids) - 1), into `slots` (on the table's device, or the
    host's to copy). `input_ids` overrides the tokens with a device tensor when they are still
    in flight (overlapped decode)."""
    ids = input_ids if input_ids is not None else [r.output_ids[-1] for r in reqs]
    return _decode_batch([r.row for r in reqs], ids, [r.kv_len for r in reqs],  # type: ignore[misc]
                         to_device(slots, req_to_token.device), req_to_token, kv_pool)


def build_verify(
    reqs: list[Req],
    drafts: list[list[int]],
    slots: torch.Tensor,
    req_to_token: torch.Tensor,
    kv_pool: KVPool,
    as_decode: bool = False,
) -> ForwardBatch:
    """A speculative verify step: each request computes its last sampled token and its drafts
    [last, d1..dk] on top of its cached kv_len tokens, and gets logits for all k + 1 positions
    (k = 0 is an ordinary decode). `slots` holds the new tokens' KV slots, request after
    request, already written to req_to_token (on its device, or the host's to copy).

    As an EXTEND batch by default. `as_decode` lays the same work out as a DECODE batch of one
    row per token instead: row i of a request reads its table row up to kv_len + i + 1, which
    holds the drafts before it (every layer stores the batch's K/V before attending), so the
    causal mask comes for free and the step replays the decode CUDA graphs."""
    device = req_to_token.device
    input_ids: list[int] = []
    positions: list[int] = []
    for req, draft in zip(reqs, drafts):
        input_ids.append(req.output_ids[-1])
        input_ids.extend(draft)
        positions.extend(range(req.kv_len, req.kv_len + len(draft) + 1))
    out_cache_loc = to_device(slots, device)
    if not as_decode:
        return _extend_batch(reqs, [len(d) + 1 for d in drafts], input_ids, positions,
                             out_cache_loc, req_to_token, kv_pool, list(range(len(input_ids))))
    rows = [r.row for r, d in zip(reqs, drafts) for _ in range(len(d) + 1)]
    return _decode_batch(rows, input_ids, positions, out_cache_loc,  # type: ignore[arg-type]
                         req_to_token, kv_pool)


def _decode_batch(
    rows: list[int], input_ids: torch.Tensor | list[int], positions: list[int],
    out_cache_loc: torch.Tensor, req_to_token: torch.Tensor, kv_pool: KVPool,
) -> ForwardBatch:
    """A DECODE ForwardBatch: one token per row, at `positions`, attending over its table row
    `rows[i]` up to and including itself. `input_ids`: a device tensor (tokens in flight) or
    host ids, copied with the rest."""
    seq = [p + 1 for p in positions]
    ext = [1] * len(rows)
    on_host = [] if isinstance(input_ids, torch.Tensor) else input_ids
    ids, pos, rows_t, seq_t, ext_t = _tensors(
        req_to_token.device, on_host, positions, rows, seq, ext
    )
    return ForwardBatch(
        mode=ForwardMode.DECODE,
        input_ids=input_ids if isinstance(input_ids, torch.Tensor) else ids,
        positions=pos,
        out_cache_loc=out_cache_loc,
        req_pool_indices=rows_t,
        seq_lens=seq_t,
        prefix_lens=pos,  # a decode row's cached tokens are those before its position
        extend_lens=ext_t,
        req_to_token=req_to_token,
        kv_pool=kv_pool,
        seq_lens_cpu=seq,
        prefix_lens_cpu=positions,
        extend_lens_cpu=ext,
    )


def _extend_batch(
    reqs: list[Req], ext: list[int], input_ids: list[int], positions: list[int],
    out_cache_loc: torch.Tensor, req_to_token: torch.Tensor, kv_pool: KVPool,
    logits_indices: list[int], mm_inputs: list[MultimodalSlice] | None = None,
) -> ForwardBatch:
    """An EXTEND ForwardBatch: request i computes ext[i] tokens after its kv_len prefix."""
    prefix = [r.kv_len for r in reqs]
    seq = [p + e for p, e in zip(prefix, ext)]
    ids, pos, rows, seq_t, prefix_t, ext_t, logits_t = _tensors(
        req_to_token.device, input_ids, positions, [r.row for r in reqs],  # type: ignore[misc]
        seq, prefix, ext, logits_indices,
    )
    return ForwardBatch(
        mode=ForwardMode.EXTEND,
        input_ids=ids,
        positions=pos,
        out_cache_loc=out_cache_loc,
        req_pool_indices=rows,
        seq_lens=seq_t,
        prefix_lens=prefix_t,
        extend_lens=ext_t,
        req_to_token=req_to_token,
        kv_pool=kv_pool,
        seq_lens_cpu=seq,
        prefix_lens_cpu=prefix,
        extend_lens_cpu=ext,
        logits_indices=logits_t,
        mm_inputs=mm_inputs or [],
    )
