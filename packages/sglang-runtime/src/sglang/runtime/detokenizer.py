"""Token ids to text, incrementally: streamed deltas always join into the final text."""

from __future__ import annotations

from typing import Any

from sglang.protocol.sampling_params import SamplingParams
from sglang.runtime.messages import FinishReason
from sglang.runtime.stop_regex import trim_at_stop_regex


class IncrementalDetokenizer:
    """Decodes one request's output and hands out text not sent before.

    Held back until more tokens arrive: a trailing incomplete UTF-8 sequence (decoded as U+FFFD),
    and the last len(stop)-1 characters, which may turn out to start a stop string that the final
    text trims away.

    Each step decodes a window, not the whole output (which would cost O(length) per step): the
    tokens since the last complete text, behind the tokens of the step before as context (a
    tokenizer may render a token differently at the start of a text, e.g. SentencePiece drops
    its leading space). The new text is what the window adds to its context; when the window
    does not extend its context's text, the whole output is decoded instead. The final text
    is always the whole output decoded.
    """

    def __init__(self, tokenizer: Any, params: SamplingParams) -> None:
        self.tokenizer = tokenizer
        self.params = params
        self.ids: list[int] = []
        self.sent = 0
        # The text of ids[:_read], complete (no trailing partial character); ids[_context:_read]
        # are the window's context.
        self._text = ""
        self._context = 0
        self._read = 0
        self._holdback = max((len(s) for s in params.stop_strs), default=1) - 1

    def _decode(self, ids: list[int]) -> str:
        if self.tokenizer is None:  # dummy weights without a tokenizer: ids only, no text
            return ""
        return self.tokenizer.decode(ids, skip_special_tokens=self.params.skip_special_tokens)

    def final_text(self, finish_reason: FinishReason | None) -> str:
        if finish_reason is None or finish_reason.type != "stop" or self.params.no_stop_trim:
            return self._decode(self.ids)
        matched = finish_reason.matched
        if isinstance(matched, int):
            return self._decode(self.ids[:-1])
        text = self._decode(self.ids)
        if not isinstance(matched, str):
            return text
        if matched not in self.params.stop_strs:
            trimmed = trim_at_stop_regex(text, matched, self.params.stop_regex_list)
            if trimmed is not None:
                return trimmed
        if matched in text:
            return text[: text.index(matched)]
        return text

    def add(self, new_ids: list[int], finish_reason: FinishReason | None, finished: bool) -> str:
        """Append tokens; return the text delta that is now safe to show."""
        self.ids.extend(new_ids)
        if finished:
            text = self.final_text(finish_reason)
        else:
            text = self._text_so_far().rstrip("\ufffd")
            if self._holdback:
                text = text[: max(len(text) - self._holdback, 0)]
        if len(text) <= self.sent:
            return ""
        delta = text[self.sent :]
        self.sent = len(text)
        return delta

    def _text_so_far(self) -> str:
        """decode(ids), from the window; complete text moves the window on."""
        context = self._decode(self.ids[self._context : self._read])
        window = self._decode(self.ids[self._context :])
        if not window.startswith(context):
            return self._decode(self.ids)
        text = self._text + window[len(context) :]
        if not text.endswith("\ufffd"):
            self._text, self._context, self._read = text, self._read, len(self.ids)
        return text
