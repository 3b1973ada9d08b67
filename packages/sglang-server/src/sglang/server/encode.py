"""Embedding requests through the tokenizer manager (for `/v1/embeddings` and `/encode`).

Each prompt goes through the same front door as a generation, with `max_new_tokens=0`: the
scheduler prefills it, pools the hidden states (sglang.runtime.pooling), frees its KV slots
(the radix cache may keep the prefix) and sends the vector back with its one output.
"""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

import msgspec

from sglang.protocol.generate import GenerateReqInput
from sglang.runtime.result import ResultAccumulator
from sglang.server.errors import APIError

Prompt = str | list[int]
PREFILL_ONLY = {"max_new_tokens": 0}


def require_embedding_model(tm: Any, needs_tokenizer: bool = True) -> None:
    if tm.runtime_info.get("pooling") is None:
        raise APIError("this server serves a generative model; start it with --is-embedding "
                       "to serve embeddings", 400, param="model")
    if needs_tokenizer and tm.tokenizer is None:
        raise APIError("this server runs without a tokenizer (--skip-tokenizer-init): send "
                       "token ids, not text", 400, param="input")


async def encode_prompts(tm: Any, prompts: list[Prompt], request: Any,
                         rid: str | None = None) -> list[ResultAccumulator]:
    """Embed every prompt (validated together first: a bad one refuses the whole batch);
    accumulators in prompt order, each with `.embedding` and `.prompt_tokens`."""
    from sglang.server.openai.streaming import gather_or_cancel

    objs = [GenerateReqInput(
        text=p if isinstance(p, str) else None, input_ids=p if isinstance(p, list) else None,
        sampling_params=PREFILL_ONLY, rid=None if rid is None else
        (rid if len(prompts) == 1 else f"{rid}-{i}"),
    ) for i, p in enumerate(prompts)]
    msgs = [await tm.prepare_one(obj) for obj in objs]

    async def run(obj: GenerateReqInput, msg: Any) -> ResultAccumulator:
        acc: ResultAccumulator | None = None
        async with aclosing(tm.stream(obj, request, msgspec.structs.replace(msg, embed=True))
                            ) as steps:
            async for step in steps:
                acc = step.acc
        if acc is None or acc.embedding is None:  # aborted (/abort_request, shutdown)
            reason = acc.finish_reason if acc is not None else None
            message = reason.message if reason is not None else None
            raise APIError(message or "the embedding request was aborted",
                           (reason.status_code if reason is not None else None) or 503,
                           "server_error")
        return acc

    return await gather_or_cancel([run(o, m) for o, m in zip(objs, msgs)])
