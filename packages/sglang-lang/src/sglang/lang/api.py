"""The public functions of the language: `sgl.function`, `sgl.gen`, `sgl.select`, roles, ..."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sglang.lang import ir
from sglang.lang.backend.base import GenParams
from sglang.lang.choices import ChoicesSamplingMethod, token_length_normalized
from sglang.lang.program import SglFunction, resolve_backend, set_default_backend

__all__ = [
    "function", "gen", "gen_int", "gen_string", "select", "image", "video",
    "system", "user", "assistant", "system_begin", "system_end", "user_begin", "user_end",
    "assistant_begin", "assistant_end", "set_default_backend", "flush_cache", "get_server_args",
]  # fmt: skip


def function(
    func: Callable[..., Any] | None = None, *, num_api_spec_tokens: int | None = None
) -> Any:
    """`@sgl.function` or `@sgl.function(num_api_spec_tokens=N)` (see `sglang.lang.speculative`)."""
    if func is None:
        return lambda f: SglFunction(f, num_api_spec_tokens=num_api_spec_tokens)
    return SglFunction(func, num_api_spec_tokens=num_api_spec_tokens)


def _dtype(dtype: type | str | None) -> type | None:
    if dtype is None:
        return None
    resolved = ir.DTYPE_NAMES.get(dtype) if isinstance(dtype, str) else dtype
    if resolved not in ir.DTYPE_REGEX:
        raise ValueError(f"dtype must be one of int, float, bool, str; got {dtype!r}")
    return resolved


def gen(
    name: str | None = None,
    max_tokens: int | None = None,
    min_tokens: int | None = None,
    stop: str | list[str] | None = None,
    stop_token_ids: list[int] | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int | None = None,
    min_p: float | None = None,
    frequency_penalty: float | None = None,
    presence_penalty: float | None = None,
    ignore_eos: bool | None = None,
    regex: str | None = None,
    json_schema: str | dict[str, Any] | None = None,
    dtype: type | str | None = None,
    choices: list[str] | None = None,
    *,
    n: int | None = None,
    stop_regex: str | list[str] | None = None,
    return_logprob: bool | None = None,
    logprob_start_len: int | None = None,
    top_logprobs_num: int | None = None,
    return_text_in_logprobs: bool | None = None,
    choices_method: ChoicesSamplingMethod | None = None,
) -> ir.SglExpr:
    """Generate text (stored as variable `name`). With `choices` it is `sgl.select`.

    `n` > 1 samples n continuations: the variable is the list of them and the program text
    continues with the first. The logprob arguments go to the native API and what it returns
    lands in `state.get_meta_info(name)` (`input_token_logprobs`, `output_token_logprobs`,
    `output_top_logprobs`, ...)."""
    if choices is not None:
        return select(name, choices, 0.0 if temperature is None else temperature,
                      choices_method or token_length_normalized)
    if n is not None and (isinstance(n, bool) or int(n) < 1):
        raise ValueError(f"sgl.gen needs n >= 1, got {n!r}")
    if json_schema is not None and not isinstance(json_schema, str):
        json_schema = json.dumps(json_schema)
    params = GenParams(
        max_new_tokens=max_tokens, min_new_tokens=min_tokens, stop=stop,
        stop_token_ids=stop_token_ids, temperature=temperature, top_p=top_p, top_k=top_k,
        min_p=min_p, frequency_penalty=frequency_penalty, presence_penalty=presence_penalty,
        ignore_eos=ignore_eos, regex=regex, json_schema=json_schema, dtype=_dtype(dtype),
        n=n, stop_regex=stop_regex, return_logprob=return_logprob,
        logprob_start_len=logprob_start_len, top_logprobs_num=top_logprobs_num,
        return_text_in_logprobs=return_text_in_logprobs,
    )  # fmt: skip
    return ir.SglGen(name, params)


def gen_int(name: str | None = None, **kwargs: Any) -> ir.SglExpr:
    """`sgl.gen(name, dtype=int, ...)`: reading the variable gives an int."""
    return gen(name, dtype=int, **kwargs)


def gen_string(name: str | None = None, **kwargs: Any) -> ir.SglExpr:
    """`sgl.gen(name, dtype=str, ...)`: a double-quoted string (`REGEX_STR`)."""
    return gen(name, dtype=str, **kwargs)


def select(
    name: str | None = None,
    choices: list[str] | None = None,
    temperature: float = 0.0,
    choices_method: ChoicesSamplingMethod = token_length_normalized,
) -> ir.SglExpr:
    """Append the choice `choices_method` picks from the backend's scores and store it
    (`sgl.token_length_normalized`, `sgl.greedy_token_selection`,
    `sgl.unconditional_likelihood_normalized`: see `sglang.lang.choices`)."""
    if not choices:
        raise ValueError("sgl.select needs a non-empty list of choices")
    if not isinstance(choices_method, ChoicesSamplingMethod):
        raise TypeError("choices_method must be one of sgl.token_length_normalized, "
                        "sgl.greedy_token_selection, sgl.unconditional_likelihood_normalized")
    return ir.SglSelect(name, list(choices), temperature, choices_method)


def image(source: str | bytes) -> ir.SglExpr:
    """An image (path, URL or bytes); backends without vision support reject it."""
    return ir.SglImage(source)


def video(source: str | bytes, num_frames: int) -> ir.SglExpr:
    """A video (path, URL or bytes) of which the runtime samples `num_frames` frames uniformly;
    backends without video support reject it."""
    if isinstance(num_frames, bool) or int(num_frames) < 1:
        raise ValueError(f"sgl.video needs num_frames >= 1, got {num_frames!r}")
    return ir.SglVideo(source, int(num_frames))


def _role(role: str, expr: Any) -> ir.SglExpr:
    body = [] if expr is None else [ir.to_expr(expr)]
    return ir.SglExprList([ir.SglRoleBegin(role), *body, ir.SglRoleEnd(role)])


def system(expr: Any = None) -> ir.SglExpr:
    return _role("system", expr)


def user(expr: Any = None) -> ir.SglExpr:
    return _role("user", expr)


def assistant(expr: Any = None) -> ir.SglExpr:
    return _role("assistant", expr)


def system_begin() -> ir.SglExpr:
    return ir.SglRoleBegin("system")


def system_end() -> ir.SglExpr:
    return ir.SglRoleEnd("system")


def user_begin() -> ir.SglExpr:
    return ir.SglRoleBegin("user")


def user_end() -> ir.SglExpr:
    return ir.SglRoleEnd("user")


def assistant_begin() -> ir.SglExpr:
    return ir.SglRoleBegin("assistant")


def assistant_end() -> ir.SglExpr:
    return ir.SglRoleEnd("assistant")


def flush_cache(backend: Any = None) -> bool:
    """Drop the runtime's prefix cache (default backend unless one is given)."""
    return resolve_backend(backend).flush_cache()


def get_server_args(backend: Any = None) -> dict[str, Any]:
    return resolve_backend(backend).get_server_args()
