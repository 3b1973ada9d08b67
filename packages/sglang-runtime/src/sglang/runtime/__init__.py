"""The serving runtime: scheduler, KV cache, model runner, models and weight loading."""

# The modules other packages (the server above all) may import; everything else in the runtime
# is internal and may move. packages/sglang-server/tests/test_import_graph.py holds the server
# to this list.
PUBLIC_MODULES: tuple[str, ...] = (
    "sglang.runtime.arg_fields",
    "sglang.runtime.config",
    "sglang.runtime.detokenizer",
    "sglang.runtime.engine",
    "sglang.runtime.inputs",
    "sglang.runtime.loading",
    "sglang.runtime.messages",
    "sglang.runtime.multimodal",
    "sglang.runtime.plugins",
    "sglang.runtime.procs",
    "sglang.runtime.result",
)
