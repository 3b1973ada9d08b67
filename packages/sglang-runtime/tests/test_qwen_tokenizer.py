"""Qwen (1)'s `qwen.tiktoken` read without remote code: ids equal a plain tiktoken-style BPE
(lowest-ranked adjacent pair merged first, within each piece of Qwen's split pattern) written
here independently; special tokens numbered after the ranks; the loader picks it up."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import pytest
import regex

from sglang.runtime.loading.qwen_tokenizer import PATTERN, SPECIAL, qwen_tokenizer
from sglang.runtime.loading.source import load_tokenizer

sys.path.insert(0, str(Path(__file__).parent))

MERGED = [b"th", b"he", b"the", b" t", b" the", b"in", b"ing", b"an", b"and", b" a", b"12",
          b"on", b"'t", b"\n\n", b"me", b"th" + b"in", b"hing", b"thing"]
TEXTS = ["the theme and thing in the hand 123 don't\n\nok", "anding1212 thethe", "Ünïcode ✓"]


def _ranks() -> dict[bytes, int]:
    ranks = {bytes([i]): i for i in range(256)}
    for token in MERGED:
        ranks.setdefault(token, len(ranks))
    return ranks


def _bpe(piece: bytes, ranks: dict[bytes, int]) -> list[int]:
    if piece in ranks:  # tiktoken emits a ranked piece whole
        return [ranks[piece]]
    parts = [piece[i : i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        pairs = [(ranks.get(a + b), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
        rank, i = min((r, i) for r, i in pairs if r is not None) if any(
            r is not None for r, _ in pairs) else (None, -1)
        if rank is None:
            break
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return [ranks[p] for p in parts]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("qwen_tok")
    lines = [f"{base64.b64encode(t).decode()} {r}" for t, r in _ranks().items()]
    (folder / "qwen.tiktoken").write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.parametrize("text", TEXTS)
def test_ids_match_rank_greedy_bpe(folder: Path, text: str) -> None:
    ranks = _ranks()
    want = [i for piece in regex.findall(PATTERN, text)
            for i in _bpe(piece.encode(), ranks)]
    tok = qwen_tokenizer(folder)
    assert tok(text)["input_ids"] == want
    assert tok.decode(want) == text


def test_special_tokens_and_loader(folder: Path) -> None:
    tok = load_tokenizer(folder)
    n = len(_ranks())
    ids = tok("<|im_start|>the<|im_end|><|endoftext|>")["input_ids"]
    assert ids == [n + 1, _ranks()[b"the"], n + 2, n]
    assert tok.convert_tokens_to_ids(SPECIAL[-1]) == n + len(SPECIAL) - 1
    assert tok.eos_token_id == n


def test_qwen_config_takes_eos_from_the_tokenizer(folder: Path) -> None:
    import json

    from qwen1_reference import RAW_CONFIG

    from sglang.runtime.loading.loader import load_model_config

    (folder / "config.json").write_text(json.dumps(RAW_CONFIG))
    n = len(_ranks())
    # <|endoftext|> and <|im_end|>: config.json names none.
    assert load_model_config(str(folder)).eos_token_ids == (n, n + 2)
