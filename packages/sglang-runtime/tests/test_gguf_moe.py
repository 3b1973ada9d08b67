"""MoE GGUF files (Mixtral as llama.cpp writes it under `llama`, experts stacked or one tensor
each; qwen2moe; qwen3moe), written
with the `gguf` package from the tiny HF models, load to the same model and logits."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from batch_helpers import ToyKV, make_runner  # noqa: E402
from gguf_moe_writer import ARCH, write_gguf  # noqa: E402
from moe_cases import VOCAB, moe_configs  # noqa: E402
from tiny_models import save_tiny_model  # noqa: E402

from sglang.runtime.loading.loader import load_model  # noqa: E402

pytest.importorskip("gguf")
CONFIGS = {k: v for k, v in moe_configs().items() if k in ARCH}
# (family, one GGUF tensor per expert as older llama.cpp Mixtral files have)
CASES = [(name, False) for name in sorted(CONFIGS)] + [("mixtral", True)]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: c[0] + ("_per_expert" if c[1] else ""))
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    name, per_expert = request.param
    root = tmp_path_factory.mktemp(name)
    folder = save_tiny_model(CONFIGS[name](), root / "hf")
    gguf_file = write_gguf(folder, root / "tiny.gguf", per_expert)
    return load_model(folder, dtype="float32"), load_model(gguf_file, dtype="float32")


def _logits(loaded: Any) -> list[torch.Tensor]:
    kv = ToyKV(loaded.config)
    runner = make_runner(loaded.model, kv)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, VOCAB, (n,), generator=g).tolist() for n in (9, 3, 14)]
    out = [runner.forward(kv.extend([0, 1, 2], prompts, all_logits=True))]
    for _ in range(3):
        out.append(runner.forward(kv.decode([0, 1, 2], torch.randint(0, VOCAB, (3,), generator=g).tolist())))
    return out


def test_same_class_and_logits(pair: Any) -> None:
    hf, gguf_model = pair
    assert type(gguf_model.model) is type(hf.model)
    for a, b in zip(_logits(hf), _logits(gguf_model), strict=True):
        assert a.abs().max() > 0.1
        torch.testing.assert_close(b, a, atol=1e-4, rtol=0)


def test_dense_layers_read_from_the_tensors(pair: Any) -> None:
    # Qwen's mlp_only_layers / decoder_sparse_step are not GGUF metadata: the router tensors say.
    hf, gguf_model = pair
    sparse = [hasattr(layer.mlp, "experts") for layer in hf.model.model.layers]
    assert [hasattr(layer.mlp, "experts") for layer in gguf_model.model.model.layers] == sparse


def test_tokenizer_from_the_file(pair: Any) -> None:
    _, gguf_model = pair
    assert gguf_model.tokenizer is not None
    # The file's SentencePiece-style pieces ("\u2581t5" is " t5") are the tokenizer's vocabulary
    # (a merge-free list cannot split text, so only ids <-> pieces are checked).
    tok = gguf_model.tokenizer
    assert len(tok) == VOCAB and tok.convert_tokens_to_ids("\u2581t5") == 5
    assert tok.decode([5, 7]) == "t5 t7"


def test_quantized_stacked_experts(tmp_path: Path) -> None:
    # Q8_0 gate/up expert stacks ([E, I, H], H = 64: two blocks per row) dequantize into the
    # right experts: logits stay within Q8_0's rounding of the float32 file's.
    folder = save_tiny_model(CONFIGS["mixtral"](), tmp_path / "hf")
    exact = load_model(write_gguf(folder, tmp_path / "f32.gguf"), dtype="float32")
    quant = load_model(write_gguf(folder, tmp_path / "q8.gguf", q8_experts=True), dtype="float32")
    w13 = quant.model.model.layers[0].mlp.experts.w13
    assert not torch.equal(w13, exact.model.model.layers[0].mlp.experts.w13)
    torch.testing.assert_close(w13, exact.model.model.layers[0].mlp.experts.w13, atol=2e-2, rtol=0)
    for a, b in zip(_logits(exact), _logits(quant), strict=True):
        torch.testing.assert_close(b, a, atol=0.1, rtol=0)
