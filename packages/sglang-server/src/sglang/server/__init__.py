"""sglang.server: the HTTP server (FastAPI app, tokenizer manager, detokenizer, OpenAI adapter,
chat templates). Not implemented yet; ``python -m sglang.launch_server`` is a placeholder.
"""

__version__ = "0.1.0"
