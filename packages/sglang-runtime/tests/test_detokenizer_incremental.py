"""IncrementalDetokenizer decodes a window per step, yet streams exactly what decoding the whole
output at every step streamed: the same deltas, chunk for chunk, for any chunking of the tokens
(speculative steps emit several at once), through partial UTF-8 characters, tokenizers that
render a token differently at the start of a text, and stop-string hold-back."""

from __future__ import annotations

import random

import pytest
from engine_fixtures import GGUF_NAME, smollm2_folder

from sglang.protocol.sampling_params import SamplingParams
from sglang.runtime.detokenizer import IncrementalDetokenizer
from sglang.runtime.messages import FinishReason


class PieceTokenizer:
    """SentencePiece-like: "▁" marks a space, the text's leading space is dropped, and byte
    pieces <0x..> join into UTF-8 (an incomplete sequence decodes as U+FFFD). Records the
    length of every decode call."""

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces
        self.calls: list[int] = []

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        self.calls.append(len(ids))
        raw = b""
        for i in ids:
            p = self.pieces[i]
            raw += bytes([int(p[3:5], 16)]) if p.startswith("<0x") else p.encode()
        text = raw.decode("utf-8", errors="replace").replace("▁", " ")
        return text[1:] if text.startswith(" ") else text


PIECES = ["▁the", "▁cat", "sat", "▁on", ".", "▁mat", "<0xE2>", "<0x82>", "<0xAC>", "▁", "é",
          "<0xF0>", "<0x9F>", "<0x98>", "<0x80>", "\n", "▁▁", "xyz"]
EURO = [6, 7, 8]  # "€" as three byte pieces
SMILE = [11, 12, 13, 14]  # "😀" as four


def whole_decode_deltas(tok: object, ids: list[int], chunks: list[int], params: SamplingParams,
                        reason: FinishReason | None) -> list[str]:
    """The deltas of the former detokenizer: the whole output decoded at every step."""
    holdback = max((len(s) for s in params.stop_strs), default=1) - 1
    deltas, sent, end = [], 0, 0
    for i, n in enumerate(chunks):
        end += n
        whole = IncrementalDetokenizer(tok, params)
        whole.ids = list(ids[:end])
        if i == len(chunks) - 1:
            text = whole.final_text(reason)
        else:
            text = whole._decode(whole.ids).rstrip("\ufffd")
            if holdback:
                text = text[: max(len(text) - holdback, 0)]
        deltas.append(text[sent:] if len(text) > sent else "")
        sent = max(sent, len(text))
    return deltas


def windowed_deltas(tok: object, ids: list[int], chunks: list[int], params: SamplingParams,
                    reason: FinishReason | None) -> list[str]:
    det = IncrementalDetokenizer(tok, params)
    out, start = [], 0
    for i, n in enumerate(chunks):
        last = i == len(chunks) - 1
        out.append(det.add(ids[start : start + n], reason if last else None, last))
        start += n
    return out


def random_chunks(rng: random.Random, total: int) -> list[int]:
    chunks = []
    while total:
        n = min(total, rng.choice([1, 1, 1, 2, 3, 5]))
        chunks.append(n)
        total -= n
    return chunks


@pytest.mark.parametrize("seed", range(40))
def test_piece_tokenizer_streams_the_same_deltas(seed: int) -> None:
    rng = random.Random(seed)
    ids: list[int] = []
    while len(ids) < 60:
        ids += rng.choice([[rng.randrange(len(PIECES))], EURO, SMILE, EURO[:2], [0], [9, 2]])
    chunks = random_chunks(rng, len(ids))
    stops = rng.choice([[], ["mat"], ["cat sat", "é"]])
    params = SamplingParams(stop=stops or None)
    reason = FinishReason.at_length(len(ids))
    tok = PieceTokenizer(PIECES)
    want = whole_decode_deltas(tok, ids, chunks, params, reason)
    assert windowed_deltas(tok, ids, chunks, params, reason) == want
    assert "".join(want) == tok.decode(ids)


def test_steps_decode_a_window_not_the_whole_output() -> None:
    tok = PieceTokenizer(PIECES)
    ids = [0, 1, 2, 3, 0, 5, 4, 15] * 20
    det = IncrementalDetokenizer(tok, SamplingParams())
    for t in ids[:-1]:
        det.add([t], None, False)
    tok.calls.clear()
    det.add(ids[-1:], None, False)
    # The last step decoded its token and the one before, never the 160-token output.
    assert tok.calls and max(tok.calls) <= 2
    det.add([], FinishReason.at_length(len(ids)), True)


def test_window_falls_back_to_the_whole_output() -> None:
    """A tokenizer whose window text does not extend its context's: decoded whole, correctly."""

    class Odd(PieceTokenizer):
        def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
            text = super().decode(ids)
            return text.upper() if len(ids) % 2 else text

    tok = Odd(PIECES)
    ids = [0, 1, 2, 3, 0, 5]
    chunks = [1, 2, 1, 2]
    params = SamplingParams()
    reason = FinishReason.at_length(6)
    want = whole_decode_deltas(tok, ids, chunks, params, reason)
    assert windowed_deltas(tok, ids, chunks, params, reason) == want


@pytest.fixture(scope="module")
def smollm2_tokenizer() -> object:
    from sglang.runtime.loading.source import load_tokenizer

    return load_tokenizer(f"{smollm2_folder()}/{GGUF_NAME}")


TEXTS = [
    "The committee met on Tuesday.\n\n  def f(x):\n\treturn x ** 2  # squared",
    "Prix: 12,50 € — déjà vu, naïve café. 東京タワーは高い。 😀🎉 Ελληνικά",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>",
]


@pytest.mark.parametrize("seed", range(12))
def test_smollm2_streams_the_same_deltas(smollm2_tokenizer: object, seed: int) -> None:
    rng = random.Random(seed)
    tok = smollm2_tokenizer
    if seed < 6:
        ids = tok.encode(TEXTS[seed % len(TEXTS)])  # type: ignore[attr-defined]
    else:  # random tokens: byte pieces that rarely join into whole characters
        ids = [rng.randrange(49152) for _ in range(80)]
    chunks = random_chunks(rng, len(ids))
    params = SamplingParams(stop=["é"] if seed % 3 == 0 else None,
                            skip_special_tokens=seed % 2 == 0)
    reason = FinishReason.at_length(len(ids))
    want = whole_decode_deltas(tok, ids, chunks, params, reason)
    assert windowed_deltas(tok, ids, chunks, params, reason) == want
