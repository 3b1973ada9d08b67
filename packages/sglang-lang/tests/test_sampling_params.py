from __future__ import annotations

import os
import subprocess
import sys

import msgspec
import pytest

from sglang.protocol import SamplingParams

SGLANG_DEFAULTS = {
    "max_new_tokens": 128,
    "min_new_tokens": 0,
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": -1,
    "min_p": 0.0,
    "frequency_penalty": 0.0,
    "presence_penalty": 0.0,
    "repetition_penalty": 1.0,
    "stop": None,
    "stop_token_ids": None,
    "ignore_eos": False,
    "skip_special_tokens": True,
    "spaces_between_special_tokens": True,
    "no_stop_trim": False,
    "n": 1,
    "seed": None,
    "regex": None,
    "json_schema": None,
    "ebnf": None,
    "constraint_after": None,  # ours: the reasoning gate (grammar/reasoning_gate.py)
    "logit_bias": None,
    "sampling_seed": None,  # folded into seed when given
    "stop_regex": None,
    "custom_params": None,  # declared only to be refused by name
}


def test_defaults_match_sglang() -> None:
    p = SamplingParams()
    assert p.to_dict() == SGLANG_DEFAULTS
    p.verify()
    p.verify(vocab_size=10)
    with pytest.raises(ValueError, match="constraint_after"):
        SamplingParams(constraint_after="").verify()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", -0.1),
        ("temperature", float("nan")),
        ("temperature", float("inf")),
        ("top_p", 0.0),
        ("top_p", 1.01),
        ("top_k", 0),
        ("top_k", -2),
        ("min_p", -0.01),
        ("min_p", 1.5),
        ("frequency_penalty", 2.5),
        ("frequency_penalty", -2.5),
        ("presence_penalty", 2.01),
        ("presence_penalty", -3.0),
        ("repetition_penalty", 0.0),
        ("repetition_penalty", 2.5),
        ("max_new_tokens", -1),
        ("min_new_tokens", -1),
        ("min_new_tokens", 200),
        ("n", 0),
        ("stop", ""),
        ("stop", ["ok", ""]),
        ("stop_token_ids", [-1]),
        ("top_k", 1.5),
        ("top_k", 1e30),
        ("top_k", 2**63),
        ("max_new_tokens", 2**70),
        ("n", 2**64),
        ("min_new_tokens", -(2**63) - 1),
    ],
)
def test_bad_values_name_the_field(field: str, value: object) -> None:
    p = SamplingParams(**{field: value})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=field):
        p.verify()


def test_error_message_has_value_and_range() -> None:
    with pytest.raises(ValueError) as ei:
        SamplingParams(top_p=1.5).verify()
    msg = str(ei.value)
    assert "top_p" in msg and "1.5" in msg and "(0, 1]" in msg


def test_boundaries_accepted() -> None:
    SamplingParams(
        temperature=0.0,
        top_p=1.0,
        top_k=1,
        min_p=1.0,
        frequency_penalty=-2.0,
        presence_penalty=2.0,
        repetition_penalty=2.0,
        max_new_tokens=0,
        min_new_tokens=0,
    ).verify()
    SamplingParams(max_new_tokens=5, min_new_tokens=5, stop=["a"], stop_token_ids=[3]).verify(4)


def test_int64_edges() -> None:
    # The largest int64 passes verify (the front door clips it to the context / vocabulary);
    # one more, or a float however integral, is refused through from_dict too.
    SamplingParams(max_new_tokens=2**63 - 1, top_k=2**63 - 1).verify()
    for d in ({"top_k": 2**63}, {"max_new_tokens": 2**70}):
        with pytest.raises(ValueError, match="64-bit"):
            SamplingParams.from_dict(d).verify()
    with pytest.raises(ValueError, match="top_k"):
        SamplingParams.from_dict({"top_k": 1e30})


def test_stop_token_ids_checked_against_vocab() -> None:
    p = SamplingParams(stop_token_ids=[1, 10])
    p.verify()
    with pytest.raises(ValueError, match="stop_token_ids"):
        p.verify(vocab_size=10)


