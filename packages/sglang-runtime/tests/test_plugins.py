"""plugins.Registry and the registries built on it: lookups, errors listing the choices,
discovery from the runtime's pyproject.toml (a source checkout with no installed metadata), and
the built-ins every registry finds through their entry points."""

from __future__ import annotations

import importlib.metadata as md
import sys
from pathlib import Path

import pytest

from sglang.runtime import plugins
from sglang.runtime.plugins import Registry, UnknownPluginError

RUNTIME_PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
BUILTIN_MODELS = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"}
# issue 18 (moe): mixture-of-experts families
BUILTIN_MODELS |= {"MixtralForCausalLM", "Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM", "DbrxForCausalLM"}
BUILTINS = {
    plugins.MODELS: BUILTIN_MODELS,
    plugins.ATTENTION_BACKENDS: {"torch", "cpu", "triton"},
    plugins.GRAMMAR_BACKENDS: {"xgrammar", "outlines"},
    plugins.SCHEDULE_POLICIES: {"lpm", "fcfs"},
}
# fama: Gemma 1/2/3, Command-R, StableLM, OLMo 2
BUILTINS[plugins.MODELS] |= {
    "GemmaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM", "CohereForCausalLM",
    "StableLmForCausalLM", "Olmo2ForCausalLM",
}
# issue 18, group famb: Qwen (1), Qwen3 dense, Phi-3/Phi-4, Granite
BUILTINS[plugins.MODELS] |= {
    "QWenLMHeadModel", "Qwen3ForCausalLM", "Phi3ForCausalLM", "GraniteForCausalLM",
}


def test_direct_registration_lookup_and_unknown_name() -> None:
    reg: Registry[int] = Registry("widget", "sglang.test_widgets_none")
    assert reg.names() == ()
    reg.register("one", 1)

    @reg.register("two")
    def two() -> int:
        return 2

    assert reg.get("one") == 1 and reg.get("two") is two
    assert reg.names() == ("one", "two") and "one" in reg and "three" not in reg
    with pytest.raises(UnknownPluginError, match=r"unknown widget 'three'; registered: one, two"):
        reg.get("three")
    with pytest.raises(UnknownPluginError) as info:
        reg.check("three", also=("auto",))
    assert info.value.choices == ("auto", "one", "two")
    reg.check("auto", also=("auto",))
    reg.unregister("one")
    assert reg.names() == ("two",)


