import torch, time
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend
dev = "cuda"; dt = torch.bfloat16
B, Hkv, G, D = 64, 8, 4, 128
def bench(f, n=50):
    for _ in range(3): f()
    torch.cuda.synchronize(); t = time.perf_counter()
    for _ in range(n): f()
    torch.cuda.synchronize(); return (time.perf_counter() - t) / n * 1e3
for L in (512, 513, 2048):
    q = torch.randn(B, Hkv * G, 1, D, device=dev, dtype=dt)
    k = torch.randn(B, L, Hkv, D, device=dev, dtype=dt).transpose(1, 2)
    v = torch.randn(B, L, Hkv, D, device=dev, dtype=dt).transpose(1, 2)
    m = (torch.arange(L, device=dev)[None] < torch.randint(1, L + 1, (B, 1), device=dev))[:, None, None]
    ref = F.scaled_dot_product_attention(q.float(), k.float().repeat_interleave(G, 1), v.float().repeat_interleave(G, 1), attn_mask=m)
    cands = {
      "default_gqa": lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=m, enable_gqa=True),
      "fold": lambda: F.scaled_dot_product_attention(q.view(B, Hkv, G, D), k, v, attn_mask=m).reshape(B, Hkv * G, 1, D),
      "fold_contig": lambda: F.scaled_dot_product_attention(q.view(B, Hkv, G, D), k.contiguous(), v.contiguous(), attn_mask=m).reshape(B, Hkv * G, 1, D),
    }
    for name, f in cands.items():
        for backs, tag in [(None, "any"), ([SDPBackend.EFFICIENT_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.MATH], "nocudnn"), ([SDPBackend.EFFICIENT_ATTENTION], "eff")]:
            try:
                if backs is None:
                    ms = bench(f); out = f()
                else:
                    with sdpa_kernel(backs):
                        ms = bench(f); out = f()
                print(L, name, tag, f"{ms:.3f} ms", "err", (out.float() - ref).abs().max().item())
            except Exception as e:
                print(L, name, tag, "ERR", str(e)[:100])

# changing L every call, like decode
ks = {}
for L in range(1000, 1020):
    ks[L] = (torch.randn(B, L, Hkv, D, device=dev, dtype=dt).transpose(1, 2), (torch.arange(L, device=dev)[None] < L)[:, None, None].expand(B,1,1,L))
q = torch.randn(B, Hkv * G, 1, D, device=dev, dtype=dt)
for tag, backs in [("any", None), ("nocudnn", [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.MATH])]:
    for name in ["gqa", "fold"]:
        def run():
            for L, (k, m) in ks.items():
                if name == "gqa": F.scaled_dot_product_attention(q, k, k, attn_mask=m, enable_gqa=True)
                else: F.scaled_dot_product_attention(q.view(B, Hkv, G, D), k, k, attn_mask=m)
        torch.cuda.synchronize(); t = time.perf_counter()
        if backs: 
            with sdpa_kernel(backs): run()
        else: run()
        torch.cuda.synchronize(); print("varying L", tag, name, (time.perf_counter() - t) / len(ks) * 1e3, "ms/call")
