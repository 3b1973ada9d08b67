"""The runtime's multimodal request path on a toy vision-language model (a tiny random Llama with
a seeded linear "encoder"), through the offline Engine: placeholder ids from content hashes in
the radix cache, encoder embeddings scattered over placeholder positions, chunked prefill, the
encoder cache, and media references in every accepted form."""

from __future__ import annotations

import base64
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import mm_toy  # noqa: E402
from mm_toy import IMAGE_TOKENS, ToyVLForCausalLM, png_bytes  # noqa: E402

PROMPT = "t1 t2 t3 <image> t4 t5"
TEXT_BEFORE = 3
GREEDY = {"temperature": 0, "max_new_tokens": 6, "ignore_eos": True}
ATOL = 1e-4


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("PIL")
    mm_toy.register()
    yield mm_toy.save_toy_model(tmp_path_factory.mktemp("toy_vl"))
    mm_toy.unregister()


def _engine(model_dir: str, **kwargs: Any) -> Any:
    import sglang as sgl

    return sgl.Engine(
        model_path=model_dir, device="cpu", max_total_tokens=4096, debug_check_integrity=True,
        **kwargs,
    )


@pytest.fixture(scope="module")
def engine(model_dir: str) -> Iterator[Any]:
    eng = _engine(model_dir)
    yield eng
    eng.shutdown()


@pytest.fixture
def fresh(engine: Any) -> Any:
    assert engine.flush_cache()
    ToyVLForCausalLM.encoded.clear()
    engine.runtime.scheduler.runner.encoder_cache.clear()
    yield engine
    engine.check_integrity()


def _gen(engine: Any, image: Any, prompt: str = PROMPT, **kwargs: Any) -> dict:
    return engine.generate(prompt, dict(GREEDY), image_data=image, return_logprob=True, **kwargs)


def _logprobs(out: dict) -> list[float]:
    return [lp for lp, *_ in out["meta_info"]["output_token_logprobs"]]


def test_same_image_reuses_cached_kv(fresh: Any) -> None:
    image = png_bytes(0)
    first, second = _gen(fresh, image), _gen(fresh, image)
    assert first["meta_info"]["cached_tokens"] == 0
    # Everything but the last prompt token comes from the cache: the image's span included.
    assert second["meta_info"]["cached_tokens"] >= TEXT_BEFORE + IMAGE_TOKENS
    assert second["output_ids"] == first["output_ids"]
    assert _logprobs(second) == pytest.approx(_logprobs(first), abs=ATOL)


def test_different_image_shares_only_the_text_before_it(fresh: Any) -> None:
    a = _gen(fresh, png_bytes(0))
    b = _gen(fresh, png_bytes(1))
    assert b["meta_info"]["cached_tokens"] == TEXT_BEFORE
    # The image reaches the model: another image changes the logits.
    assert _logprobs(a) != pytest.approx(_logprobs(b), abs=ATOL)
    fresh.check_integrity()


def test_placeholder_ids_lie_past_the_vocabulary_and_are_never_sampled(fresh: Any) -> None:
    out = _gen(fresh, png_bytes(2))
    assert all(0 <= t < mm_toy.VOCAB for t in out["output_ids"])
    assert out["meta_info"]["prompt_tokens"] == TEXT_BEFORE + IMAGE_TOKENS + 2


def test_chunk_boundary_through_the_image_matches_unchunked(model_dir: str, engine: Any) -> None:
    image = png_bytes(3)
    engine.flush_cache()
    whole = _gen(engine, image)
    chunked_engine = _engine(model_dir, chunked_prefill_size=8)
    try:
        ToyVLForCausalLM.encoded.clear()
        # Chunks [0, 8), [8, 16), [16, 21): the image's span [3, 19) is cut twice.
        cut = _gen(chunked_engine, image)
        assert len(ToyVLForCausalLM.encoded) == 1  # encoded once, then from the encoder cache
        cache = chunked_engine.runtime.scheduler.runner.encoder_cache
        assert (cache.misses, cache.hits) == (1, 2)
        chunked_engine.check_integrity()
    finally:
        chunked_engine.shutdown()
    assert cut["output_ids"] == whole["output_ids"]
    assert _logprobs(cut) == pytest.approx(_logprobs(whole), abs=ATOL)


