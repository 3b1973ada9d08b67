"""Weight loading: HF safetensors folders, GGUF files, dummy weights."""
