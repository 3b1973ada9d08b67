"""The grammar layer without model steps: bitmask application, backends' compile errors and
matchers, the compile cache, jump-forward planning, configuration."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from grammar_cases import LONG_KEYS_SCHEMA

from sglang.runtime.grammar.base import GrammarError
from sglang.runtime.grammar.bitmask import apply_bitmask, mask_logits, unpack_bitmask
from sglang.runtime.grammar.jump_forward import plan_jump
from sglang.runtime.grammar.manager import GrammarManager
from sglang.runtime.grammar.outlines_backend import bound_integers
from sglang.runtime.grammar.registry import backend_names
from sglang.runtime.grammar.xgrammar_backend import clean_error

# ---- bitmasks ---------------------------------------------------------------------------------


def _reference_allowed(bitmask: torch.Tensor, width: int) -> torch.Tensor:
    words = bitmask.tolist()
    return torch.tensor([[bool((row[i // 32] >> (i % 32)) & 1) if i // 32 < len(row) else False
                          for i in range(width)] for row in words])


def test_unpack_matches_a_bit_by_bit_reference() -> None:
    g = torch.Generator().manual_seed(0)
    bitmask = torch.randint(-(2**31), 2**31 - 1, (3, 4), dtype=torch.int32, generator=g)
    for width in (128, 100, 140):  # exact, narrower and wider than the mask
        assert torch.equal(unpack_bitmask(bitmask, width), _reference_allowed(bitmask, width))


def test_apply_touches_only_constrained_rows() -> None:
    logits = torch.randn(5, 70)
    original = logits.clone()
    bitmask = torch.zeros(2, 3, dtype=torch.int32)
    bitmask[0, 0] = 0b1010  # tokens 1 and 3
    bitmask[1, 2] = 1 << 5  # token 69
    out = apply_bitmask(logits, bitmask, [1, 4])
    assert torch.equal(logits, original)  # the raw logits (for logprobs) are left alone
    for free in (0, 2, 3):
        assert torch.equal(out[free], original[free])
    assert torch.isfinite(out[1]).nonzero().view(-1).tolist() == [1, 3]
    assert torch.isfinite(out[4]).nonzero().view(-1).tolist() == [69]
    assert torch.equal(out[1, [1, 3]], original[1, [1, 3]])


def test_mask_logits_without_constraints_is_the_same_tensor() -> None:
    logits = torch.randn(2, 8)
    assert mask_logits(logits, [None, None]) is logits


# ---- configuration and helpers ----------------------------------------------------------------


def test_backend_names_are_the_registry() -> None:
    from sglang.runtime.config import RuntimeArgs
    from sglang.runtime.plugins import GRAMMAR_BACKENDS

    assert backend_names() == GRAMMAR_BACKENDS.names() == ("outlines", "xgrammar")
    assert RuntimeArgs(grammar_backend="outlines").grammar_backend == "outlines"
    with pytest.raises(ValueError, match="unknown grammar backend 'lark'"):
        RuntimeArgs(grammar_backend="lark")
    with pytest.raises(ValueError, match="unknown grammar backend"):
        GrammarManager("lark", None, 10, set())


def test_clean_error_drops_the_cpp_location() -> None:
    e = RuntimeError("[15:12:21] /project/cpp/regex_converter.cc:83: Regex parsing error at "
                     "position 4: The parenthesis is not closed.\n")
    assert clean_error(e) == "Regex parsing error at position 4: The parenthesis is not closed."


def test_bound_integers_spells_out_small_ranges() -> None:
    schema = {"type": "object", "properties": {
        "a": {"type": "integer", "minimum": 2, "maximum": 4},
        "b": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 3},
        "c": {"type": "integer", "minimum": 0},
        "d": {"type": "array", "items": {"type": "integer", "minimum": -1, "maximum": 1}},
    }}
    props = bound_integers(schema)["properties"]
    assert props["a"] == {"enum": [2, 3, 4]} and props["b"] == {"enum": [1, 2]}
    assert props["c"] == {"type": "integer", "minimum": 0}
    assert props["d"]["items"] == {"enum": [-1, 0, 1]}


# ---- backends over SmolLM2's tokenizer --------------------------------------------------------


@pytest.fixture(scope="module")
def managers(engine: Any) -> dict[str, GrammarManager]:
    vocab = engine.runtime.scheduler.grammar.vocab
    return {name: GrammarManager(name, vocab.tokenizer, vocab.vocab_size, set(vocab.eos_ids))
            for name in backend_names()}


def _compile(manager: GrammarManager, kind: str, spec: str) -> Any:
    return manager.compiled(kind, spec).result(timeout=60)


@pytest.mark.parametrize("name", ["xgrammar", "outlines"])
@pytest.mark.parametrize(("kind", "spec", "message"), [
    ("regex", "a(b", "invalid regex"),
    ("regex", "[z-a]", "invalid regex"),
    ("json_schema", "{nope", "invalid json_schema: not valid JSON"),
    ("json_schema", '{"type": "frobnicate"}', "invalid json_schema"),
    # xgrammar alone compiled the non-pointer refs as "any JSON value".
    ("json_schema", '{"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}',
     "does not resolve"),
    ("json_schema", '{"$ref": "https://example.com/schema.json"}', "only local refs"),
    ("json_schema", '{"type": "object", "properties": {"a": {"$ref": "#a"}}}', "only local refs"),
    ("json_schema", '{"items": ' * 2000 + "{}" + "}" * 2000, "nested too deeply"),
    ("json_schema", '{"items": ' * 200 + "{}" + "}" * 200, "nests more than"),
])
def test_bad_specs_are_grammar_errors(managers: dict, name: str, kind: str, spec: str,
                                      message: str) -> None:
    with pytest.raises(GrammarError, match=message):
        _compile(managers[name], kind, spec)


def test_compiles_are_cached_by_spec(managers: dict) -> None:
    m = managers["xgrammar"]
    before = m.compiles
    first = _compile(m, "regex", r"[0-9]{3}")
    assert _compile(m, "regex", r"[0-9]{3}") is first
    _compile(m, "regex", r"[0-9]{4}")
    assert m.compiles == before + 2


@pytest.mark.parametrize("name", ["xgrammar", "outlines"])
def test_matcher_masks_accepts_and_terminates(managers: dict, engine: Any, name: str) -> None:
    m, tok = managers[name], engine.tokenizer
    eos = tok.eos_token_id
    matcher = m.backend().matcher(_compile(m, "regex", r"ab(c|d)"))
    allowed = unpack_bitmask(_fill(matcher, m), m.vocab.vocab_size)[0]
    assert all(tok.decode([t]).startswith("a") for t in allowed.nonzero().view(-1).tolist())
    assert not allowed[eos]
    for t in tok.encode("ab", add_special_tokens=False):
        assert matcher.accept(t)
    assert not matcher.accept(tok.encode("x", add_special_tokens=False)[0])
    assert not matcher.accept(eos) and not matcher.is_terminated()
    assert matcher.accept(tok.encode("d", add_special_tokens=False)[0])
    assert unpack_bitmask(_fill(matcher, m), m.vocab.vocab_size)[0].nonzero().view(-1).tolist() \
        == [eos]
    assert matcher.accept(eos) and matcher.is_terminated()
    matcher.rollback(2)  # back to after "ab": c or d again, not finished
    assert not matcher.is_terminated() and matcher.accept(tok.encode("c", add_special_tokens=False)[0])


def _fill(matcher: Any, manager: GrammarManager) -> torch.Tensor:
    bitmask = torch.zeros(1, (manager.vocab.vocab_size + 31) // 32, dtype=torch.int32)
    matcher.fill_mask(bitmask, 0)
    return bitmask


@pytest.mark.parametrize("name", ["xgrammar", "outlines"])
def test_forced_string_and_jump_plan(managers: dict, engine: Any, name: str) -> None:
    m, tok = managers[name], engine.tokenizer
    matcher = m.backend().matcher(_compile(m, "json_schema", json.dumps(LONG_KEYS_SCHEMA)))
    sep = ": " if name == "xgrammar" else ":"
    key = '{"customer_loyalty_membership_tier"' + sep + '"'
    assert matcher.forced_string() == key
    prompt = tok.encode("<|im_start|>assistant\n")
    ids = plan_jump(matcher, tok, prompt, None, budget=100)
    # The tokenizer's own ids for the forced text, but its last token is left to the model.
    assert ids == tok.encode(key, add_special_tokens=False)[:-1]
    assert matcher.forced_string() == tok.decode(tok.encode(key, add_special_tokens=False)[-1:])
    # A budget caps the jump; too little to gain leaves the matcher untouched.
    other = m.backend().matcher(_compile(m, "json_schema", json.dumps(LONG_KEYS_SCHEMA)))
    assert plan_jump(other, tok, prompt, None, budget=3) == ids[:3]
    fresh = m.backend().matcher(_compile(m, "json_schema", json.dumps(LONG_KEYS_SCHEMA)))
    assert plan_jump(fresh, tok, prompt, None, budget=1) is None
    assert fresh.forced_string() == key


def test_jump_replaces_the_sampled_token_when_it_merges(managers: dict, engine: Any) -> None:
    """A sampled `"` followed by forced `, "next` is retokenized as `",` ` "` ...: the sampled
    token (not yet sent, no KV) is replaced by what the tokenizer gives for the whole text."""
    m, tok = managers["xgrammar"], engine.tokenizer
    schema = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 4},
                                               "second_key_here": {"type": "boolean"}},
              "required": ["a", "second_key_here"]}
    matcher = m.backend().matcher(_compile(m, "json_schema", json.dumps(schema)))
    text = '{"a": "xy'
    ids = tok.encode(text, add_special_tokens=False)
    for t in ids:
        assert matcher.accept(t)
    quote = tok.encode('"', add_special_tokens=False)
    assert len(quote) == 1 and matcher.accept(quote[0])
    assert matcher.forced_string() == ', "second_key_here": '
    tail = plan_jump(matcher, tok, ids, quote[0], budget=50)
    whole = tok.encode(text + '", "second_key_here": ', add_special_tokens=False)
    assert tail is not None and ids + tail == whole[:-1]
    assert tail[0] != quote[0]  # `",` is one token


@pytest.mark.parametrize("name", ["xgrammar", "outlines"])
def test_no_forced_text_from_inside_a_character(managers: dict, engine: Any, name: str) -> None:
    """"é" can be sampled as its two byte tokens; between them the forced bytes are no str."""
    m = managers[name]
    table = m.vocab.token_bytes
    first, second = table.index("é".encode()[:1]), table.index("é".encode()[1:])
    matcher = m.backend().matcher(_compile(m, "regex", "été!"))
    assert matcher.accept(first)
    assert matcher.forced_string() == ""
    assert matcher.accept(second) and matcher.forced_string() == "té!"


def test_a_model_without_eos_ids_still_compiles_or_is_refused_by_name(engine: Any) -> None:
    # An empty stop list used to reach xgrammar as [] ("stop_token_ids cannot be empty"): every
    # constrained request of such a model failed with a 500. xgrammar now finds the stop
    # tokens itself; outlines refuses with an error naming what is missing (a 400).
    vocab = engine.runtime.scheduler.grammar.vocab
    xgr = GrammarManager("xgrammar", vocab.tokenizer, vocab.vocab_size, set())
    assert _compile(xgr, "regex", r"[0-9]{2}") is not None
    outlines = GrammarManager("outlines", vocab.tokenizer, vocab.vocab_size, set())
    with pytest.raises(GrammarError, match="needs an EOS token id"):
        _compile(outlines, "regex", r"[0-9]{2}")
