"""Executing the nodes that call the backend: gen (plain, streamed, speculative), select, media.

Functions of the executor rather than methods, to keep the executor about ordering and state.
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any

from sglang.lang import ir
from sglang.lang.backend.base import GenParams

if TYPE_CHECKING:
    from sglang.lang.interpreter import StreamExecutor

_LOW, _HIGH = "\ud800", "\udbff"  # the range of a surrogate pair's first (high) half


def merge_params(defaults: GenParams, own: GenParams) -> GenParams:
    """The gen's own arguments win over the run's; dtype turns into its regex constraint."""
    values = {f.name: getattr(own, f.name) for f in fields(GenParams)}
    merged = GenParams(**{k: getattr(defaults, k) if v is None else v for k, v in values.items()})
    if merged.dtype is not None and merged.regex is None and merged.json_schema is None:
        merged.regex = ir.DTYPE_REGEX[merged.dtype]  # type: ignore[index]
    return merged


def execute_gen(ex: StreamExecutor, node: ir.SglGen) -> None:
    params = merge_params(ex.default_params, node.params)
    ex.gen_var = node.name  # tags the streamed pieces for text_iter(var)
    try:
        if params.n is not None and params.n > 1:
            ex.spec.clear()
            value, meta = _generate_n(ex, params)
        elif ex.spec.applies(ex, params):
            value, meta = ex.spec.gen(ex, params)
            ex.append_text(value)
        else:
            ex.spec.clear()
            value, meta = _generate(ex, params)
    finally:
        ex.gen_var = None
    if node.name is not None:
        ex.set_var(node.name, value, meta, params.dtype)


def _generate_n(ex: StreamExecutor, params: GenParams) -> tuple[list[str], dict[str, Any]]:
    """n samples: the variable holds all of them, the program continues with the first."""
    if ex.stream:
        raise ValueError("sgl.gen(n=...) with n > 1 can't be streamed; run without stream=True")
    values, meta = ex.backend.generate(ex.context(), params)
    if isinstance(values, str):
        raise ValueError(f"{type(ex.backend).__name__} returned one sample for n={params.n}")
    ex.append_text(values[0])
    return list(values), meta


def _generate(ex: StreamExecutor, params: GenParams) -> tuple[str, dict[str, Any]]:
    if not ex.stream:
        value, meta = ex.backend.generate(ex.context(), params)
        ex.append_text(str(value))
        return str(value), meta
    value, meta, held = "", {}, ""
    for delta, piece_meta in ex.backend.generate_stream(ex.context(), params):
        meta = piece_meta  # the last piece's meta_info describes the whole generation
        delta = held + delta
        # A str piece never holds half a UTF-8 char, but keep surrogate pairs together too.
        held = delta[-1] if delta and _LOW <= delta[-1] <= _HIGH else ""
        delta = delta[: len(delta) - len(held)]
        value += delta
        ex.append_text(delta)
    value += held
    ex.append_text(held)
    return value, meta


def execute_select(ex: StreamExecutor, node: ir.SglSelect) -> None:
    if not node.choices:
        raise ValueError("sgl.select needs at least one choice")
    ex.spec.clear()
    result = ex.backend.select(ex.context(), list(node.choices), node.temperature,
                               node.choices_method)
    ex.append_text(result.choice)
    if node.name is not None:
        meta = {"normalized_logprobs": result.normalized_logprobs, **result.meta}
        ex.set_var(node.name, result.choice, meta)


def execute_media(ex: StreamExecutor, node: ir.SglImage | ir.SglVideo) -> None:
    """Backends opt in with `supports_images` / `supports_videos`; the item goes to the backend
    in `ctx.media` and the template's `image_token`/`video_token` into the text."""
    kind = "image" if isinstance(node, ir.SglImage) else "video"
    if not getattr(ex.backend, f"supports_{kind}s", False):
        raise ValueError(
            f"{type(ex.backend).__name__} does not support {kind} inputs (sgl.{kind}); "
            "use a backend serving a vision model"
        )
    item: dict[str, Any] = {"type": kind, "data": node.source}
    if isinstance(node, ir.SglVideo):
        item["num_frames"] = node.num_frames
    ex.media_.append(item)
    ex.spec.clear()
    ex.append_text(getattr(ex.template, f"{kind}_token"))
