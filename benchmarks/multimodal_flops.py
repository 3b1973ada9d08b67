"""FLOP arithmetic for the multimodal benchmark (no torch): a CLIP vision tower, the LLaVA
projector and a Llama prefill, so a measured rate can be set against the GPU's matmul ceiling.

Counts are multiply-adds x 2 of the matmuls (and attention's two batched matmuls); norms,
activations and softmax are left out, which only makes the ceiling higher (more optimistic)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpu_suite_roofline import ModelShape


@dataclass(frozen=True)
class VisionShape:
    layers: int  # layers actually run: up to the selected feature layer
    hidden: int
    intermediate: int
    tokens: int  # patches + the class token

    @classmethod
    def from_config(cls, vision: dict[str, Any], feature_layer: int) -> VisionShape:
        total = int(vision["num_hidden_layers"])
        # hidden_states[k] is the output of layer k (0 = embeddings); negative counts from the end
        used = feature_layer if feature_layer >= 0 else total + 1 + feature_layer
        patches = (int(vision["image_size"]) // int(vision["patch_size"])) ** 2
        return cls(layers=used, hidden=int(vision["hidden_size"]),
                   intermediate=int(vision["intermediate_size"]), tokens=patches + 1)

    def flops_per_image(self) -> float:
        d, t = self.hidden, self.tokens
        per_token = 2 * (4 * d * d + 2 * d * self.intermediate)  # qkv + o, fc1 + fc2
        attention = 2 * 2 * t * t * d  # q @ k^T and p @ v over all t x t pairs
        return self.layers * (t * per_token + attention)


def projector_flops(vision_hidden: int, text_hidden: int, tokens: int) -> float:
    """Two-layer MLP: vision_hidden -> text_hidden -> text_hidden, per output token."""
    return tokens * 2 * (vision_hidden * text_hidden + text_hidden * text_hidden)


def prefill_flops(shape: ModelShape, tokens: int) -> float:
    """A causal prefill of `tokens` new tokens with nothing cached: the layers' matmuls for every
    token, attention over the causal triangle, and the LM head for the last token only."""
    per_token = 2 * shape.layers * shape.layer_params
    q_width = shape.heads * shape.head_dim
    attention = shape.layers * 2 * 2 * q_width * tokens * (tokens + 1) / 2
    return tokens * per_token + attention + 2 * shape.lm_head_params


def video_qa_flops(text: ModelShape, vision: VisionShape, frames: int, tokens_per_frame: int,
                   prompt_tokens: int) -> dict[str, float]:
    """One video question: each frame through the tower, the pooled tokens through the
    projector, and one prefill of prompt + video tokens (decode is left out: it is bound by
    bandwidth, not FLOPs, and short next to the prefill)."""
    video_tokens = frames * tokens_per_frame
    out = {
        "vision": frames * vision.flops_per_image(),
        "projector": projector_flops(vision.hidden, text.hidden, video_tokens),
        "prefill": prefill_flops(text, prompt_tokens + video_tokens),
    }
    out["total"] = sum(out.values())
    return out
