import sys, time, tempfile
sys.path.insert(0, "packages/sglang-runtime/tests")
import torch, transformers
from batch_helpers import ToyKV, make_runner
from sglang.runtime.loading.loader import load_model
cfg = transformers.LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=4, num_attention_heads=32,
                               num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192, architectures=["LlamaForCausalLM"])
d = tempfile.mkdtemp(); cfg.save_pretrained(d)
lm = load_model(d, load_format="dummy", device="cuda")
B = 64
kv = ToyKV(lm.config, max_reqs=B, max_context=600, dtype=torch.bfloat16, device="cuda")
r = make_runner(lm.model, kv)
r.forward(kv.extend(list(range(B)), [[1] * 512 for _ in range(B)]))
batches = [kv.decode(list(range(B)), [2] * B) for _ in range(13)]
torch.cuda.synchronize()
for b in batches[:3]: r.forward(b)
torch.cuda.synchronize(); t = time.time()
for b in batches[3:]: r.forward(b)
torch.cuda.synchronize(); print("decode only:", (time.time() - t) / 10 * 1e3, "ms/step")
from torch.profiler import profile, ProfilerActivity
b2 = [kv.decode(list(range(B)), [2] * B) for _ in range(3)]
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
    for b in b2: r.forward(b)
    torch.cuda.synchronize()
print(p.key_averages().table(sort_by="cuda_time_total", row_limit=12))
print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))
