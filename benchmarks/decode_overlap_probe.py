"""Can a large decode step overlap its memory-bound attention with its compute-bound GEMMs?

The suite's offline run decodes ~640 requests of ~1000 keys per step on Llama-3-8B shapes. There
the GEMMs are compute-bound and the attention is bandwidth-bound, and the two run one after the
other. This probe times 32 layers of that step's big kernels (qkv, attention, o, gate/up,
SiLU-and-mul, down; the norms and rotary are left out) in three ways:

- `serial`: one stream, the whole batch (what the engine does now);
- `two_streams`: the batch cut into two micro-batches, each on its own stream, issued layer by
  layer with nothing tying them together;
- `alternating`: the same, but the micro-batches' attentions take turns (events order them), so
  one micro-batch's attention runs beside the other's GEMMs;
- `split_sms_<A>`: the SMs split by green contexts, A for attention and the rest for the GEMMs;
  one stream per side, events carry each micro-batch from its GEMMs to its attention and back.

    python3 benchmarks/decode_overlap_probe.py [--batch 640] [--ctx 1024] [--layers 32]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import torch
import torch.nn.functional as F

from sglang import kernels

HIDDEN, INTER, HEADS, KV_HEADS, HEAD_DIM = 4096, 14336, 32, 8, 128


class MicroBatch:
    """One micro-batch's inputs, KV view and attention workspace (never shared between streams)."""

    def __init__(self, rows: int, ctx: int, first_req: int, req_to_token: torch.Tensor,
                 dev: torch.device) -> None:
        dt = torch.bfloat16
        self.x = torch.randn(rows, HIDDEN, device=dev, dtype=dt) * 0.1
        self.req_pool = torch.arange(first_req, first_req + rows, device=dev, dtype=torch.int32)
        self.seq_lens = torch.full((rows,), ctx, device=dev, dtype=torch.int32)
        self.req_to_token = req_to_token
        self.splits = kernels.default_num_kv_splits(rows, KV_HEADS, dev)
        self.ws = kernels.DecodeWorkspace.allocate(rows, HEADS, HEAD_DIM, self.splits, dev)
        self.out = torch.empty(rows, HEADS, HEAD_DIM, device=dev, dtype=dt)


