"""A tiny Qwen (1) reference written from the original remote-code modeling math, since
transformers has no QWen class: `transformer.*` names, c_attn holding q/k/v with a bias,
RMSNorm, neox-style rotary over the first `rotary_pct` of each head, MLP
c_proj(w1(x) * silu(w2(x))), MHA with causal softmax. Positions stay below `seq_length`,
where Qwen's dynamic NTK and log-n scaling do nothing."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

RAW_CONFIG: dict[str, Any] = {
    "architectures": ["QWenLMHeadModel"],
    "model_type": "qwen",
    "vocab_size": 160,
    "hidden_size": 64,
    "intermediate_size": 256,  # both MLP halves: each is 128 wide
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "kv_channels": 16,
    "rotary_pct": 0.5,
    "rotary_emb_base": 10000,
    "layer_norm_epsilon": 1e-6,
    "seq_length": 256,
    "max_position_embeddings": 256,
    "no_bias": True,
    "use_dynamic_ntk": True,
    "use_logn_attn": True,
    "tie_word_embeddings": False,
}


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


class QwenReference(nn.Module):
    def __init__(self, raw: dict[str, Any]) -> None:
        super().__init__()
        self.raw = raw
        h, ff = raw["hidden_size"], raw["intermediate_size"] // 2
        self.transformer = nn.Module()
        self.transformer.wte = nn.Embedding(raw["vocab_size"], h)
        self.transformer.h = nn.ModuleList()
        for _ in range(raw["num_hidden_layers"]):
            block = nn.Module()
            block.ln_1, block.ln_2 = nn.Module(), nn.Module()
            block.ln_1.weight = nn.Parameter(torch.ones(h))
            block.ln_2.weight = nn.Parameter(torch.ones(h))
            block.attn = nn.Module()
            block.attn.c_attn = nn.Linear(h, 3 * h, bias=True)
            block.attn.c_proj = nn.Linear(h, h, bias=False)
            block.mlp = nn.Module()
            block.mlp.w1 = nn.Linear(h, ff, bias=False)
            block.mlp.w2 = nn.Linear(h, ff, bias=False)
            block.mlp.c_proj = nn.Linear(ff, h, bias=False)
            self.transformer.h.append(block)
        self.transformer.ln_f = nn.Module()
        self.transformer.ln_f.weight = nn.Parameter(torch.ones(h))
        self.lm_head = nn.Linear(h, raw["vocab_size"], bias=False)

    def _rotate(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        d = x.shape[-1]
        rot = int(d * self.raw["rotary_pct"])
        inv = 1.0 / self.raw["rotary_emb_base"] ** (torch.arange(0, rot, 2).float() / rot)
        freqs = torch.outer(pos.float(), inv)
        emb = torch.cat((freqs, freqs), -1)[:, None, :]  # [seq, 1, rot]
        xr, rest = x[..., :rot], x[..., rot:]
        x1, x2 = xr.chunk(2, -1)
        rotated = xr * emb.cos() + torch.cat((-x2, x1), -1) * emb.sin()
        return torch.cat((rotated, rest), -1)

    @torch.no_grad()
    def forward(self, ids: torch.Tensor) -> SimpleNamespace:
        raw, eps = self.raw, self.raw["layer_norm_epsilon"]
        heads = raw["num_attention_heads"]
        x = self.transformer.wte(ids[0])  # [seq, hidden]
        seq = x.shape[0]
        pos = torch.arange(seq)
        mask = torch.full((seq, seq), float("-inf")).triu(1)
        for block in self.transformer.h:
            a = _rms(x, block.ln_1.weight, eps)
            q, k, v = block.attn.c_attn(a).split(raw["hidden_size"], -1)
            q, k, v = (t.view(seq, heads, -1) for t in (q, k, v))
            q, k = self._rotate(q, pos), self._rotate(k, pos)
            scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(q.shape[-1]) + mask
            out = torch.einsum("hqk,khd->qhd", scores.softmax(-1), v).reshape(seq, -1)
            x = x + block.attn.c_proj(out)
            m = _rms(x, block.ln_2.weight, eps)
            x = x + block.mlp.c_proj(block.mlp.w1(m) * nn.functional.silu(block.mlp.w2(m)))
        x = _rms(x, self.transformer.ln_f.weight, eps)
        return SimpleNamespace(logits=self.lm_head(x)[None])


def save_qwen_reference(folder: Path, seed: int = 0) -> QwenReference:
    """A random QwenReference saved as a remote-code style checkpoint folder (config.json with
    model_type "qwen" + safetensors); O(1)-scale weights as in tiny_models."""
    torch.manual_seed(seed)
    model = QwenReference(RAW_CONFIG).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 1.0 / math.sqrt(p.shape[1]))
            else:
                p.copy_(1.0 + 0.1 * torch.randn_like(p) if "ln" in name else 0.1 * torch.randn_like(p))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(RAW_CONFIG))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(folder / "model.safetensors"))
    return model
