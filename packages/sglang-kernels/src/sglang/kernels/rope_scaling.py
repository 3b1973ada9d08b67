"""RoPE scaling rules, one place: the frequencies (and the attention factor that multiplies
cos/sin) that an HF ``rope_scaling`` / ``rope_parameters`` dict asks for.

Rules: default, linear, dynamic (NTK), yarn, llama3, longrope, and freq_factors (llama.cpp's
explicit per-frequency divisors, what a GGUF `rope_freqs` tensor holds). Each takes the un-scaled inverse
frequencies and returns a `RopeFrequencies`. Rules that change with the sequence length in
transformers (dynamic NTK, longrope) are frozen here into one position-indexed table, so a
token's K rotation never depends on which batch it was computed in (the KV cache stays valid):
dynamic NTK keeps its frequencies at ``max_position`` (transformers' value at init), longrope
uses the short factors for positions below ``original_max_position_embeddings`` and the long
ones from there on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class RopeFrequencies:
    inv_freq: torch.Tensor  # [rotary_dim // 2] fp32
    attention_factor: float = 1.0  # multiplies cos and sin (YaRN, longrope)
    # Longrope: positions >= long_from rotate by long_inv_freq instead.
    long_inv_freq: torch.Tensor | None = None
    long_from: int | None = None


Rule = Callable[[torch.Tensor, Mapping[str, Any], int, float, int | None], RopeFrequencies]


def _default(inv: torch.Tensor, s: Mapping[str, Any], dim: int, base: float,
             max_pos: int | None) -> RopeFrequencies:
    return RopeFrequencies(inv)


def _linear(inv: torch.Tensor, s: Mapping[str, Any], dim: int, base: float,
            max_pos: int | None) -> RopeFrequencies:
    return RopeFrequencies(inv / float(s["factor"]))


def _dynamic(inv: torch.Tensor, s: Mapping[str, Any], dim: int, base: float,
             max_pos: int | None) -> RopeFrequencies:
    # NTK-aware: transformers grows the base by (factor * seq_len / max_position - factor + 1)
    # ** (dim / (dim - 2)) once a sequence outgrows max_position. The table stops at
    # max_position, where that growth is exactly 1: the frequencies are the defaults.
    float(s["factor"])  # still required, as transformers requires it
    return RopeFrequencies(inv)


def _llama3(inv: torch.Tensor, s: Mapping[str, Any], dim: int, base: float,
            max_pos: int | None) -> RopeFrequencies:
    # Llama 3.1 long-context scaling: wavelengths longer than the original context divided by
    # low_freq_factor are slowed by `factor`, those shorter than it over high_freq_factor are
    # kept, and the band between is interpolated.
    factor = float(s["factor"])
    low, high = float(s["low_freq_factor"]), float(s["high_freq_factor"])
    old_len = float(s["original_max_position_embeddings"])
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > old_len / low, inv / factor, inv)
    smooth = (old_len / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
    return RopeFrequencies(torch.where(is_medium, smoothed, scaled))


def _context_factor(s: Mapping[str, Any], max_pos: int | None, old_len: float, rule: str) -> float:
    """The config's `factor`, else how far max_position_embeddings stretches the original
    context (YaRN and longrope configs may leave the factor out)."""
    factor = s.get("factor")
    return float(factor) if factor is not None else _need(max_pos, rule) / old_len


def _yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def _yarn(inv: torch.Tensor, s: Mapping[str, Any], dim: int, base: float,
          max_pos: int | None) -> RopeFrequencies:
    old_len = float(s["original_max_position_embeddings"])
    factor = _context_factor(s, max_pos, old_len, "yarn")
    attn = s.get("attention_factor")
    if attn is None:
        m, m_all = s.get("mscale"), s.get("mscale_all_dim")
        attn = (_yarn_mscale(factor, m) / _yarn_mscale(factor, m_all) if m and m_all
                else _yarn_mscale(factor))
    beta_fast, beta_slow = float(s.get("beta_fast") or 32), float(s.get("beta_slow") or 1)

    def dim_of(rotations: float) -> float:
        # The rotary dim whose wavelength fits `rotations` turns into the original context.
        return dim * math.log(old_len / (rotations * 2 * math.pi)) / (2 * math.log(base))

    lo, hi = dim_of(beta_fast), dim_of(beta_slow)
    if s.get("truncate", True):
        lo, hi = math.floor(lo), math.ceil(hi)
    lo, hi = max(lo, 0), min(hi, dim - 1)
    if lo == hi:
        hi += 0.001
    # 1 where a dim keeps its frequency (fast dims), 0 where it is interpolated by `factor`.
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - lo) / (hi - lo)).clamp(0, 1)
    keep = 1 - ramp
    return RopeFrequencies(inv / factor * (1 - keep) + inv * keep, float(attn))


def _longrope(inv: torch.Tensor, s: Mapping[str, Any], dim: int, base: float,
              max_pos: int | None) -> RopeFrequencies:
    old_len = int(s["original_max_position_embeddings"])
    factor = _context_factor(s, max_pos, old_len, "longrope")
    attn = s.get("attention_factor")
    if attn is None:
        attn = 1.0 if factor <= 1 else math.sqrt(1 + math.log(factor) / math.log(old_len))
    short = inv / torch.tensor(s["short_factor"], dtype=torch.float32)
    long = inv / torch.tensor(s["long_factor"], dtype=torch.float32)
    return RopeFrequencies(short, float(attn), long, old_len)


def _freq_factors(inv: torch.Tensor, s: Mapping[str, Any], dim: int, base: float,
                  max_pos: int | None) -> RopeFrequencies:
    # llama.cpp's form of any per-frequency rule (GGUF `rope_freqs`, Llama 3.1+): each
    # frequency divided by its factor.
    factors = torch.tensor(s["freq_factors"], dtype=torch.float32)
    if factors.shape != inv.shape:
        raise ValueError(f"{factors.numel()} freq_factors for {inv.numel()} frequencies")
    return RopeFrequencies(inv / factors, float(s.get("attention_factor") or 1.0))


RULES: dict[str, Rule] = {
    "default": _default,
    "linear": _linear,
    "dynamic": _dynamic,
    "yarn": _yarn,
    "llama3": _llama3,
    "longrope": _longrope,
    "freq_factors": _freq_factors,
}
# Names older configs use for the same rules (Phi-3's first long-context releases said "su").
ALIASES = {"su": "longrope", "ntk": "dynamic"}


def _need(max_pos: int | None, rule: str) -> int:
    if max_pos is None:
        raise ValueError(f"rope type {rule!r} needs max_position (max_position_embeddings)")
    return max_pos


def _base_freqs(dim: int, base: float) -> torch.Tensor:
    return 1.0 / (float(base) ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


def rope_type_of(rope_scaling: Mapping[str, Any] | None) -> str:
    scaling = rope_scaling or {}
    name = str(scaling.get("rope_type") or scaling.get("type") or "default")
    return ALIASES.get(name, name)


def rope_frequencies(
    rotary_dim: int,
    base: float,
    rope_scaling: Mapping[str, Any] | None = None,
    max_position: int | None = None,
) -> RopeFrequencies:
    """The scaled frequencies of ``rope_scaling`` (an HF dict naming its rule in ``rope_type``
    or ``type``). ``max_position`` is the config's ``max_position_embeddings`` (dynamic NTK,
    and yarn/longrope configs without a ``factor``)."""
    rope_type = rope_type_of(rope_scaling)
    if rope_type not in RULES:
        raise NotImplementedError(f"rope type {rope_type!r} (supported: {sorted(RULES)})")
    inv = _base_freqs(rotary_dim, base)
    return RULES[rope_type](inv, dict(rope_scaling or {}), rotary_dim, float(base), max_position)


def rope_angles(freqs: RopeFrequencies, max_position: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Half-width ``(cos, sin)`` tables, ``[max_position, rotary_dim // 2]`` fp32, the attention
    factor folded in."""
    pos = torch.arange(max_position, dtype=torch.float32)
    angles = torch.outer(pos, freqs.inv_freq)
    if freqs.long_inv_freq is not None and freqs.long_from is not None:
        long = torch.outer(pos, freqs.long_inv_freq)
        angles = torch.where((pos >= freqs.long_from)[:, None], long, angles)
    a = freqs.attention_factor
    return angles.cos() * a, angles.sin() * a
