"""The reasoning gate (`SamplingParams.constraint_after`): the grammar is inactive, every token
allowed, until the output contains the gate's text; then the grammar constrains what follows.
Unit tests over a scripted matcher, then the Engine on SmolLM2 with both grammar backends."""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch

from sglang.runtime.grammar.base import Matcher
from sglang.runtime.grammar.bitmask import unpack_bitmask
from sglang.runtime.grammar.reasoning_gate import ReasoningGate

# Token id -> bytes for the unit tests: the tag "</think>" is split over three tokens.
VOCAB = [b"a", b"b", b"</", b"think", b">", b"\n", b"x", b"y"]


class _Recorder(Matcher):
    """Allows only token 6 ("x"); records what it accepted."""

    def __init__(self) -> None:
        self.accepted: list[int] = []

    def fill_mask(self, bitmask: torch.Tensor, row: int) -> None:
        bitmask[row].zero_()
        bitmask[row, 0] = 1 << 6

    def accept(self, token: int) -> bool:
        if token != 6:
            return False
        self.accepted.append(token)
        return True

    def is_terminated(self) -> bool:
        return len(self.accepted) >= 2

    def forced_string(self) -> str:
        return "xx"

    def rollback(self, num_tokens: int) -> None:
        del self.accepted[len(self.accepted) - num_tokens:]


def _allowed(m: Matcher) -> list[bool]:
    bitmask = torch.zeros(1, 1, dtype=torch.int32)
    m.fill_mask(bitmask, 0)
    return unpack_bitmask(bitmask, len(VOCAB))[0].tolist()


def test_gate_is_free_until_the_tag_then_delegates() -> None:
    inner = _Recorder()
    gate = ReasoningGate(inner, "</think>", VOCAB)
    assert all(_allowed(gate)) and gate.forced_string() == "" and not gate.is_terminated()
    for tok in (0, 1, 2, 3):  # "ab</think" : the tag is not complete yet
        assert gate.accept(tok)
        assert all(_allowed(gate))
    assert inner.accepted == []
    assert gate.accept(4)  # ">" completes the tag
    assert _allowed(gate) == [i == 6 for i in range(len(VOCAB))]
    assert gate.forced_string() == "xx"
    assert not gate.accept(7)  # the grammar now refuses "y"
    assert gate.accept(6) and gate.accept(6) and gate.is_terminated()
    assert inner.accepted == [6, 6]


def test_gate_rollback_across_the_opening() -> None:
    inner = _Recorder()
    gate = ReasoningGate(inner, "</think>", VOCAB)
    for tok in (2, 3, 4, 6):
        assert gate.accept(tok)
    gate.rollback(1)  # only the grammar's token
    assert gate.open and inner.accepted == []
    gate.rollback(1)  # back before the ">": free again
    assert not gate.open and all(_allowed(gate))
    assert gate.accept(4) and gate.open


@pytest.mark.parametrize("backend_name", ["xgrammar", "outlines"])
def test_engine_constrains_only_after_the_gate_text(engine: Any, backend_name: str) -> None:
    """SmolLM2 never writes </think>, so the gate text is taken from its own free greedy
    output: with the gate, the output must repeat that free text up to the gate and then match
    the regex; without the gate the regex applies from the first token."""
    from sglang.runtime.grammar.manager import GrammarManager

    prompt = "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"
    free = engine.generate(prompt, {"temperature": 0, "max_new_tokens": 8})
    ids = free["output_ids"]
    tokenizer = engine.runtime.tokenizer
    gate_text = tokenizer.decode(ids[:3])
    assert gate_text and gate_text in free["text"]
    regex = r"[0-9]{3}"

    sched = engine.runtime.scheduler
    default = sched.grammar
    if backend_name != default.backend_name:
        vocab = default.vocab
        swapped = GrammarManager(backend_name, vocab.tokenizer, vocab.vocab_size,
                                 set(vocab.eos_ids))
        engine._call(lambda s: setattr(s, "grammar", swapped))
    try:
        gated, plain = engine.generate([prompt, prompt], [
            {"temperature": 0, "max_new_tokens": 16, "regex": regex,
             "constraint_after": gate_text},
            {"temperature": 0, "max_new_tokens": 16, "regex": regex},
        ])
    finally:
        engine._call(lambda s: setattr(s, "grammar", default))
        engine.check_integrity()
    assert gated["output_ids"][:3] == ids[:3]
    head, sep, tail = gated["text"].partition(gate_text)
    assert sep and head == ""
    assert re.fullmatch(regex, tail), gated["text"]
    assert re.fullmatch(regex, plain["text"]), plain["text"]
