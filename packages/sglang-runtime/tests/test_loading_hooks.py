"""Loader hooks that plug-in model families rely on: config adapters with extra weight folders,
PyTorch .bin checkpoints, LayerNorm-aware dummy weights, sibling entry points in a source
checkout, and one batched encoder call for all new images of a step."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
import mm_toy  # noqa: E402
from tiny_models import save_tiny_model  # noqa: E402

from sglang.runtime import plugins  # noqa: E402
from sglang.runtime.loading.dummy import fill_dummy_weights  # noqa: E402
from sglang.runtime.loading.loader import load_model  # noqa: E402
from sglang.runtime.loading.source import ConfigAdaptation  # noqa: E402

ADAPTED = "SplitLlamaForCausalLM"  # a layout only the adapter below understands


def _tiny_llama(folder: Path) -> str:
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=48, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
    )
    return save_tiny_model(config, folder)


@pytest.fixture
def split_checkpoint(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The same tiny Llama twice: as saved, and re-laid out as a flat config.json that names
    ADAPTED, .bin weights without the final norm, and the norm in a separate folder."""
    from safetensors.torch import load_file

    reference = _tiny_llama(tmp_path / "reference")
    weights = load_file(str(Path(reference) / "model.safetensors"))
    split = tmp_path / "split"
    extra = tmp_path / "norm_only"
    split.mkdir()
    extra.mkdir()
    norm = {"norm.weight": weights.pop("model.norm.weight")}
    torch.save(weights, split / "pytorch_model.bin")
    torch.save(norm, extra / "pytorch_model.bin")
    raw = json.loads((Path(reference) / "config.json").read_text())
    raw.update(architectures=[ADAPTED], model_type="not-a-transformers-type",
               norm_folder=str(extra))
    (split / "config.json").write_text(json.dumps(raw))
    for f in Path(reference).glob("tok*"):
        (split / f.name).write_bytes(f.read_bytes())

    def adapt(folder: Path, config: dict[str, Any]) -> ConfigAdaptation:
        import transformers

        fields = {k: v for k, v in config.items() if k not in ("model_type", "norm_folder")}
        fields["architectures"] = ["LlamaForCausalLM"]
        return ConfigAdaptation(transformers.LlamaConfig(**fields),
                                {"model.": Path(config["norm_folder"])})

    plugins.CONFIG_ADAPTERS.register(ADAPTED, adapt)
    yield reference, str(split)
    plugins.CONFIG_ADAPTERS.unregister(ADAPTED)


def test_adapted_config_and_extra_bin_folder_load_the_same_model(
    split_checkpoint: tuple[str, str],
) -> None:
    reference, split = split_checkpoint
    a, b = load_model(reference), load_model(split)
    assert b.model_config.architectures == ("LlamaForCausalLM",)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


def test_a_folder_without_weights_names_both_formats(tmp_path: Path) -> None:
    folder = Path(_tiny_llama(tmp_path / "m"))
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"safetensors or \*\.bin"):
        load_model(str(folder))


def test_dummy_weights_give_layernorms_unit_scale() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    fill_dummy_weights(model)
    assert torch.equal(model[1].weight, torch.ones(4))
    assert torch.equal(model[1].bias, torch.zeros(4))
    assert model[0].weight.std() > 0


def test_uninstalled_sibling_packages_declare_entry_points(tmp_path: Path) -> None:
    def package(name: str, dist: str, eps: dict[str, str]) -> Path:
        folder = tmp_path / "packages" / name
        folder.mkdir(parents=True)
        table = "".join(f'{k} = "{v}"\n' for k, v in eps.items())
        (folder / "pyproject.toml").write_text(
            f'[project]\nname = "{dist}"\n[project.entry-points."sglang.models"]\n{table}'
        )
        return folder / "pyproject.toml"

    runtime = package("runtime", "sglang-runtime", {"A": "runtime.a:A", "B": "runtime.b:B"})
    package("extra", "sglang-sibling-not-installed", {"B": "extra.b:B", "C": "extra.c:C"})
    found = plugins._entry_points("sglang.models", runtime)
    # The runtime's built-ins win a clash; the sibling adds what the runtime lacks.
    assert found["A"] == "runtime.a:A" and found["B"] == "runtime.b:B"
    assert found["C"] == "extra.c:C"


class _BatchedToy(mm_toy.ToyVLForCausalLM):
    batches: list[int] = []

    def embed_multimodal_batch(self, items: list[Any]) -> list[torch.Tensor]:
        type(self).batches.append(len(items))
        return [self.embed_multimodal(item) for item in items]


def test_new_images_of_a_step_are_encoded_in_one_batch(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    import sglang as sgl

    plugins.MODELS.register(mm_toy.ARCH, _BatchedToy)
    plugins.INPUT_PROCESSORS.register(mm_toy.ARCH, mm_toy.ToyProcessor)
    engine = sgl.Engine(model_path=mm_toy.save_toy_model(tmp_path / "toy"), device="cpu",
                        max_total_tokens=2048, debug_check_integrity=True)
    try:
        _BatchedToy.batches.clear()
        images = [mm_toy.png_bytes(i) for i in (0, 1, 2, 0)]
        params = {"temperature": 0, "max_new_tokens": 2}
        engine.generate(["t1 <image> t2"] * 4, params, image_data=images)
        # Three distinct images in one prefill: one tower call for the three; the repeat
        # of image 0 reuses its rows.
        assert _BatchedToy.batches == [3]
        engine.generate(["t3 <image> t4"], params, image_data=[images[1]])
        assert _BatchedToy.batches == [3], "a cached image ran the encoder again"
        engine.check_integrity()
    finally:
        engine.shutdown()
        mm_toy.unregister()


def test_a_parameter_of_the_model_itself_loads() -> None:
    from sglang.runtime.models.weight_utils import load_named_tensors

    class WithTopLevel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.newline = nn.Parameter(torch.zeros(3))
            self.proj = nn.Linear(3, 3, bias=False)

    model = WithTopLevel()
    load_named_tensors(model, [("newline", torch.ones(3)), ("proj.weight", torch.eye(3))], {}, [])
    assert torch.equal(model.newline, torch.ones(3))
