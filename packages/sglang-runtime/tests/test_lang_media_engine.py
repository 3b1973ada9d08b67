"""sgl.image in @sgl.function programs on an offline Engine (EngineBackend, picked when the
Engine itself is passed as the backend): paths and bytes, fork sharing the prefix's image,
run_batch of 16 image questions, select after an image, and a video reaching the processor."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import mm_lang_programs as progs  # noqa: E402
import mm_toy  # noqa: E402


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pytest.importorskip("PIL")
    import sglang as sgl

    mm_toy.register()
    eng = sgl.Engine(model_path=mm_toy.save_toy_model(tmp_path_factory.mktemp("toy_vl")),
                     device="cpu", max_total_tokens=4096, debug_check_integrity=True)
    yield eng
    eng.shutdown()
    mm_toy.unregister()


@pytest.fixture
def reference(engine: Any) -> progs.Reference:
    def answer(text: str, images: list[str]) -> str:
        return engine.generate(text, dict(progs.SAMPLING), image_data=images)["text"]

    return answer


def test_image_forms(engine: Any, reference: progs.Reference, tmp_path: Path) -> None:
    progs.check_image_forms(engine, reference, tmp_path)
    engine.check_integrity()


def test_fork_shares_the_image(engine: Any, reference: progs.Reference) -> None:
    engine.flush_cache()
    engine.runtime.scheduler.runner.encoder_cache.clear()
    mm_toy.ToyVLForCausalLM.encoded.clear()
    progs.check_fork_shares_the_image(engine, reference)
    # cache_prefix sent the image with the prefix; the forks and the reference calls reused it.
    assert len(mm_toy.ToyVLForCausalLM.encoded) == 1
    engine.check_integrity()


def test_run_batch_of_16_image_questions(engine: Any, reference: progs.Reference) -> None:
    progs.check_run_batch(engine, reference)
    engine.check_integrity()


def test_select_after_an_image(engine: Any) -> None:
    progs.check_select(engine)


def test_video_reaches_the_processor(engine: Any, tmp_path: Path) -> None:
    progs.check_video_reaches_the_processor(engine, tmp_path)


def test_engine_is_wrapped_as_a_backend(engine: Any) -> None:
    from sglang.lang.backend.engine import EngineBackend
    from sglang.lang.program import resolve_backend

    backend = resolve_backend(engine)
    assert isinstance(backend, EngineBackend) and backend.engine is engine
    assert backend.supports_images and backend.supports_videos
