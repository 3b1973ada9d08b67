"""Native utility routes: /encode (embeddings), /tokenize and /detokenize (also under /v1/),
/abort_request and /get_server_info, in SGLang's request and response shapes."""

from __future__ import annotations

import contextlib
from importlib import metadata
from typing import Any

import msgspec
from fastapi import APIRouter, Request
from starlette.responses import Response

from sglang.server.args import ServerArgs
from sglang.server.encode import Prompt, encode_prompts, require_embedding_model
from sglang.server.errors import APIError, bad_request
from sglang.server.http_guard import json_body_openapi, json_response
from sglang.server.openai.common import decode_request
from sglang.server.utility_protocol import (
    AbortRequestReq,
    DetokenizeReq,
    EncodeReqInput,
    TokenizeReq,
)

SERVER_INFO_STATS_TIMEOUT_S = 5.0


def _version() -> str:
    try:
        return metadata.version("sglang-server")
    except metadata.PackageNotFoundError:
        return "unknown"


def _need_tokenizer(tm: Any) -> None:
    if tm.tokenizer is None:
        raise APIError("this server runs without a tokenizer (--skip-tokenizer-init)", 400)


def _batch_of_ids(tokens: list[Any], field: str) -> tuple[list[list[int]], bool]:
    """(sequences, is_batch) from a list of ids or a list of such lists, not a mix."""
    nested = [isinstance(t, list) for t in tokens]
    if any(nested) and not all(nested):
        raise bad_request(f"{field} must be a list of token ids or a list of such lists, "
                          "not a mix", field)
    seqs = [list(t) for t in tokens] if tokens and all(nested) else [list(tokens)]
    if any(t < 0 for seq in seqs for t in seq):
        raise bad_request(f"{field} must hold non-negative token ids", field)
    return seqs, bool(tokens) and all(nested)


async def _tokenize(tm: Any, req: TokenizeReq) -> tuple[list[list[int]], bool]:
    if (req.prompt is None) == (req.messages is None):
        raise bad_request("give exactly one of prompt or messages", "prompt")
    if req.messages is not None:
        from sglang.server.openai.chat import encode_prompt, media_tokens, render_chat
        from sglang.server.openai.chat_media import collect_chat_inputs
        from sglang.server.openai.protocol import ChatCompletionRequest

        chat = ChatCompletionRequest(messages=req.messages)
        inputs = collect_chat_inputs(chat, await media_tokens(tm, chat))
        prompt, _ = render_chat(tm, inputs)
        if req.add_special_tokens:  # as the chat endpoint encodes it (no second BOS)
            return [await tm.run_prepare(lambda: encode_prompt(tm.tokenizer, prompt))], False
        texts, batch = [prompt], False
    else:
        batch = isinstance(req.prompt, list)
        texts = list(req.prompt) if batch else [req.prompt]  # type: ignore[list-item]

    def encode() -> list[list[int]]:
        return [list(tm.tokenizer.encode(t, add_special_tokens=req.add_special_tokens))
                for t in texts]

    return await tm.run_prepare(encode), batch


def build_utility_router(tm: Any, server_args: ServerArgs) -> APIRouter:
    router = APIRouter()

    @router.post("/tokenize", openapi_extra=json_body_openapi(TokenizeReq, example={
        "prompt": "The capital of France is"}))
    @router.post("/v1/tokenize", include_in_schema=False)
    async def tokenize(request: Request) -> Response:
        _need_tokenizer(tm)
        req = decode_request(await request.body(), TokenizeReq)
        seqs, batch = await _tokenize(tm, req)
        tokens: Any = seqs if batch else seqs[0]
        count: Any = [len(s) for s in seqs] if batch else len(seqs[0])
        return json_response({"tokens": tokens, "count": count, "max_model_len": tm.context_len})

    @router.post("/detokenize", openapi_extra=json_body_openapi(DetokenizeReq, example={
        "tokens": [1, 2, 3]}))
    @router.post("/v1/detokenize", include_in_schema=False)
    async def detokenize(request: Request) -> Response:
        _need_tokenizer(tm)
        req = decode_request(await request.body(), DetokenizeReq)
        seqs, batch = _batch_of_ids(req.tokens, "tokens")
        if any(t >= tm.vocab_size for seq in seqs for t in seq):
            raise bad_request(f"tokens must be in [0, {tm.vocab_size})", "tokens")
        texts = await tm.run_prepare(lambda: [
            tm.tokenizer.decode(seq, skip_special_tokens=req.skip_special_tokens)
            for seq in seqs])
        return json_response({"text": texts if batch else texts[0]})

    @router.post("/abort_request", openapi_extra=json_body_openapi(AbortRequestReq, example={
        "rid": "my-request"}))
    async def abort_request(request: Request) -> Response:
        req = decode_request(await request.body(), AbortRequestReq)
        if not req.rid and not req.abort_all:
            raise bad_request("give the rid of the request to abort, or abort_all", "rid")
        aborted = tm.abort(None if req.abort_all else req.rid)
        return json_response({"success": True, "aborted": aborted})

    @router.post("/encode", openapi_extra=json_body_openapi(EncodeReqInput, example={
        "text": "The capital of France is"}))
    async def encode(request: Request) -> Response:
        req = decode_request(await request.body(), EncodeReqInput)
        if (req.text is None) == (req.input_ids is None):
            raise bad_request("give exactly one of text or input_ids", "text")
        prompts: list[Prompt]
        if req.text is not None:
            batch = isinstance(req.text, list)
            prompts = list(req.text) if batch else [req.text]  # type: ignore[list-item]
        else:
            prompts, batch = _batch_of_ids(req.input_ids or [], "input_ids")  # type: ignore[assignment]
        require_embedding_model(tm, needs_tokenizer=req.text is not None)
        results = await encode_prompts(tm, prompts, request, req.rid)
        out = [acc.embedding_result() for acc in results]
        return json_response(out if batch else out[0])

    @router.get("/get_server_info")
    async def get_server_info() -> Response:
        args = server_args.redacted()
        flat = {**args.pop("runtime"), **args}
        stats = None
        with contextlib.suppress(APIError):
            stats = msgspec.to_builtins(await tm.get_stats(SERVER_INFO_STATS_TIMEOUT_S))
        info = tm.runtime_info
        return json_response({
            **flat,
            "version": _version(),
            "model_info": {
                "model_path": tm.model_path, "served_model_name": tm.served_model_name,
                "is_generation": info.get("pooling") is None, "pooling": info.get("pooling"),
                "context_length": tm.context_len, "vocab_size": tm.vocab_size,
                "hidden_size": info.get("hidden_size"),
                "max_total_tokens": info.get("kv_total_tokens"),
                "max_running_requests": info.get("max_running_requests"),
                "device": info.get("device"),
            },
            "internal_states": [stats] if stats is not None else [],
        })

    return router
