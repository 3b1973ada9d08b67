"""The detokenizer process's message table, without sockets or a real tokenizer: echoes register
requests, output batches leave with text, control replies go through byte for byte."""

from __future__ import annotations

from typing import Any, get_args

import msgspec

from sglang.protocol.sampling_params import SamplingParams
from sglang.runtime.messages import (
    DetokOutputBatch,
    FlushCacheResult,
    IntegrityResult,
    SchedulerOutput,
    TokenizedGenerateReq,
    TokenizerManagerInput,
    TokenOutput,
    TokenOutputBatch,
)
from sglang.server.detokenizer_process import DetokenizerLoop

BAD_ID = 999


class LetterTokenizer:
    """Token id i is the letter chr(ord('a') + i); BAD_ID cannot be decoded."""

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        if BAD_ID in ids:
            raise IndexError(f"token id {BAD_ID} out of range")
        return "".join(chr(ord("a") + i) for i in ids)


class RecordingPush:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: Any, copy: bool = True) -> None:
        self.sent.append(bytes(data))


def feed(loop: DetokenizerLoop, *msgs: Any) -> None:
    enc = msgspec.msgpack.Encoder()
    for msg in msgs:
        raw = enc.encode(msg)
        decoded = loop.decoder.decode(raw)
        loop.handlers[type(decoded)](decoded, raw)


def test_every_scheduler_output_type_has_one_handler() -> None:
    loop = DetokenizerLoop(LetterTokenizer(), None, RecordingPush(), 0)
    assert set(loop.handlers) == set(get_args(SchedulerOutput))


def test_outputs_get_text_and_control_replies_pass_through() -> None:
    push = RecordingPush()
    loop = DetokenizerLoop(LetterTokenizer(), None, push, 0)
    reply = FlushCacheResult(success=True, message="cache flushed")
    feed(
        loop,
        TokenizedGenerateReq(rid="r", input_ids=[], sampling_params=SamplingParams()),
        TokenOutputBatch(outputs=[TokenOutput(rid="r", new_token_ids=[0, 1])]),
        reply,
        TokenOutputBatch(outputs=[TokenOutput(rid="r", new_token_ids=[2], finished=True)]),
    )
    assert push.sent[1] == msgspec.msgpack.encode(reply)
    dec = msgspec.msgpack.Decoder(TokenizerManagerInput)
    first, _, last = (dec.decode(b) for b in push.sent)
    assert isinstance(first, DetokOutputBatch) and isinstance(last, DetokOutputBatch)
    text = "".join(o.text for o in first.outputs + last.outputs)
    assert text == "abc" and last.outputs[0].finished
    assert "r" not in loop.state.detoks  # gone with the final output


def test_a_request_that_fails_to_detokenize_fails_alone() -> None:
    push = RecordingPush()
    loop = DetokenizerLoop(LetterTokenizer(), None, push, 0)
    params = SamplingParams()
    feed(
        loop,
        TokenizedGenerateReq(rid="bad", input_ids=[], sampling_params=params),
        TokenizedGenerateReq(rid="good", input_ids=[], sampling_params=params),
        TokenOutputBatch(outputs=[TokenOutput(rid="bad", new_token_ids=[BAD_ID]),
                                  TokenOutput(rid="good", new_token_ids=[3])]),
        IntegrityResult(ok=True),
    )
    dec = msgspec.msgpack.Decoder(TokenizerManagerInput)
    batch, integrity = (dec.decode(b) for b in push.sent)
    bad, good = batch.outputs
    assert bad.finished and bad.error and bad.finish_reason.status_code == 500
    assert good.text == "d" and good.error is None
    assert isinstance(integrity, IntegrityResult) and integrity.ok
