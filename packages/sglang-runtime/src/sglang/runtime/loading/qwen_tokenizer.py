"""Qwen (1)'s tokenizer without its remote code: a tiktoken BPE file (`qwen.tiktoken`, one
"base64-token rank" line per entry) rebuilt as a byte-level HF fast tokenizer, with Qwen's
split pattern and its special tokens numbered after the ranks."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

TIKTOKEN_FILE = "qwen.tiktoken"
# tokenization_qwen.py's pattern (single digits, unlike GPT-4's \p{N}{1,3}).
PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
           r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
ENDOFTEXT = "<|endoftext|>"
SPECIAL = [ENDOFTEXT, "<|im_start|>", "<|im_end|>", *(f"<|extra_{i}|>" for i in range(205))]


def read_ranks(path: Path) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    # A token of n bytes came from joining two ranked pieces; in doubt every such split is
    # listed, lower-ranked pieces first, in the order of the merged token's rank.
    found: list[tuple[int, int, int, bytes, bytes]] = []
    for token, rank in ranks.items():
        for i in range(1, len(token)):
            left, right = token[:i], token[i:]
            if left in ranks and right in ranks:
                found.append((rank, ranks[left], ranks[right], left, right))
    return [(left, right) for *_, left, right in sorted(found)]


def qwen_tokenizer(folder: Path) -> Any:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    ranks = read_ranks(folder / TIKTOKEN_FILE)
    to_char = bytes_to_unicode()

    def text(b: bytes) -> str:
        return "".join(to_char[x] for x in b)

    vocab = {text(token): rank for token, rank in ranks.items()}
    merges = [(text(a), text(b)) for a, b in _merges(ranks)]
    tok = Tokenizer(models.BPE(vocab, merges, fuse_unk=False, ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    first = len(ranks)
    for i, special in enumerate(SPECIAL):
        tok.add_special_tokens([special])
        if tok.token_to_id(special) != first + i:
            raise ValueError(f"{TIKTOKEN_FILE}: ranks are not 0..{first - 1}")
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=ENDOFTEXT, pad_token=ENDOFTEXT)
