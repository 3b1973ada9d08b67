"""Plug-in registries: one type for every kind of extension, discovered through entry points.

Each kind (models, input processors, attention backends, grammar backends, schedule policies,
speculative algorithms) has one `Registry` and one entry-point group. A distribution adds to a kind by declaring, in its
`pyproject.toml`:

    [project.entry-points."sglang.models"]
    MyForCausalLM = "my_pkg.my_model:MyForCausalLM"

The runtime declares its built-ins the same way. Entries are loaded lazily, one by one, the first
time their name is looked up, so a spawned scheduler or tensor-parallel rank process finds the
same plug-ins as its parent with no registration code of its own, and a lookup never imports
modules it does not need (xgrammar, triton, a plug-in's heavy dependencies).

`Registry.register` also accepts objects directly (tests, scripts); direct registrations win over
entry points of the same name but live only in the process that made them.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import logging
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

logger = logging.getLogger("sglang.runtime")

T = TypeVar("T")

# The distribution that declares the built-ins.
RUNTIME_DIST = "sglang-runtime"


class UnknownPluginError(ValueError):
    """A name no plug-in of that kind is registered under; the message lists the choices."""

    def __init__(self, kind: str, name: str, choices: Iterable[str]) -> None:
        self.kind, self.name, self.choices = kind, name, tuple(sorted(choices))
        listed = ", ".join(self.choices) or "(none)"
        super().__init__(f"unknown {kind} {name!r}; registered: {listed}")


def _load_target(target: str) -> Any:
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module.strip())
    for part in attr.strip().split(".") if attr.strip() else []:
        obj = getattr(obj, part)
    return obj


# The runtime's own pyproject.toml when this module runs from a source checkout (editable
# install or PYTHONPATH); absent in an installed wheel.
SOURCE_PYPROJECT = Path(__file__).resolve().parents[3] / "pyproject.toml"


def _read_pyproject(pyproject: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - 3.10 without tomllib
        try:
            import tomli as tomllib
        except ImportError:
            return {}
    with pyproject.open("rb") as f:
        project: dict[str, Any] = tomllib.load(f).get("project", {})
    return project


def _group_of(project: dict[str, Any], group: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in project.get("entry-points", {}).get(group, {}).items()}


def _source_tree_entry_points(
    group: str, pyproject: Path = SOURCE_PYPROJECT
) -> dict[str, str] | None:
    """The entry points of `group` that the runtime's pyproject.toml declares, or None when
    `pyproject` is not the runtime's (an installed wheel, where the metadata is the truth)."""
    if not pyproject.is_file():
        return None
    project = _read_pyproject(pyproject)
    if project.get("name") != RUNTIME_DIST:
        return None
    return _group_of(project, group)


def _uninstalled_sibling_entry_points(group: str, pyproject: Path) -> dict[str, str]:
    """Entry points of the other packages of a source checkout (packages/*/pyproject.toml) that
    are not installed: used through PYTHONPATH alone (a GPU machine), they have no metadata."""
    found: dict[str, str] = {}
    for sibling in sorted(pyproject.parent.parent.glob("*/pyproject.toml")):
        if sibling.resolve() == pyproject.resolve():
            continue
        project = _read_pyproject(sibling)
        try:
            md.distribution(str(project.get("name", "")))
            continue  # installed: its metadata speaks for it
        except md.PackageNotFoundError:
            pass
        for name, target in _group_of(project, group).items():
            found.setdefault(name, target)
    return found