def green_stream(num_sms: int) -> tuple[object, torch.cuda.Stream]:
    """A stream whose kernels run on `num_sms` SMs only (a CUDA green context)."""
    from torch.cuda.green_contexts import GreenContext

    ctx = GreenContext.create(num_sms=num_sms, device_id=torch.cuda.current_device())
    if hasattr(ctx, "Stream"):
        return ctx, ctx.Stream()
    ctx.set_context()
    try:
        stream = torch.cuda.Stream()
    finally:
        ctx.pop_context()
    return ctx, stream


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=640)
    p.add_argument("--ctx", type=int, default=1024)
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--attn-sms", type=int, nargs="*", default=[32, 48, 64],
                   help="SMs given to attention in the split_sms variants")
    args = p.parse_args()
    dev = torch.device("cuda")
    dt = torch.bfloat16
    # One layer's weights and KV serve every layer: each is far larger than the L2.
    w_qkv = torch.randn(HIDDEN, (HEADS + 2 * KV_HEADS) * HEAD_DIM, device=dev, dtype=dt) * 0.02
    w_o = torch.randn(HEADS * HEAD_DIM, HIDDEN, device=dev, dtype=dt) * 0.02
    w_gu = torch.randn(HIDDEN, 2 * INTER, device=dev, dtype=dt) * 0.02
    w_down = torch.randn(INTER, HIDDEN, device=dev, dtype=dt) * 0.02
    slots = args.batch * args.ctx
    k_buf = torch.randn(slots, KV_HEADS, HEAD_DIM, device=dev, dtype=dt)
    v_buf = torch.randn(slots, KV_HEADS, HEAD_DIM, device=dev, dtype=dt)
    req_to_token = torch.arange(slots, device=dev, dtype=torch.int32).view(args.batch, args.ctx)
    scale = HEAD_DIM**-0.5

    def layer_gemms_pre(mb: MicroBatch) -> torch.Tensor:
        return (mb.x @ w_qkv)[:, : HEADS * HEAD_DIM].reshape(-1, HEADS, HEAD_DIM)

    def attend(mb: MicroBatch, q: torch.Tensor) -> None:
        kernels.decode_attention(q, k_buf, v_buf, mb.req_to_token, mb.req_pool, mb.seq_lens,
                                 mb.out, sm_scale=scale, num_kv_splits=mb.splits,
                                 workspace=mb.ws)

    def layer_gemms_post(mb: MicroBatch) -> None:
        h = mb.out.view(-1, HEADS * HEAD_DIM) @ w_o
        gu = h @ w_gu
        g, u = gu.chunk(2, dim=-1)
        _ = (F.silu(g) * u) @ w_down

    def timed(fn: Callable[[], None]) -> float:
        best = float("inf")
        for _ in range(args.reps + 1):  # the first is a warm-up
            torch.cuda.synchronize()
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            best = min(best, a.elapsed_time(b))
        return best

    whole = MicroBatch(args.batch, args.ctx, 0, req_to_token, dev)
    half = args.batch // 2
    mbs = [MicroBatch(half, args.ctx, 0, req_to_token, dev),
           MicroBatch(args.batch - half, args.ctx, half, req_to_token, dev)]
    streams = [torch.cuda.Stream(), torch.cuda.Stream()]

    def serial() -> None:
        for _ in range(args.layers):
            attend(whole, layer_gemms_pre(whole))
            layer_gemms_post(whole)

    def gemms_only(mb: MicroBatch) -> Callable[[], None]:
        def run() -> None:
            for _ in range(args.layers):
                layer_gemms_pre(mb)
                layer_gemms_post(mb)
        return run

    def attn_only(mb: MicroBatch) -> Callable[[], None]:
        q = layer_gemms_pre(mb)

        def run() -> None:
            for _ in range(args.layers):
                attend(mb, q)
        return run

    def overlapped(alternate: bool) -> Callable[[], None]:
        def run() -> None:
            main = torch.cuda.current_stream()
            for s in streams:
                s.wait_stream(main)
            turn: torch.cuda.Event | None = None  # the other micro-batch's last attention
            for _ in range(args.layers):
                for mb, s in zip(mbs, streams):
                    with torch.cuda.stream(s):
                        q = layer_gemms_pre(mb)
                        if alternate and turn is not None:
                            s.wait_event(turn)
                        attend(mb, q)
                        if alternate:
                            turn = torch.cuda.Event()
                            turn.record(s)
                        layer_gemms_post(mb)
            for s in streams:
                main.wait_stream(s)
        return run

    def split_sms(attn_stream: torch.cuda.Stream, gemm_stream: torch.cuda.Stream
                  ) -> Callable[[], None]:
        def run() -> None:
            main = torch.cuda.current_stream()
            attn_stream.wait_stream(main)
            gemm_stream.wait_stream(main)
            qs: list[torch.Tensor | None] = [None, None]
            attn_done: list[torch.cuda.Event | None] = [None, None]
            for layer in range(args.layers + 1):
                for i, mb in enumerate(mbs):
                    with torch.cuda.stream(gemm_stream):
                        if layer > 0:
                            gemm_stream.wait_event(attn_done[i])
                            layer_gemms_post(mb)
                        if layer == args.layers:
                            continue
                        qs[i] = layer_gemms_pre(mb)
                        ready = torch.cuda.Event()
                        ready.record(gemm_stream)
                    with torch.cuda.stream(attn_stream):
                        attn_stream.wait_event(ready)
                        attend(mb, qs[i])
                        attn_done[i] = torch.cuda.Event()
                        attn_done[i].record(attn_stream)
            main.wait_stream(gemm_stream)
            main.wait_stream(attn_stream)
        return run

    res: dict = {
        "batch": args.batch, "ctx": args.ctx, "layers": args.layers,
        "gemms_whole_ms": timed(gemms_only(whole)),
        "attn_whole_ms": timed(attn_only(whole)),
        "gemms_half_ms": timed(gemms_only(mbs[0])),
        "attn_half_ms": timed(attn_only(mbs[0])),
        "serial_ms": timed(serial),
        "two_streams_ms": timed(overlapped(False)),
        "alternating_ms": timed(overlapped(True)),
    }
    total_sms = torch.cuda.get_device_properties(dev).multi_processor_count
    for n in args.attn_sms:
        try:
            a_ctx, a_stream = green_stream(n)
            g_ctx, g_stream = green_stream(total_sms - n)
        except Exception as e:  # noqa: BLE001 -- report why the variant could not run
            res[f"split_sms_{n}"] = f"green contexts unavailable: {e!r}"
            continue
        res[f"split_sms_{n}_ms"] = timed(split_sms(a_stream, g_stream))
        with torch.cuda.stream(a_stream):
            res[f"attn_half_on_{n}_sms_ms"] = timed(attn_only(mbs[0]))
        with torch.cuda.stream(g_stream):
            res[f"gemms_half_on_{total_sms - n}_sms_ms"] = timed(gemms_only(mbs[0]))
        del a_ctx, g_ctx
    kv_bytes = 2 * args.batch * args.ctx * KV_HEADS * HEAD_DIM * 2 * args.layers
    res["attn_whole_TBps"] = kv_bytes / res["attn_whole_ms"] / 1e9
    res["ideal_ms"] = max(res["attn_whole_ms"], res["gemms_whole_ms"])
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
