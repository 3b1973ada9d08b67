"""A text-only model behind the OpenAI chat route (in-process, no scheduler: the refusal comes
before anything is queued): an image_url or video_url part is a 400 that names the part and
says the model takes no images; text-only chats are unaffected up to preparation."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

RUNTIME_TESTS = Path(__file__).resolve().parents[2] / "sglang-runtime" / "tests"
sys.path.insert(0, str(RUNTIME_TESTS))
from tiny_models import save_tiny_model  # noqa: E402

IMAGE = "data:image/png;base64,iVBORw0KGgo="


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import transformers
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from sglang.runtime.config import RuntimeArgs
    from sglang.runtime.loading import load_tokenizer
    from sglang.server.args import ServerArgs
    from sglang.server.chat_templates import get_chat_template
    from sglang.server.http_guard import install_exception_handlers
    from sglang.server.ipc import make_ipc_addrs
    from sglang.server.openai import build_openai_router
    from sglang.server.tokenizer_manager import TokenizerManager

    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
    )
    model = save_tiny_model(config, tmp_path_factory.mktemp("text_only"))
    args = ServerArgs(runtime=RuntimeArgs(model_path=model, device="cpu"))
    tm = TokenizerManager(args, load_tokenizer(model), make_ipc_addrs(),
                          {"context_len": 512, "vocab_size": 64}, model, model)
    tm.chat_template = get_chat_template("vicuna_v1.1")
    app = FastAPI()
    install_exception_handlers(app)
    app.include_router(build_openai_router(tm))
    try:
        with TestClient(app) as c:
            yield c
    finally:
        asyncio.run(tm.stop())


@pytest.mark.parametrize("part", [
    {"type": "image_url", "image_url": {"url": IMAGE}},
    {"type": "video_url", "video_url": {"url": "clip.mp4", "num_frames": 2}},
])
def test_media_parts_are_refused_by_a_text_only_model(client: Any, part: dict) -> None:
    body = {"model": "m", "max_tokens": 2,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "t1"}, part]}]}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == "messages[0].content[1]", err
    assert "LlamaForCausalLM" in err["message"] and "does not take images" in err["message"]