def test_path_base64_and_data_uri_give_the_same_result(fresh: Any, tmp_path: Path) -> None:
    data = png_bytes(4)
    path = tmp_path / "cat.png"
    path.write_bytes(data)
    b64 = base64.b64encode(data).decode()
    outs = [_gen(fresh, ref) for ref in (str(path), b64, f"data:image/png;base64,{b64}", data)]
    for out in outs[1:]:
        assert out["output_ids"] == outs[0]["output_ids"]
        assert _logprobs(out) == pytest.approx(_logprobs(outs[0]), abs=ATOL)
        assert out["meta_info"]["cached_tokens"] >= TEXT_BEFORE + IMAGE_TOKENS
    assert len(ToyVLForCausalLM.encoded) == 1  # one content hash, whatever the reference


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("/no/such/image.png", "does not exist"),
        ("bm90IGFuIGltYWdl", "cannot decode image"),  # valid base64 of b"not an image"
        ("data:image/png;base64,@@@", "not valid base64"),
        ("https://cat.invalid/cat.png", "does not resolve"),
        ("ftp://example.com/cat.png", "unsupported URL scheme"),
    ],
)
def test_unreadable_image_is_a_clear_error(fresh: Any, ref: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _gen(fresh, ref)


def test_batch_takes_one_media_entry_per_prompt(fresh: Any) -> None:
    image = png_bytes(5)
    single = _gen(fresh, image)
    outs = fresh.generate(
        [PROMPT, "t7 t8", PROMPT], dict(GREEDY), image_data=[image, None, [image]],
        return_logprob=True,
    )
    assert outs[0]["output_ids"] == outs[2]["output_ids"] == single["output_ids"]
    text_only = fresh.generate("t7 t8", dict(GREEDY))
    assert outs[1]["output_ids"] == text_only["output_ids"]
    with pytest.raises(ValueError, match="2 entries for 3 prompts"):
        fresh.generate([PROMPT, PROMPT, PROMPT], dict(GREEDY), image_data=[image, image])


def test_input_ids_with_a_marker_and_n_copies(fresh: Any) -> None:
    image = png_bytes(6)
    ids = [1, 2, 3, mm_toy.MARKER, 4, 5]
    by_text = _gen(fresh, image)
    outs = fresh.generate(input_ids=ids, sampling_params={**GREEDY, "n": 2}, image_data=image)
    assert [o["output_ids"] for o in outs] == [by_text["output_ids"]] * 2


def test_more_markers_than_images_is_an_error(fresh: Any) -> None:
    with pytest.raises(ValueError, match="2 image markers .* but 1"):
        _gen(fresh, png_bytes(0), prompt="t1 <image> t2 <image>")


def test_prompt_logprobs_over_an_image(fresh: Any) -> None:
    out = fresh.generate(PROMPT, dict(GREEDY), image_data=png_bytes(7), return_logprob=True,
                         logprob_start_len=0)
    lps = out["meta_info"]["input_token_logprobs"]
    assert len(lps) == TEXT_BEFORE + IMAGE_TOKENS + 2
    span = lps[TEXT_BEFORE : TEXT_BEFORE + IMAGE_TOKENS]
    assert all(lp is None for lp, *_ in span)  # placeholders have no logprob
    assert all(lp is not None for lp, *_ in lps[TEXT_BEFORE + IMAGE_TOKENS :])


def test_cache_hit_ending_inside_the_image(fresh: Any) -> None:
    # The image ends the prompt: a repeat recomputes only its last placeholder, whose row must
    # come from the encoder (cache dropped here, so it encodes again).
    image = png_bytes(8)
    first = _gen(fresh, image, prompt="t1 t2 <image>")
    fresh.runtime.scheduler.runner.encoder_cache.clear()
    second = _gen(fresh, image, prompt="t1 t2 <image>")
    assert second["meta_info"]["cached_tokens"] == 2 + IMAGE_TOKENS - 1
    assert len(ToyVLForCausalLM.encoded) == 2
    assert second["output_ids"] == first["output_ids"]
    assert _logprobs(second) == pytest.approx(_logprobs(first), abs=ATOL)


def test_video_data_reaches_the_input_processor(fresh: Any) -> None:
    with pytest.raises(ValueError, match="takes no videos"):
        fresh.generate(PROMPT, dict(GREEDY), image_data=png_bytes(0), video_data="clip.mp4")
