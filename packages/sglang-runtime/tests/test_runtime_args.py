"""RuntimeArgs as the one declaration of every runtime knob: each field carries its help text,
plug-in names are checked against the registries (an unknown one names the choices), the
fixed choice lists match what the loader implements, and the Engine takes every field as a
keyword with the same default."""

from __future__ import annotations

from typing import Any

import pytest

from sglang.runtime import plugins
from sglang.runtime.arg_fields import arg_fields
from sglang.runtime.config import DTYPES, LOAD_FORMATS, RuntimeArgs
from sglang.runtime.plugins import UnknownPluginError

REGISTRY_FIELDS = {
    "schedule_policy": plugins.SCHEDULE_POLICIES,
    "attention_backend": plugins.ATTENTION_BACKENDS,
    "grammar_backend": plugins.GRAMMAR_BACKENDS,
}


def test_every_field_declares_help_text_and_a_default() -> None:
    fields = arg_fields(RuntimeArgs)
    assert [f.name for f in fields] == list(RuntimeArgs.__struct_fields__)
    defaults = RuntimeArgs()
    for f in fields:
        assert f.description.strip(), f"{f.name} has no description"
        assert f.default == getattr(defaults, f.name), f.name
        assert f.type in (str, int, float, bool), f.name
        if f.default is None:
            assert f.optional and f.unset, f"{f.name}: say what None means (doc(unset=...))"


@pytest.mark.parametrize("field", sorted(REGISTRY_FIELDS))
def test_unknown_plugin_name_fails_at_construction_naming_the_choices(field: str) -> None:
    registry = REGISTRY_FIELDS[field]
    with pytest.raises(UnknownPluginError) as info:
        RuntimeArgs(**{field: "nope"})
    expected = set(registry.names()) | ({"auto"} if field == "attention_backend" else set())
    assert set(info.value.choices) == expected and len(expected) >= 2
    assert all(name in str(info.value) for name in expected)
    with pytest.raises(UnknownPluginError):  # the Engine's way in: the same error
        RuntimeArgs.from_kwargs(**{field: "nope"})
    for name in registry.names():
        assert getattr(RuntimeArgs(**{field: name}), field) == name


def test_declared_choices_are_the_registries_and_tuples() -> None:
    by_name = {f.name: f for f in arg_fields(RuntimeArgs)}
    for field, registry in REGISTRY_FIELDS.items():
        extra = ("auto",) if field == "attention_backend" else ()
        assert by_name[field].choices() == (*extra, *registry.names())
    assert by_name["dtype"].choices() == DTYPES
    assert by_name["load_format"].choices() == LOAD_FORMATS
    assert RuntimeArgs(attention_backend="auto").attention_backend == "auto"


def test_a_plugin_registered_later_is_a_valid_choice() -> None:
    plugins.SCHEDULE_POLICIES.register("reverse-arrival", lambda waiting, cache: list(waiting))
    try:
        assert RuntimeArgs(schedule_policy="reverse-arrival").schedule_policy == "reverse-arrival"
        by_name = {f.name: f for f in arg_fields(RuntimeArgs)}
        assert "reverse-arrival" in (by_name["schedule_policy"].choices() or ())
    finally:
        plugins.SCHEDULE_POLICIES.unregister("reverse-arrival")
    with pytest.raises(UnknownPluginError):
        RuntimeArgs(schedule_policy="reverse-arrival")


def test_fixed_choices_match_the_loader() -> None:
    from sglang.runtime.loading import loader

    assert set(LOAD_FORMATS) == {"auto", "dummy", *loader.FORMATS}
    assert set(DTYPES) == {"auto", *loader._DTYPES}
    with pytest.raises(ValueError, match="load_format"):
        RuntimeArgs(load_format="onnx")
    with pytest.raises(ValueError, match="dtype"):
        RuntimeArgs(dtype="int3")


def test_log_level_takes_logging_spellings() -> None:
    assert RuntimeArgs(log_level="WARNING").log_level == "warning"
    with pytest.raises(ValueError, match="log_level"):
        RuntimeArgs(log_level="loud")


def test_engine_takes_every_field_as_a_keyword_with_the_same_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Engine(**kwargs) builds its RuntimeArgs from exactly its keywords; stop it there rather
    than load a model per field."""
    import inspect

    from sglang.runtime.engine import Engine

    seen: list[dict[str, Any]] = []

    class Built(Exception):
        pass

    def capture(cls: type[RuntimeArgs], **kwargs: Any) -> RuntimeArgs:
        seen.append(kwargs)
        raise Built

    monkeypatch.setattr(RuntimeArgs, "from_kwargs", classmethod(capture))
    defaults = {f.name: f.default for f in arg_fields(RuntimeArgs)}
    with pytest.raises(Built):
        Engine(**defaults)
    assert seen == [defaults]
    monkeypatch.undo()
    assert RuntimeArgs.from_kwargs(**seen[0]) == RuntimeArgs()
    model_path = inspect.signature(Engine).parameters["model_path"]
    assert model_path.default == RuntimeArgs().model_path
