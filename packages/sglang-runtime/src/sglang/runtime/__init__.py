"""The serving runtime: scheduler, KV cache, model runner, models and weight loading."""
