"""Model execution: forward context and the model runner."""
