"""sglang.server: the HTTP server — FastAPI app, tokenizer manager, detokenizer process,
OpenAI-compatible routes and chat templates. Start it with ``python -m sglang.launch_server``.
"""

__version__ = "0.1.0"