def test_at_most_one_constraint() -> None:
    SamplingParams(regex="a+").verify()
    with pytest.raises(ValueError, match="regex") as ei:
        SamplingParams(regex="a+", json_schema="{}").verify()
    assert "json_schema" in str(ei.value)
    with pytest.raises(ValueError, match="ebnf"):
        SamplingParams(json_schema="{}", ebnf="root ::= 'a'").verify()


def test_stop_strs_and_greedy() -> None:
    assert SamplingParams().stop_strs == []
    assert SamplingParams(stop="x").stop_strs == ["x"]
    assert SamplingParams(stop=["a", "b"]).stop_strs == ["a", "b"]
    assert SamplingParams(temperature=0).is_greedy
    assert SamplingParams(top_k=1, temperature=0.7).is_greedy
    assert not SamplingParams().is_greedy


def test_normalized_is_a_copy() -> None:
    p = SamplingParams(stop="x")
    q = p.normalized()
    assert q.stop == ["x"] and q.stop_token_ids == []
    assert p.stop == "x" and p.stop_token_ids is None
    assert SamplingParams().normalized().stop == []


def test_from_dict_round_trip() -> None:
    d = {
        "max_new_tokens": 7,
        "temperature": 0.5,
        "top_k": 20,
        "stop": ["\n", "END"],
        "stop_token_ids": [2],
        "seed": 42,
        "json_schema": '{"type": "object"}',
    }
    p = SamplingParams.from_dict(d)
    assert p.max_new_tokens == 7 and p.stop == ["\n", "END"] and p.seed == 42
    assert SamplingParams.from_dict(p.to_dict()) == p
    assert SamplingParams.from_dict(None) == SamplingParams()
    assert SamplingParams.from_dict({}) == SamplingParams()
    # JSON ints are fine for float fields.
    assert SamplingParams.from_dict({"temperature": 0}).temperature == 0.0
    # The wire form survives msgspec JSON too.
    assert msgspec.json.decode(msgspec.json.encode(p), type=SamplingParams) == p


def test_to_dict_does_not_alias() -> None:
    p = SamplingParams(stop=["a"])
    d = p.to_dict()
    d["stop"].append("b")
    assert p.stop == ["a"]


def test_unknown_field_rejected() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        SamplingParams.from_dict({"max_tokens": 3})


@pytest.mark.parametrize(
    ("d", "field"),
    [
        ({"max_new_tokens": "many"}, "max_new_tokens"),
        ({"top_k": 1.5}, "top_k"),
        ({"ignore_eos": "yes"}, "ignore_eos"),
        ({"stop": [1]}, "stop"),
        ({"stop_token_ids": "1"}, "stop_token_ids"),
    ],
)
def test_from_dict_type_errors_name_the_field(d: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        SamplingParams.from_dict(d)


def test_from_dict_rejects_non_dict() -> None:
    with pytest.raises(ValueError):
        SamplingParams.from_dict([1, 2])  # type: ignore[arg-type]


def test_no_torch_import() -> None:
    code = (
        "import sys; import sglang.protocol.sampling_params; import sglang.protocol; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    ("make", "param"),
    [
        (lambda: SamplingParams(top_p=1.5).verify(), "top_p"),
        (lambda: SamplingParams(min_new_tokens=9, max_new_tokens=3).verify(), "min_new_tokens"),
        (lambda: SamplingParams(stop_token_ids=[7]).verify(vocab_size=5), "stop_token_ids"),
        (lambda: SamplingParams(regex="a", ebnf="b").verify(), "ebnf"),
        (lambda: SamplingParams.from_dict({"temperature": "hot"}), "temperature"),
        (lambda: SamplingParams.from_dict({"stop": [1]}), "stop"),
        (lambda: SamplingParams.from_dict({"max_tokens": 3}), None),
    ],
)
def test_errors_carry_the_param(make: object, param: str | None) -> None:
    from sglang.protocol.errors import InvalidRequest
    from sglang.protocol.generate import InvalidRequest as GenerateInvalidRequest

    assert GenerateInvalidRequest is InvalidRequest  # one exception type for every bad request
    with pytest.raises(InvalidRequest) as ei:
        make()  # type: ignore[operator]
    assert ei.value.param == param
    assert ei.value.with_prefix("sampling_params").param == (
        f"sampling_params.{param}" if param else "sampling_params")
