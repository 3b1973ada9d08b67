"""`POST /v1/embeddings`: OpenAI's embeddings over an embedding model (`--is-embedding`).

`input` is a string, a list of strings, a list of token ids or a list of such lists (as a
completion's `prompt`); `encoding_format` is "float" (lists of numbers) or "base64" (the raw
little-endian float32 bytes, base64-encoded, as OpenAI sends them); `dimensions` is accepted
only when it equals the model's size: the model returns one size and cannot shorten its
vectors. `usage.prompt_tokens` counts every input's tokens.
"""

from __future__ import annotations

import base64
import struct
from typing import Annotated, Any

from fastapi import Request
from fastapi.responses import Response

from sglang.server.encode import encode_prompts, require_embedding_model
from sglang.server.errors import bad_request
from sglang.server.openai.common import decode_request, openai_names
from sglang.server.openai.completions import normalize_prompts
from sglang.server.openai.protocol import _PROMPT_SCHEMA, _doc, _IgnoredRequestFields
from sglang.server.openai.streaming import json_response

ENCODING_FORMATS = ("float", "base64")


class EmbeddingRequest(_IgnoredRequestFields, kw_only=True, forbid_unknown_fields=True):
    input: Annotated[Any, _doc(**_PROMPT_SCHEMA)]
    model: str | None = None  # any name is accepted: one model is served
    encoding_format: Annotated[str, _doc(enum=list(ENCODING_FORMATS))] = "float"
    dimensions: Annotated[int, _doc(minimum=1)] | None = None
    rid: str | None = None  # SGLang's request id (/abort_request)


def encode_vector(vector: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def check_embedding_request(req: EmbeddingRequest, hidden_size: int | None) -> None:
    if req.encoding_format not in ENCODING_FORMATS:
        raise bad_request(f"encoding_format must be one of {', '.join(ENCODING_FORMATS)}, got "
                          f"{req.encoding_format!r}", "encoding_format")
    if req.dimensions is not None and req.dimensions != hidden_size:
        raise bad_request(
            f"dimensions={req.dimensions} is not supported: this model returns "
            f"{hidden_size}-dimensional embeddings and cannot shorten them", "dimensions")


async def create_embeddings(tm: Any, request: Request) -> Response:
    req = decode_request(await request.body(), EmbeddingRequest)
    with openai_names("completions", {"prompt": "input", "text": "input",
                                      "input_ids": "input"}):
        prompts = normalize_prompts(req.input)
    require_embedding_model(tm, needs_tokenizer=any(isinstance(p, str) for p in prompts))
    check_embedding_request(req, tm.runtime_info.get("hidden_size"))
    with openai_names("completions", {"text": "input", "input_ids": "input"}):
        results = await encode_prompts(tm, prompts, request, req.rid)
    data = [{"object": "embedding", "index": i,
             "embedding": encode_vector(acc.embedding or [], req.encoding_format)}
            for i, acc in enumerate(results)]
    tokens = sum(acc.prompt_tokens for acc in results)
    return json_response({
        "object": "list", "data": data, "model": tm.served_model_name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })
