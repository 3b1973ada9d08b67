"""The request front door (runtime/inputs.py), shared by the Engine and the server: validation
with errors naming the field, fan-out, context clipping; torch-free."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from sglang.protocol.errors import InvalidRequest
from sglang.protocol.generate import GenerateReqInput
from sglang.protocol.sampling_params import SamplingParams
from sglang.runtime.inputs import (
    MAX_BATCH,
    MAX_GENERATIONS,
    MAX_N,
    MAX_RID_LEN,
    MAX_TOP_LOGPROBS,
    ContextLengthExceeded,
    ModelLimits,
    check_limits,
    prepare_request,
)

LIMITS = ModelLimits(context_len=32, vocab_size=100)


class WordTokenizer:
    """One token per word: "t5 t7" -> [5, 7]."""

    def encode(self, text: str) -> list[int]:
        return [int(w[1:]) for w in text.split()]


def prep(tokenizer: Any = None, **kw: Any) -> Any:
    return prepare_request(GenerateReqInput(**kw), tokenizer, LIMITS)


def test_import_is_torch_free() -> None:
    code = "import sglang.runtime.inputs, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_single_text_prompt() -> None:
    out = prep(WordTokenizer(), text="t5 t7", rid="abc", sampling_params={"max_new_tokens": 4})
    assert out.single and not out.is_batch
    (only,) = out.reqs
    assert only.msg.rid == "abc" and only.msg.input_ids == [5, 7]
    assert only.msg.sampling_params.max_new_tokens == 4
    assert (only.prompt_index, only.copy_index) == (0, 0)


def test_fan_out_n_gives_rids_and_seeds() -> None:
    out = prep(input_ids=[[1, 2], [3]], rid=["a", "b"],
               sampling_params=[{"n": 3, "seed": 10}, {"n": 2}])
    assert out.is_batch and not out.single
    assert [r.msg.rid for r in out.reqs] == ["a-0", "a-1", "a-2", "b-0", "b-1"]
    assert [r.msg.sampling_params.seed for r in out.reqs] == [10, 11, 12, None, None]
    assert [(r.prompt_index, r.copy_index) for r in out.reqs] == [
        (0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    assert all(r.msg.sampling_params.n == 1 for r in out.reqs)


def test_one_prompt_with_n_is_not_single() -> None:
    out = prep(input_ids=[1, 2], sampling_params={"n": 2})
    assert not out.single and len(out.reqs) == 2
    assert out.reqs[0].msg.rid.endswith("-0") and out.reqs[1].msg.rid.endswith("-1")


def test_sampling_params_object_is_copied() -> None:
    sp = SamplingParams(max_new_tokens=1000, n=2)
    out = prep(input_ids=[1, 2, 3], sampling_params=sp)  # type: ignore[arg-type]
    assert sp.max_new_tokens == 1000 and sp.n == 2
    assert out.reqs[0].msg.sampling_params.max_new_tokens == LIMITS.context_len - 3


def test_max_new_tokens_clipped_to_the_context() -> None:
    out = prep(input_ids=list(range(30)), sampling_params={"max_new_tokens": 50,
                                                           "min_new_tokens": 5})
    sp = out.reqs[0].msg.sampling_params
    assert (sp.max_new_tokens, sp.min_new_tokens) == (2, 2)


def test_prompt_filling_the_context_is_refused() -> None:
    with pytest.raises(ContextLengthExceeded, match="context length") as ei:
        prep(input_ids=list(range(32)))
    assert ei.value.param == "input_ids" and ei.value.code == "context_length_exceeded"


def test_sampling_params_parsed_once_per_prompt(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    orig = SamplingParams.from_dict.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(SamplingParams, "from_dict",
                        classmethod(lambda cls, d: calls.append(d) or orig(cls, d)))
    prep(input_ids=[[1], [2]], sampling_params={"n": 4})
    assert len(calls) == 2


def test_clips_logprob_options_to_encodable_values() -> None:
    msg = prep(input_ids=[1, 2], return_logprob=True, logprob_start_len=10**30,
               top_logprobs_num=10**30).reqs[0].msg
    assert (msg.logprob_start_len, msg.top_logprobs_num) == (2, LIMITS.vocab_size)


def test_top_k_above_the_vocabulary_is_clipped_beyond_int64_refused() -> None:
    sp = prep(input_ids=[1], sampling_params={"top_k": 2**63 - 1}).reqs[0].msg.sampling_params
    assert sp.top_k == LIMITS.vocab_size
    for field in ("top_k", "max_new_tokens"):
        with pytest.raises(InvalidRequest, match="64-bit") as ei:
            prep(input_ids=[1], sampling_params={field: 2**70})
        assert ei.value.param == f"sampling_params.{field}"


@pytest.mark.parametrize(("kw", "param"), [
    ({"text": ["t1"] * (MAX_BATCH + 1)}, "text"),
    ({"input_ids": [[1]] * (MAX_BATCH + 1)}, "input_ids"),
    ({"text": ["t1"] * (MAX_GENERATIONS // MAX_N + 1), "sampling_params": {"n": MAX_N}},
     "sampling_params.n"),
    ({"text": ["t1", "t2"], "sampling_params": [{"n": MAX_N}] * 2}, None),
    ({"input_ids": [1], "top_logprobs_num": MAX_TOP_LOGPROBS + 1}, "top_logprobs_num"),
    ({"input_ids": [1], "top_logprobs_num": 10**30}, "top_logprobs_num"),
])
def test_server_caps(kw: dict[str, Any], param: str | None) -> None:
    obj = GenerateReqInput(**kw)
    if param is None:
        check_limits(obj)
        return
    with pytest.raises(InvalidRequest) as ei:
        check_limits(obj)
    assert ei.value.param == param


def test_caps_are_the_servers_alone() -> None:
    # The offline Engine's front door keeps big batches and many logprob alternatives.
    big = prep(WordTokenizer(), text=["t1"] * (MAX_GENERATIONS // MAX_N + 1),
               sampling_params={"n": MAX_N}, top_logprobs_num=MAX_TOP_LOGPROBS + 1)
    assert len(big.reqs) > MAX_GENERATIONS
    check_limits(GenerateReqInput(text=["t1"] * (MAX_GENERATIONS // MAX_N),
                                  sampling_params={"n": MAX_N}, top_logprobs_num=MAX_TOP_LOGPROBS))


@pytest.mark.parametrize("rid", ["a\nfake log line", "x\x1b[31m", "a\x00", "",
                                 "r" * (MAX_RID_LEN + 1), "tab\there"])
def test_hostile_rids_are_refused(rid: str) -> None:
    with pytest.raises(InvalidRequest) as ei:
        prep(input_ids=[1], rid=rid)
    assert ei.value.param == "rid"
    with pytest.raises(InvalidRequest) as ei:
        prep(input_ids=[[1], [2]], rid=["ok", rid])
    assert ei.value.param == "rid"


def test_printable_rids_are_kept() -> None:
    for rid in ("req-1", "r" * MAX_RID_LEN, "naïve id ✓"):
        assert prep(input_ids=[1], rid=rid).reqs[0].msg.rid == rid


@pytest.mark.parametrize(("kw", "param"), [
    ({"text": "t1", "input_ids": [1]}, None),
    ({"input_ids": [1, [2]]}, "input_ids"),
    ({"input_ids": [100]}, "input_ids"),
    ({"input_ids": []}, "input_ids"),
    ({"text": ""}, "text"),
    ({"text": ["t1", "t2"], "sampling_params": [{}]}, "sampling_params"),
    ({"input_ids": [1], "sampling_params": {"top_p": 0}}, "sampling_params.top_p"),
    ({"input_ids": [1], "sampling_params": {"temperature": "hot"}},
     "sampling_params.temperature"),
    ({"input_ids": [1], "sampling_params": {"stop_token_ids": [100]}},
     "sampling_params.stop_token_ids"),
    ({"input_ids": [1], "sampling_params": {"n": MAX_N + 1}}, "sampling_params.n"),
    ({"input_ids": [1], "sampling_params": {"seed": 2**64 - 1, "n": 2}}, "sampling_params.seed"),
    ({"input_ids": [1], "top_logprobs_num": -1}, "top_logprobs_num"),
])
def test_errors_name_the_field(kw: dict[str, Any], param: str | None) -> None:
    with pytest.raises(InvalidRequest) as ei:
        prep(WordTokenizer(), **kw)
    assert ei.value.param == param, str(ei.value)
    assert isinstance(ei.value, ValueError)


def test_without_a_tokenizer_ids_only() -> None:
    with pytest.raises(InvalidRequest, match="input_ids") as ei:
        prep(None, text="t1")
    assert ei.value.param == "text"
    for name, value in (("stop", "x"), ("regex", "a+")):
        with pytest.raises(InvalidRequest, match="tokenizer") as ei:
            prep(None, input_ids=[1], sampling_params={name: value})
        assert ei.value.param == f"sampling_params.{name}"
    ok = prep(None, input_ids=[1], sampling_params={"stop_token_ids": [5]})
    assert ok.reqs[0].msg.sampling_params.stop_token_ids == [5]
