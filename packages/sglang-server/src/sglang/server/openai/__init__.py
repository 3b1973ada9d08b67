"""OpenAI-compatible HTTP API (`/v1/models`, `/v1/completions`, `/v1/chat/completions`) over the
tokenizer manager."""

from sglang.server.openai.router import build_openai_router

__all__ = ["build_openai_router"]
