"""sglang.kernels: kernels over plain torch tensors.

Attention over a token-level KV pool (read through a ``req_to_token`` table), norms, rotary
embeddings, activations and MoE, with a torch reference next to each Triton kernel. Usable
without the rest of sglang: ``pip install sglang-kernels``.

Importing this package is cheap: torch (and triton, on CUDA) are imported by the submodules that
need them.
"""

__version__ = "0.1.0"
