"""What a settings Struct declares about each field, read back from its annotations.

A field is declared once, as `Annotated[type, doc("help text", ...)]` with its default, and
everything else reads that declaration: `RuntimeArgs` validation checks the declared choices,
`launch_server` and the batch video job build one flag per field with its help, default and
choices (`add_flag`). Torch-free: the server's tokenizer process imports it.
"""

from __future__ import annotations

import argparse
import functools
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec

from sglang.runtime.plugins import Registry


def doc(
    description: str,
    *,
    choices: Iterable[str] = (),
    registry: Registry[Any] | None = None,
    metavar: str | None = None,
    unset: str | None = None,
    lowercase: bool = False,
) -> msgspec.Meta:
    """Field metadata: its help text; what values it takes where that is a fixed list
    (`choices`) or the names of a plug-in `registry` (plus `choices`, e.g. "auto"); for a
    field whose default is None, what None means (`unset`, e.g. "derived from memory"); and
    whether a string is taken in any case (`lowercase`: "NGRAM" means "ngram")."""
    extra: dict[str, Any] = {}
    if lowercase:
        extra["lowercase"] = True
    if unset is not None:
        extra["unset"] = unset
    if tuple(choices):
        extra["choices"] = tuple(choices)
    if registry is not None:
        extra["registry"] = registry
    if metavar is not None:
        extra["metavar"] = metavar
    return msgspec.Meta(description=description, extra=extra or None)


@dataclass(frozen=True)
class ArgField:
    name: str
    type: type  # the value type without Annotated and None: str, int, float or bool
    optional: bool  # None is a valid value
    default: Any
    description: str
    fixed_choices: tuple[str, ...]
    registry: Registry[Any] | None
    metavar: str | None
    unset: str | None  # what None means
    lowercase: bool = False  # values are folded to lower case before they are checked

    def choices(self) -> tuple[str, ...] | None:
        """Every accepted value, or None when the field takes any value of its type; a
        registry's names are read now, so plug-ins installed since are included."""
        if self.registry is not None:
            return (*self.fixed_choices, *self.registry.names())
        return self.fixed_choices or None

    def check(self, value: Any) -> None:
        """Raise ValueError (`UnknownPluginError` for a registry) unless `value` is a choice."""
        if value is None and self.optional:
            return
        if self.registry is not None:
            self.registry.check(value, also=self.fixed_choices)
        elif self.fixed_choices and value not in self.fixed_choices:
            raise ValueError(
                f"invalid {self.name}={value!r}: expected one of {', '.join(self.fixed_choices)}"
            )


def _split(annotation: Any) -> tuple[Any, msgspec.Meta | None]:
    if typing.get_origin(annotation) is typing.Annotated:
        base, *metadata = typing.get_args(annotation)
        meta = next((m for m in metadata if isinstance(m, msgspec.Meta)), None)
        return base, meta
    return annotation, None


def _strip_none(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"a settings field takes one type (or None), not {tp}")
        return rest[0], True
    return tp, False


@functools.cache
def arg_fields(struct: type[msgspec.Struct]) -> tuple[ArgField, ...]:
    """The declared fields of `struct`, in declaration order."""
    out = []
    for f in msgspec.structs.fields(struct):
        base, meta = _split(f.type)
        tp, optional = _strip_none(base)
        extra = (meta.extra if meta is not None else None) or {}
        if f.default is msgspec.NODEFAULT and f.default_factory is not msgspec.NODEFAULT:
            default = f.default_factory()
        else:
            default = None if f.default is msgspec.NODEFAULT else f.default
        out.append(ArgField(
            name=f.name, type=tp, optional=optional, default=default,
            description=(meta.description if meta is not None else None) or "",
            fixed_choices=tuple(extra.get("choices", ())), registry=extra.get("registry"),
            metavar=extra.get("metavar"), unset=extra.get("unset"),
            lowercase=bool(extra.get("lowercase")),
        ))
    return tuple(out)


def fold_case(obj: msgspec.Struct) -> None:
    """Lower-case, in place, every string field of `obj` declared `lowercase`."""
    for f in arg_fields(type(obj)):
        value = getattr(obj, f.name)
        if f.lowercase and isinstance(value, str):
            setattr(obj, f.name, value.lower())


def check_choices(obj: msgspec.Struct) -> None:
    """Check every field of `obj` that declares choices or a registry."""
    for f in arg_fields(type(obj)):
        if f.fixed_choices or f.registry is not None:
            f.check(getattr(obj, f.name))


def flag_of(field: ArgField) -> str:
    return "--" + field.name.replace("_", "-")


def flag_help(field: ArgField) -> str:
    # argparse %-formats help strings: a literal % must be doubled.
    text = field.description.replace("%", "%%")
    if field.default is None and field.unset is not None:
        return f"{text} (default: {field.unset.replace('%', '%%')})"
    return text + " (default: %(default)s)"


def add_flag(group: Any, field: ArgField, aliases: tuple[str, ...] = ()) -> None:
    """One command-line flag for `field` on an argparse parser or group: `--field-name` (plus
    `aliases`), its declared default, choices and help; the value lands in `dest=field.name`."""
    names = (flag_of(field), *aliases)
    common: dict[str, Any] = {"dest": field.name, "default": field.default, "help": flag_help(field)}
    if field.type is bool:
        # Off by default: a plain switch; on by default: --x / --no-x.
        action = "store_true" if not field.default else argparse.BooleanOptionalAction
        group.add_argument(*names, action=action, **common)
        return
    if field.type not in (str, int, float):
        raise TypeError(f"{field.name}: no command-line form for {field.type}")
    # argparse converts before it checks choices: a lowercase field accepts any case.
    convert = str.lower if field.lowercase else field.type
    group.add_argument(*names, type=convert, choices=field.choices(),
                       metavar=field.metavar, **common)
