"""The one result accumulator (runtime/result.py) and the typed finish reason."""

from __future__ import annotations

import msgspec
import pytest

from sglang.protocol.sampling_params import SamplingParams
from sglang.runtime.messages import FinishReason, TokenOutput
from sglang.runtime.result import ResultAccumulator


class CharTokenizer:
    """Token id i is chr(ord('a') + i)."""

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(ord("a") + i) for i in ids)


class TextOutput(TokenOutput, kw_only=True, tag=True):
    """Stands in for the server's DetokOutput: text arrives with the ids."""

    text: str = ""


@pytest.mark.parametrize(("reason", "expected"), [
    (FinishReason.at_length(7), {"type": "length", "length": 7}),
    (FinishReason.stop(5), {"type": "stop", "matched": 5}),
    (FinishReason.stop("\n"), {"type": "stop", "matched": "\n"}),
    (FinishReason.stop(None), {"type": "stop", "matched": None}),
    (FinishReason.abort("gone"), {"type": "abort", "message": "gone"}),
    (FinishReason.abort("bad", 400), {"type": "abort", "message": "bad", "status_code": 400}),
])
def test_finish_reason_dicts_are_unchanged(reason: FinishReason, expected: dict) -> None:
    assert reason.to_dict() == expected
    wire = msgspec.msgpack.decode(msgspec.msgpack.encode(reason), type=FinishReason)
    assert wire == reason


def _outputs() -> list[TokenOutput]:
    return [
        TokenOutput(rid="r", new_token_ids=[0, 1], prompt_tokens=3, completion_tokens=2,
                    output_token_logprobs=[(-0.5, 0), (-1.0, 1)],
                    input_token_logprobs=[(None, 7), (-2.0, 8), (-4.0, 9)],
                    input_top_logprobs=[None, None, None]),
        TokenOutput(rid="r", new_token_ids=[2], prompt_tokens=3, completion_tokens=3,
                    finished=True, finish_reason=FinishReason.at_length(3),
                    output_token_logprobs=[(-0.25, 2)]),
    ]


def test_engine_mode_detokenizes_and_streams_deltas() -> None:
    acc = ResultAccumulator("r", SamplingParams(), CharTokenizer(), return_logprob=True,
                            with_text=True, detokenize=True)
    chunks = [acc.delta_chunk(acc.fold(o)) for o in _outputs()]
    assert [c["text"] for c in chunks] == ["ab", "c"]
    assert [c["output_ids"] for c in chunks] == [[0, 1], [2]]
    assert chunks[1]["meta_info"]["output_token_logprobs"] == [(-0.25, 2, "c")]
    final = acc.result()
    assert final["text"] == "abc" and final["output_ids"] == [0, 1, 2]
    meta = final["meta_info"]
    assert meta["finish_reason"] == {"type": "length", "length": 3}
    assert meta["output_token_logprobs"] == [(-0.5, 0, "a"), (-1.0, 1, "b"), (-0.25, 2, "c")]
    assert meta["normalized_prompt_logprob"] == pytest.approx(-3.0)
    assert (meta["prompt_tokens"], meta["completion_tokens"]) == (3, 3)


def test_server_mode_takes_text_and_gives_cumulative_chunks() -> None:
    acc = ResultAccumulator("r", SamplingParams(), None)
    outs = [TextOutput(**msgspec.structs.asdict(o), text=t) for o, t in zip(_outputs(), "xy")]
    chunks = [acc.cumulative_chunk(acc.fold(o)) for o in outs]
    assert [(c["text"], c["delta"], c["output_ids"]) for c in chunks] == [
        ("x", "x", [0, 1]), ("xy", "y", [0, 1, 2])]
    assert "output_token_logprobs" not in chunks[-1]["meta_info"]
    assert acc.finished and acc.error is None


def test_error_output_finishes_with_error() -> None:
    acc = ResultAccumulator("r", SamplingParams(), None, detokenize=True)
    acc.fold(TokenOutput(rid="r", new_token_ids=[], finished=True, error="boom",
                         finish_reason=FinishReason.abort("boom", 500)))
    assert acc.finished and acc.error == "boom"
    assert acc.result()["meta_info"]["finish_reason"] == {
        "type": "abort", "message": "boom", "status_code": 500}


def test_stop_string_trimmed_in_engine_mode() -> None:
    acc = ResultAccumulator("r", SamplingParams(stop="cd"), CharTokenizer(), detokenize=True)
    acc.fold(TokenOutput(rid="r", new_token_ids=[0, 1, 2]))
    acc.fold(TokenOutput(rid="r", new_token_ids=[3], finished=True,
                         finish_reason=FinishReason.stop("cd")))
    assert acc.result()["text"] == "ab"
