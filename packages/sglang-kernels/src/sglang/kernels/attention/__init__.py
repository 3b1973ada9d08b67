"""Attention over a token-level KV pool read through a ``req_to_token`` table."""

from sglang.kernels.attention.decode import decode_attention
from sglang.kernels.attention.decode_launch import default_num_kv_splits
from sglang.kernels.attention.decode_workspace import DEFAULT_NUM_KV_SPLITS, DecodeWorkspace
from sglang.kernels.attention.extend import extend_attention

__all__ = [
    "DEFAULT_NUM_KV_SPLITS",
    "DecodeWorkspace",
    "decode_attention",
    "default_num_kv_splits",
    "extend_attention",
]
