"""The reasoning parser on recorded outputs of each format: whole-text splits, and streamed splits
cut at every position (and into every pair of pieces for the short ones) that must add up to the
whole-text split, with no tag ever leaking into either field."""

from __future__ import annotations

import random

import pytest

from sglang.protocol.reasoning import (
    REASONING_FORMATS,
    ReasoningParser,
    reasoning_format,
    split_reasoning,
)

# (format, in_reasoning, thinking, recorded output, expected reasoning, expected content)
RECORDED = [
    # Qwen3 with thinking: the model opens and closes the block itself.
    ("qwen3", False, True,
     "<think>\nThe user asks for 2+2. That is 4.\n</think>\n\nThe answer is **4**.",
     "The user asks for 2+2. That is 4.", "The answer is **4**."),
    # Qwen3 answering without a block (a hybrid model deciding not to think).
    ("qwen3", False, True, "Paris is the capital of France.", None,
     "Paris is the capital of France."),
    # enable_thinking=False: no reasoning expected, even text that looks like a tag is content.
    ("qwen3", False, False, "<think>\n\n</think>\n\nHi", None, "<think>\n\n</think>\n\nHi"),
    # DeepSeek-R1: the template opened <think>; the output starts inside the reasoning.
    ("deepseek-r1", False, True,
     "Okay, so 3 < 4 and 4 > 3: </thin is not a tag.\n</think>\n\n3 < 4.",
     "Okay, so 3 < 4 and 4 > 3: </thin is not a tag.", "3 < 4."),
    # DeepSeek-R1-0528 writes the opening tag too.
    ("deepseek-r1", False, True, "<think>\nhmm\n</think>\n\nok", "hmm", "ok"),
    # The reasoning never closed (max_tokens): all of it is reasoning, trailing partial tag too.
    ("deepseek-r1", False, True, "Let me think about this carefully\n\n</thi",
     "Let me think about this carefully\n\n</thi", ""),
    # A Qwen3 template that ends the prompt with "<think>\n" (in_reasoning).
    ("qwen3", True, True, "step one\nstep two\n</think>\n\n{\"a\": 1}",
     "step one\nstep two", "{\"a\": 1}"),
    ("qwen3-thinking", False, True, "a</think>b", "a", "b"),
    ("deepseek-v3", False, True, "<think>x</think>y", "x", "y"),
    ("kimi", False, True, "◁think▷深思熟虑◁/think▷答案：42", "深思熟虑", "答案：42"),
    # Content keeps its own trailing whitespace and inner tags after the block.
    ("qwen3", False, True, "<think>a</think> b <think>c</think>\n", "a",
     "b <think>c</think>\n"),
    # Nothing but whitespace before the output ends.
    ("qwen3", False, True, "  \n", None, "  \n"),
]


def _stream(fmt: str, in_reasoning: bool, thinking: bool, pieces: list[str]) -> tuple[str, str]:
    parser = ReasoningParser(reasoning_format(fmt), in_reasoning, thinking)
    reasoning, content = "", ""
    for piece in pieces:
        r, c = parser.feed(piece)
        reasoning, content = reasoning + r, content + c
    r, c = parser.finish()
    return reasoning + r, content + c


@pytest.mark.parametrize("case", RECORDED, ids=lambda c: f"{c[0]}:{c[3][:16]!r}")
def test_whole_text_split(case: tuple) -> None:
    fmt, in_reasoning, thinking, text, reasoning, content = case
    assert split_reasoning(text, reasoning_format(fmt), in_reasoning, thinking) == \
        (reasoning, content)


@pytest.mark.parametrize("case", RECORDED, ids=lambda c: f"{c[0]}:{c[3][:16]!r}")
def test_every_split_position_streams_the_same(case: tuple) -> None:
    fmt, in_reasoning, thinking, text, reasoning, content = case
    want = (reasoning or "", content)
    for i in range(len(text) + 1):
        assert _stream(fmt, in_reasoning, thinking, [text[:i], text[i:]]) == want, i
    if len(text) <= 40:  # every pair of cuts: a tag split over three deltas
        for i in range(len(text) + 1):
            for j in range(i, len(text) + 1):
                pieces = [text[:i], text[i:j], text[j:]]
                assert _stream(fmt, in_reasoning, thinking, pieces) == want, (i, j)
    assert _stream(fmt, in_reasoning, thinking, list(text)) == want  # one character a delta


def test_random_cuts_never_leak_tags() -> None:
    rng = random.Random(0)
    text = "<think>\n" + "reasoning < > </ / think " * 20 + "\n</think>\n\n" + "answer " * 20
    for _ in range(200):
        cuts = sorted(rng.sample(range(len(text)), rng.randint(1, 30)))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
        parser = ReasoningParser(reasoning_format("qwen3"))
        for piece in pieces:
            r, c = parser.feed(piece)
            assert "</think>" not in r and "<think>" not in c and "</think>" not in c
            assert not (r and c and not parser.reasoning_done)
        assert parser.reasoning_done


def test_reasoning_deltas_come_before_content() -> None:
    text = "<think>\nabc def\n</think>\n\nxyz uvw"
    parser = ReasoningParser(reasoning_format("qwen3"))
    kinds = []
    for ch in text:
        r, c = parser.feed(ch)
        kinds += ["r"] * bool(r) + ["c"] * bool(c)
    assert kinds and kinds == sorted(kinds, reverse=True)  # all "r" then all "c"


def test_unknown_parser_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="qwen3"):
        reasoning_format("nope")
    assert {"deepseek-r1", "qwen3"} <= set(REASONING_FORMATS)


def test_thinking_switch() -> None:
    qwen3, v3, r1 = (reasoning_format(n) for n in ("qwen3", "deepseek-v3", "deepseek-r1"))
    assert qwen3.thinking(None) and not qwen3.thinking({"enable_thinking": False})
    assert not v3.thinking({}) and v3.thinking({"thinking": True})
    assert r1.thinking({"enable_thinking": False})  # R1 always reasons
