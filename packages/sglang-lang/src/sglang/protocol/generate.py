"""The native `/generate` request body, shared by the frontend (client) and the server."""

from __future__ import annotations

from typing import Any

import msgspec

from sglang.protocol.errors import InvalidRequest
from sglang.protocol.media import media_per_prompt

__all__ = ["GenerateReqInput", "InvalidRequest"]


class GenerateReqInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One prompt or a batch. Exactly one of `text` / `input_ids` is given; `sampling_params` is
    one dict for all prompts or a list with one per prompt."""

    text: str | list[str] | None = None
    # One prompt's ids or a list of them. msgspec allows one array type per union, so the two
    # shapes share `list[int | list[int]]` and `validate` rejects a mix.
    input_ids: list[int | list[int]] | None = None
    sampling_params: dict[str, Any] | list[dict[str, Any]] | None = None
    rid: str | list[str] | None = None
    return_logprob: bool = False
    logprob_start_len: int = -1
    top_logprobs_num: int = 0
    return_text_in_logprobs: bool = False
    stream: bool = False
    # SGLang's media fields: for one prompt a reference (path, URL, base64, data URI) or a list
    # of them; for a batch one entry per prompt (a reference, a list, or null).
    image_data: str | list[str | list[str] | None] | None = None
    # A video entry may also be {"url": <reference>, "num_frames": N} (sglang.protocol.media).
    video_data: (
        str | dict[str, Any] | list[str | dict[str, Any] | list[str | dict[str, Any]] | None]
        | None
    ) = None

    @property
    def is_batch(self) -> bool:
        if self.text is not None:
            return isinstance(self.text, list)
        return bool(self.input_ids) and isinstance(self.input_ids[0], list)  # type: ignore[index]

    @property
    def batch_size(self) -> int:
        if not self.is_batch:
            return 1
        return len(self.text if self.text is not None else self.input_ids)  # type: ignore[arg-type]

    def validate(self) -> None:
        """Raise ValueError naming the offending field."""
        if (self.text is None) == (self.input_ids is None):
            raise InvalidRequest("give exactly one of 'text' or 'input_ids'")
        if self.input_ids:
            nested = [isinstance(x, list) for x in self.input_ids]
            if any(nested) and not all(nested):
                raise InvalidRequest(
                    "'input_ids' must be a list of token ids or a list of such lists, not a mix",
                    "input_ids",
                )
        if self.is_batch and self.batch_size == 0:
            raise InvalidRequest("'text'/'input_ids' is an empty batch", "text")
        if isinstance(self.sampling_params, list) and len(self.sampling_params) != self.batch_size:
            raise InvalidRequest(
                f"'sampling_params' has {len(self.sampling_params)} entries for "
                f"{self.batch_size} prompts",
                "sampling_params",
            )
        if isinstance(self.rid, list) and len(self.rid) != self.batch_size:
            raise InvalidRequest(
                f"'rid' has {len(self.rid)} entries for {self.batch_size} prompts", "rid"
            )
        for field in ("image_data", "video_data"):
            try:
                media_per_prompt(getattr(self, field), self.batch_size, self.is_batch, field)
            except ValueError as e:
                raise InvalidRequest(str(e), field) from e
        if self.top_logprobs_num < 0:
            raise InvalidRequest(
                f"'top_logprobs_num' must be >= 0, got {self.top_logprobs_num}", "top_logprobs_num"
            )
        if self.logprob_start_len < -1:
            raise InvalidRequest(
                f"'logprob_start_len' must be >= -1, got {self.logprob_start_len}",
                "logprob_start_len",
            )

    def split(self) -> list[GenerateReqInput]:
        """One single-prompt request per prompt of a batch."""
        if not self.is_batch:
            return [self]
        out = []
        for i in range(self.batch_size):
            sp = self.sampling_params
            out.append(msgspec.structs.replace(
                self,
                text=self.text[i] if self.text is not None else None,  # type: ignore[index]
                input_ids=self.input_ids[i] if self.input_ids is not None else None,  # type: ignore[index]
                sampling_params=sp[i] if isinstance(sp, list) else sp,
                rid=self.rid[i] if isinstance(self.rid, list) else None,
                image_data=self.image_data[i] if isinstance(self.image_data, list) else None,  # type: ignore[arg-type]
                video_data=self.video_data[i] if isinstance(self.video_data, list) else None,  # type: ignore[arg-type]
            ))
        return out
