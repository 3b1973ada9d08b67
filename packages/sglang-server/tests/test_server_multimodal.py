"""Media through the server: a live server on a toy vision-language model (the runtime tests'
mm_toy: a tiny random Llama with a seeded linear "encoder") that it finds only through entry
points, so both its processes find their half (the HTTP process the input processor, the spawned
scheduler the model). Image references in every accepted form, prefix caching over the image,
batches, unreadable media as OpenAI-style 400s, and the KV integrity check after each test.
In-process: a text-only model refuses media, and preparation runs off the event loop."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import mm_toy
import pytest
from live_server import LiveServer, launch
from mm_toy import IMAGE_TOKENS, png_bytes
from toy_vl_dist import RUNTIME_TESTS, write_toy_dist

from sglang.protocol.generate import GenerateReqInput

PROMPT = "t1 t2 t3 <image> t4 t5"
TEXT_BEFORE = 3
GREEDY = {"temperature": 0, "max_new_tokens": 4, "ignore_eos": True}


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    pytest.importorskip("PIL")
    return mm_toy.save_toy_model(tmp_path_factory.mktemp("toy_vl"))


@pytest.fixture(scope="module")
def server(toy_model: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    site = tmp_path_factory.mktemp("mm_site")
    write_toy_dist(site)
    srv = launch("--model-path", toy_model, "--device", "cpu", "--max-total-tokens", "2048",
                 "--debug-check-integrity", pythonpath=[site, RUNTIME_TESTS])
    try:
        yield srv
    finally:
        srv.stop()


def post(server: LiveServer, body: dict[str, Any]) -> Any:
    with server.client() as c:
        return c.post("/generate", json={"sampling_params": GREEDY, **body})


def gen(server: LiveServer, image: Any, prompt: str | list[str] = PROMPT) -> Any:
    r = post(server, {"text": prompt, "image_data": image, "return_logprob": True})
    assert r.status_code == 200, r.text
    return r.json()


def logprobs(out: dict[str, Any]) -> list[float]:
    return [lp for lp, *_ in out["meta_info"]["output_token_logprobs"]]


def test_path_base64_and_data_uri_give_the_same_result(fresh: LiveServer, tmp_path: Path) -> None:
    data = png_bytes(4)
    path = tmp_path / "cat.png"
    path.write_bytes(data)
    b64 = base64.b64encode(data).decode()
    first, *rest = [gen(fresh, ref) for ref in (str(path), b64, f"data:image/png;base64,{b64}")]
    meta = first["meta_info"]
    assert meta["prompt_tokens"] == TEXT_BEFORE + IMAGE_TOKENS + 2  # the image was spliced in
    assert meta["cached_tokens"] == 0
    assert len(first["output_ids"]) == GREEDY["max_new_tokens"]
    for out in rest:
        assert out["output_ids"] == first["output_ids"]
        assert logprobs(out) == pytest.approx(logprobs(first), abs=1e-4)
        # Same content, same placeholder ids: the image's span comes from the prefix cache.
        assert out["meta_info"]["cached_tokens"] >= TEXT_BEFORE + IMAGE_TOKENS


def test_a_different_image_shares_only_the_text_before_it(fresh: LiveServer) -> None:
    a = gen(fresh, base64.b64encode(png_bytes(0)).decode())
    b = gen(fresh, base64.b64encode(png_bytes(1)).decode())
    assert b["meta_info"]["cached_tokens"] == TEXT_BEFORE
    assert logprobs(a) != pytest.approx(logprobs(b), abs=1e-4)  # the image reaches the model


def test_batch_takes_one_entry_per_prompt(fresh: LiveServer) -> None:
    image = base64.b64encode(png_bytes(5)).decode()
    single = gen(fresh, image)
    text_only = post(fresh, {"text": "t7 t8"}).json()
    outs = gen(fresh, [image, None, [image]], prompt=[PROMPT, "t7 t8", PROMPT])
    assert [o["output_ids"] for o in outs] == [
        single["output_ids"], text_only["output_ids"], single["output_ids"]
    ]
    r = post(fresh, {"text": [PROMPT, PROMPT, PROMPT], "image_data": [image, image]})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "image_data"


def assert_refused(r: Any, param: str, fragment: str) -> None:
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param, err
    assert fragment in err["message"], err


@pytest.mark.parametrize(
    ("ref", "fragment"),
    [
        ("/no/such/image.png", "does not exist"),
        ("bm90!!IGFu#IGltYWdl", "not valid base64"),
        ("data:image/png;base64,@@@", "not valid base64"),
        (base64.b64encode(b"not an image").decode(), "cannot decode image"),
    ],
    ids=["missing-file", "garbage-base64", "garbage-data-uri", "not-an-image"],
)
def test_unreadable_image_is_a_400_and_the_server_keeps_serving(
    fresh: LiveServer, ref: str, fragment: str
) -> None:
    assert_refused(post(fresh, {"text": PROMPT, "image_data": ref}), "image_data", fragment)
    # A bad entry refuses the whole batch, before anything runs.
    good = base64.b64encode(png_bytes(0)).decode()
    r = post(fresh, {"text": [PROMPT, PROMPT], "image_data": [good, ref]})
    assert_refused(r, "image_data", fragment)
    assert len(gen(fresh, good)["output_ids"]) == GREEDY["max_new_tokens"]
    with fresh.client() as c:
        assert c.get("/health").status_code == 200


def test_video_data_reaches_the_input_processor(fresh: LiveServer) -> None:
    r = post(fresh, {"text": "t1 <image> t2", "video_data": "clip.mp4"})
    assert_refused(r, "video_data", "takes no videos")


# ---- in-process: the tokenizer manager's processor source and its preparation thread --------


def make_tm(model_path: str) -> Any:
    from sglang.runtime.config import RuntimeArgs
    from sglang.runtime.loading import load_tokenizer
    from sglang.server.args import ServerArgs
    from sglang.server.ipc import make_ipc_addrs
    from sglang.server.tokenizer_manager import TokenizerManager

    args = ServerArgs(runtime=RuntimeArgs(model_path=model_path, device="cpu"))
    return TokenizerManager(args, load_tokenizer(model_path), make_ipc_addrs(),
                            {"context_len": 512, "vocab_size": mm_toy.VOCAB}, model_path,
                            model_path)


@pytest.fixture(scope="module")
def text_only_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    import transformers
    from tiny_models import save_tiny_model

    config = transformers.LlamaConfig(
        vocab_size=mm_toy.VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
    )
    return save_tiny_model(config, tmp_path_factory.mktemp("text_only"))


def test_a_text_only_model_refuses_media_clearly(text_only_model: str) -> None:
    from sglang.server.errors import APIError

    tm = make_tm(text_only_model)
    try:
        obj = GenerateReqInput(text=PROMPT, image_data=base64.b64encode(png_bytes(0)).decode())
        with pytest.raises(APIError) as info:
            asyncio.run(tm.prepare(obj))
        err = info.value
        assert (err.status, err.param) == (400, "image_data")
        assert "LlamaForCausalLM" in err.message and "does not take images" in err.message
        # Text-only requests are unaffected.
        plain = asyncio.run(tm.prepare(GenerateReqInput(text="t1 t2")))
        assert plain.reqs[0].msg.input_ids == [1, 2]
    finally:
        asyncio.run(tm.stop())


class BlockingProcessor:
    """Holds preparation inside the input processor until released."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self.thread: str | None = None

    def process(self, prompt: str | list[int], images: Sequence[Any], videos: Sequence[Any],
                tokenizer: Any) -> tuple[list[int], list[Any]]:
        self.thread = threading.current_thread().name
        self.entered.set()
        assert self.release.wait(30)
        return [1, 2, 3], []


def test_preparation_runs_off_the_event_loop(text_only_model: str) -> None:
    tm = make_tm(text_only_model)
    proc = BlockingProcessor()
    tm.input_processor = lambda: proc  # type: ignore[method-assign]

    async def main() -> Any:
        task = asyncio.create_task(tm.prepare(GenerateReqInput(text=PROMPT, image_data="x")))
        # This loop keeps running while the processor blocks: nothing else would set entered.
        assert await asyncio.to_thread(proc.entered.wait, 30)
        await asyncio.sleep(0.05)
        assert not task.done()
        proc.release.set()
        return await task

    try:
        prepared = asyncio.run(main())
    finally:
        proc.release.set()
        asyncio.run(tm.stop())
    assert prepared.reqs[0].msg.input_ids == [1, 2, 3]
    assert proc.thread is not None and proc.thread.startswith("sglang-prepare")