def _dist_name(ep: md.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    name = dist.metadata["Name"] if dist is not None else None
    return name.replace("_", "-").lower() if name else None


def _entry_points(group: str, pyproject: Path = SOURCE_PYPROJECT) -> dict[str, str]:
    """name -> "module:attr" for every entry point of `group`: the runtime's built-ins first,
    then every other installed distribution's in sys.path order (a name already taken keeps its
    first target).

    Running from a source checkout, the built-ins come from the checkout's pyproject.toml, not
    from installed metadata: without an install there is none, and after an edit to the
    pyproject an editable install's metadata is stale until it is reinstalled.
    """
    source = _source_tree_entry_points(group, pyproject)
    eps = [(ep, _dist_name(ep)) for ep in md.entry_points(group=group)]
    if source is None:
        source = {ep.name: ep.value for ep, dist in eps if dist == RUNTIME_DIST}
        siblings: dict[str, str] = {}
    else:
        siblings = _uninstalled_sibling_entry_points(group, pyproject)
    found = {**siblings, **source}
    for ep, dist in eps:
        if dist == RUNTIME_DIST:
            continue
        if ep.name in found:
            if found[ep.name] != ep.value:
                logger.warning("%s %r of %s (%s) is shadowed by %s", group, ep.name, dist,
                               ep.value, found[ep.name])
            continue
        found[ep.name] = ep.value
    return found


class Registry(Generic[T]):
    """Named plug-ins of one kind. `get(name)` loads the entry point of that name on first use;
    an unknown name raises `UnknownPluginError` listing every registered choice."""

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        self.group = group
        self._loaded: dict[str, T] = {}
        self._targets: dict[str, str] | None = None
        self._lock = threading.RLock()

    def _discovered(self) -> dict[str, str]:
        if self._targets is None:
            self._targets = _entry_points(self.group)
        return self._targets

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...
    @overload
    def register(self, name: str, obj: T) -> T: ...

    def register(self, name: str, obj: Any = None) -> Any:
        """`registry.register("name", obj)`, or as a decorator `@registry.register("name")`."""

        def add(value: T) -> T:
            with self._lock:
                self._loaded[name] = value
            return value

        return add if obj is None else add(obj)

    def unregister(self, name: str) -> None:
        with self._lock:
            self._loaded.pop(name, None)

    def names(self) -> tuple[str, ...]:
        """Every registered name, sorted; loads nothing."""
        with self._lock:
            return tuple(sorted({*self._discovered(), *self._loaded}))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def get(self, name: str) -> T:
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            target = self._discovered().get(name)
            if target is None:
                raise UnknownPluginError(self.kind, name, self.names())
            try:
                obj = _load_target(target)
            except Exception as e:
                raise ImportError(
                    f"{self.kind} {name!r} is declared as {target!r} in entry-point group "
                    f"{self.group!r} but could not be loaded: {type(e).__name__}: {e}"
                ) from e
            self._loaded[name] = obj
            return obj

    def check(self, name: str, also: Iterable[str] = ()) -> None:
        """Raise `UnknownPluginError` unless `name` is registered or one of `also` (names the
        caller resolves itself, such as "auto"); loads nothing."""
        also = tuple(also)
        if name not in also and name not in self.names():
            raise UnknownPluginError(self.kind, name, (*also, *self.names()))

    def refresh(self) -> None:
        """Forget discovered entry points (after installing a distribution at run time)."""
        with self._lock:
            self._targets = None
        importlib.invalidate_caches()


# Every kind of plug-in, in one place: the registries below are the only ones. Values are typed
# loosely here so that this module stays free of torch (the tokenizer process imports it).
MODELS: Registry[Any] = Registry("model architecture", "sglang.models")
INPUT_PROCESSORS: Registry[Any] = Registry("input processor", "sglang.input_processors")
ATTENTION_BACKENDS: Registry[Any] = Registry("attention backend", "sglang.attention_backends")
GRAMMAR_BACKENDS: Registry[Any] = Registry("grammar backend", "sglang.grammar_backends")
SCHEDULE_POLICIES: Registry[Any] = Registry("schedule policy", "sglang.schedule_policies")
# Draft proposers for speculative decoding (sglang.runtime.speculative.base.DraftProposer).
SPECULATIVE_ALGORITHMS: Registry[Any] = Registry(
    "speculative algorithm", "sglang.speculative_algorithms"
)
# Keyed by an architecture name in a model folder's raw config.json: checkpoint layouts that
# transformers' AutoConfig reads wrongly (the original LLaVA layout), see loading.hf_loader.
CONFIG_ADAPTERS: Registry[Any] = Registry("config adapter", "sglang.config_adapters")