def test_check_loads_nothing_and_a_broken_entry_names_its_target(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reg: Registry[object] = Registry("widget", "sglang.test_widgets")
    monkeypatch.setattr(plugins, "_entry_points",
                        lambda group: {"broken": "sglang_no_such_module_xyz:Thing"})
    reg.check("broken")  # declared: fine, and nothing imported
    assert "sglang_no_such_module_xyz" not in sys.modules
    with pytest.raises(ImportError, match="sglang_no_such_module_xyz:Thing"):
        reg.get("broken")


def test_source_tree_fallback_reads_the_runtime_pyproject(tmp_path: Path) -> None:
    found = plugins._source_tree_entry_points("sglang.schedule_policies", RUNTIME_PYPROJECT)
    assert found == {"lpm": "sglang.runtime.scheduler.policy:longest_prefix_match",
                     "fcfs": "sglang.runtime.scheduler.policy:fcfs"}
    assert plugins._source_tree_entry_points("sglang.input_processors", RUNTIME_PYPROJECT) == {}
    assert plugins._source_tree_entry_points("sglang.models", tmp_path / "missing.toml") is None
    other = tmp_path / "pyproject.toml"
    other.write_text('[project]\nname = "someone-else"\n'
                     '[project.entry-points."sglang.models"]\nX = "x:X"\n')
    assert plugins._source_tree_entry_points("sglang.models", other) is None


def test_a_checkout_without_installed_metadata_finds_every_builtin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As with PYTHONPATH=packages/*/src and no sglang-runtime installed: importlib.metadata
    knows no entry point, the runtime's pyproject.toml declares the built-ins."""
    monkeypatch.setattr(plugins.md, "entry_points", lambda group: [])
    for registry, names in BUILTINS.items():
        fresh: Registry[object] = Registry(registry.kind, registry.group)
        assert set(fresh.names()) == names
    policies: Registry[object] = Registry("schedule policy", "sglang.schedule_policies")
    from sglang.runtime.scheduler.policy import fcfs

    assert policies.get("fcfs") is fcfs


def test_installed_metadata_declares_the_same_builtins_as_the_pyproject() -> None:
    """The editable install's metadata is current (re-install after editing the entry points);
    a wheel has only the metadata."""
    import importlib.metadata as md

    for registry in BUILTINS:
        installed = {ep.name: ep.value for ep in md.distribution("sglang-runtime").entry_points
                     if ep.group == registry.group}
        assert installed == plugins._source_tree_entry_points(registry.group, RUNTIME_PYPROJECT)


def test_every_builtin_loads_and_is_what_its_lookup_returns() -> None:
    from sglang.runtime.attention.base import AttentionBackend, create_backend
    from sglang.runtime.attention.torch_backend import TorchAttentionBackend
    from sglang.runtime.grammar.base import GrammarBackend
    from sglang.runtime.models.llama import LlamaForCausalLM
    from sglang.runtime.models.registry import get_model_class, supported_architectures
    from sglang.runtime.scheduler.policy import get_policy, longest_prefix_match

    for registry, names in BUILTINS.items():
        # Other installed distributions (sglang-multimodal) may add names; none may go missing.
        others = {ep.name for ep in md.entry_points(group=registry.group)
                  if ep.dist is None or ep.dist.metadata["Name"] != plugins.RUNTIME_DIST}
        assert names <= set(registry.names()) <= names | others, registry.kind
    assert BUILTINS[plugins.MODELS] <= set(supported_architectures())
    assert get_model_class("MistralForCausalLM") is LlamaForCausalLM
    assert get_model_class("Qwen2ForCausalLM").__name__ == "Qwen2ForCausalLM"
    assert isinstance(create_backend("torch"), TorchAttentionBackend)
    assert all(issubclass(plugins.ATTENTION_BACKENDS.get(n), AttentionBackend)
               for n in BUILTINS[plugins.ATTENTION_BACKENDS])
    assert all(issubclass(plugins.GRAMMAR_BACKENDS.get(n), GrammarBackend)
               for n in BUILTINS[plugins.GRAMMAR_BACKENDS])
    assert get_policy("lpm") is longest_prefix_match


def test_grammar_kinds_come_from_the_class_without_its_library() -> None:
    """Reading a backend's kinds imports its module but not xgrammar / outlines-core: run in a
    fresh interpreter, where nothing has imported them yet."""
    import subprocess

    code = (
        "import sys\n"
        "from sglang.runtime.grammar.registry import backend_kinds\n"
        "print(backend_kinds('xgrammar'), backend_kinds('outlines'))\n"
        "print('xgrammar' in sys.modules, 'outlines_core' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.splitlines()
    assert out == ["('regex', 'json_schema', 'ebnf') ('regex', 'json_schema')", "False False"]


def test_model_class_for_config_takes_the_first_registered_architecture() -> None:
    from types import SimpleNamespace

    from sglang.runtime.models.registry import model_class_for_config

    cfg = SimpleNamespace(architectures=["NopeForCausalLM", "Qwen2ForCausalLM"])
    assert model_class_for_config(cfg).__name__ == "Qwen2ForCausalLM"
    with pytest.raises(UnknownPluginError, match="LlamaForCausalLM"):
        model_class_for_config(SimpleNamespace(architectures=["NopeForCausalLM"]))
    with pytest.raises(ValueError, match="architectures"):
        model_class_for_config(SimpleNamespace(architectures=[]))
