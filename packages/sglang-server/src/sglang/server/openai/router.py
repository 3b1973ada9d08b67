"""The OpenAI-compatible routes, bound to one tokenizer manager."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from sglang.server.errors import APIError
from sglang.server.http_guard import json_body_openapi
from sglang.server.openai.chat import create_chat_completion
from sglang.server.openai.common import TokenizerManagerLike
from sglang.server.openai.completions import create_completion
from sglang.server.openai.embeddings import EmbeddingRequest, create_embeddings
from sglang.server.openai.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    model_card,
    now,
)
from sglang.server.openai.streaming import json_response


def build_openai_router(tm: TokenizerManagerLike) -> APIRouter:
    """`/v1/models`, `/v1/completions`, `/v1/chat/completions`, `/v1/embeddings`. Errors are raised as APIError;
    the app's exception handler turns them into OpenAI error bodies."""
    router = APIRouter()
    created = now()  # one model, loaded when the server started

    def need_tokenizer() -> None:
        if tm.tokenizer is None:
            raise APIError(
                "the OpenAI API needs a tokenizer, and this server runs without one "
                "(--skip-tokenizer-init): send token ids to /generate instead", 400,
            )

    def card() -> dict:
        return model_card(tm.served_model_name, tm.context_len, created)

    @router.get("/v1/models")
    async def list_models() -> Response:
        return json_response({"object": "list", "data": [card()]})

    @router.get("/v1/models/{model_id:path}")
    async def retrieve_model(model_id: str) -> Response:
        if model_id != tm.served_model_name:
            raise APIError(f"the model {model_id!r} does not exist", 404, param="model",
                           code="model_not_found")
        return json_response(card())

    @router.post("/v1/completions", openapi_extra=json_body_openapi(CompletionRequest, example={
        "model": "default", "prompt": "The capital of France is", "max_tokens": 8,
        "temperature": 0,
    }))
    async def completions(request: Request) -> Response:
        need_tokenizer()
        return await create_completion(tm, request)

    @router.post("/v1/embeddings", openapi_extra=json_body_openapi(EmbeddingRequest, example={
        "model": "default", "input": "The capital of France is"}))
    async def embeddings(request: Request) -> Response:
        return await create_embeddings(tm, request)

    @router.post("/v1/chat/completions", openapi_extra=json_body_openapi(
        ChatCompletionRequest, example={
            "model": "default", "max_tokens": 8, "temperature": 0,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
        }))
    async def chat_completions(request: Request) -> Response:
        need_tokenizer()
        return await create_chat_completion(tm, request)

    return router
