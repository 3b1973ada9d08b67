"""A backend over an offline `sgl.Engine` in this process: the native /generate requests of
`RuntimeEndpoint`, handed to `Engine.generate` instead of sent over HTTP.

The engine is duck-typed (this package never imports the runtime): anything with the Engine's
`generate(prompt=..., sampling_params=..., image_data=..., ...)` and `flush_cache()` works.
`sgl.set_default_backend(engine)` and `run(backend=engine)` wrap an Engine in this backend."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sglang.lang.backend.base import Context, GenParams
from sglang.lang.backend.media_fields import media_fields
from sglang.lang.backend.runtime_endpoint import RuntimeEndpoint
from sglang.lang.chat_template import PLAIN, ChatTemplate

# /generate body keys and the Engine.generate argument each one is.
_ENGINE_ARGS = {
    "text": "prompt", "input_ids": "input_ids", "sampling_params": "sampling_params",
    "return_logprob": "return_logprob", "logprob_start_len": "logprob_start_len",
    "top_logprobs_num": "top_logprobs_num", "return_text_in_logprobs": "return_text_in_logprobs",
    "image_data": "image_data", "video_data": "video_data", "stream": "stream",
}


def looks_like_engine(obj: Any) -> bool:
    return callable(getattr(obj, "generate", None)) and callable(getattr(obj, "flush_cache", None))


class EngineBackend(RuntimeEndpoint):
    """sgl programs on an offline Engine: generation, select (prompt logprobs), fork's prefix
    caching, run_batch, and sgl.image / sgl.video (images and videos go as the Engine takes
    them: paths and bytes as they are, with no base64 round trip)."""

    def __init__(self, engine: Any, chat_template: ChatTemplate | None = None) -> None:
        super().__init__("http://engine.invalid", timeout=None)  # the HTTP client stays unused
        self.engine = engine
        self._chat_template = chat_template or PLAIN

    def _call(self, body: dict[str, Any]) -> Any:
        unknown = set(body) - set(_ENGINE_ARGS)
        if unknown:
            raise ValueError(f"the Engine takes no {', '.join(sorted(unknown))}")
        return self.engine.generate(**{_ENGINE_ARGS[k]: v for k, v in body.items()})

    def _generate(self, body: dict[str, Any]) -> Any:
        data = self._call(body)
        for item in data if isinstance(data, list) else [data]:
            self._count(item.get("meta_info") or {})
        return data

    def generate_stream(
        self, ctx: Context, params: GenParams
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        meta: dict[str, Any] = {}
        for chunk in self._call({"text": ctx.text, "sampling_params": self._sampling_params(params),
                                 "stream": True, **self._media(ctx.media)}):
            meta = chunk.get("meta_info") or {}
            yield chunk["text"], meta  # the Engine's chunks carry only the new text
        self._count(meta)

    def _media(self, media: list[dict[str, Any]] | None) -> dict[str, Any]:
        # In-process: paths and bytes go as they are, with no base64 round trip.
        return media_fields(media, portable=False)

    def get_model_info(self) -> dict[str, Any]:
        return {"model_path": getattr(getattr(self.engine, "args", None), "model_path", None)}

    def get_chat_template(self) -> ChatTemplate:
        return self._chat_template  # type: ignore[return-value]

    def get_server_args(self) -> dict[str, Any]:
        return {}

    def flush_cache(self) -> bool:
        return bool(self.engine.flush_cache())

    def shutdown(self) -> None:
        """The engine belongs to the caller, who shuts it down."""
        self._client.close()


__all__ = ["EngineBackend", "looks_like_engine"]
