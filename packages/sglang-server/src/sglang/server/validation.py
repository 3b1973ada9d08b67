"""Turning a `/generate` body into scheduler requests: fan-out, tokenization, validation.

Every problem becomes `APIError` (400) naming the offending field, before anything reaches the
scheduler, so a bad batch is refused whole.

Context policy: a prompt of `context_len` tokens or more is refused (no room for even one new
token). `max_new_tokens` larger than what is left of the context is clipped to fit, as SGLang's
scheduler does, so clients that ask for "as many as possible" get that instead of an error; the
request then finishes with `{"type": "length"}` at the context limit.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import msgspec

from sglang.protocol.generate import GenerateReqInput
from sglang.protocol.sampling_params import SamplingParams
from sglang.runtime.messages import TokenizedGenerateReq
from sglang.server.errors import APIError, bad_request

# Copies one prompt may fan out into (OpenAI's cap on `n`): expansion is synchronous, so an
# unbounded `n` would stall the event loop and exhaust memory before the scheduler saw anything.
MAX_N = 128
# The IPC encoding (msgpack) and torch.Generator both take integers in [-2**63, 2**64).
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1

_SP_FIELDS = frozenset(f.name for f in msgspec.structs.fields(SamplingParams))
_FIELD_RE = re.compile(r"(?:for|sampling param|missing) '?([A-Za-z_]+)'?")
_JSON_PATH_RE = re.compile(r"`\$\.([A-Za-z_][A-Za-z0-9_]*)")


def sampling_param_name(message: str) -> str | None:
    """Best guess at the field a SamplingParams error is about (its messages start with the
    field name, or say "invalid value for X" / "unknown sampling param 'X'")."""
    first = message.split(" ", 1)[0]
    if first in _SP_FIELDS:
        return first
    m = _FIELD_RE.search(message)
    if m and m.group(1) in _SP_FIELDS:
        return m.group(1)
    return None


def parse_sampling_params(raw: Any, vocab_size: int) -> SamplingParams:
    try:
        sp = SamplingParams.from_dict(raw)
        sp.verify(vocab_size=vocab_size)
    except ValueError as e:
        name = sampling_param_name(str(e))
        raise bad_request(str(e), f"sampling_params.{name}" if name else "sampling_params") from e
    # regex / json_schema / ebnf are compiled by the scheduler, not here: only it knows the
    # grammar backend in use (xgrammar and outlines accept different regex dialects), it caches
    # compiled grammars, and compiling twice would double the cost. A spec that does not compile
    # comes back as a per-request error with status_code 400 (`invalid regex: ...`), which the
    # tokenizer manager turns into a 400 like the refusals above, before any token is sent.
    return sp


def decode_body(body: bytes, type_: Any) -> Any:
    """msgspec-decode a JSON body; malformed JSON and wrong types become 400s naming the path."""
    if not body.strip():
        raise bad_request("the request body is empty; send a JSON object")
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.ValidationError as e:
        m = _JSON_PATH_RE.search(str(e))
        raise bad_request(f"invalid request: {e}", m.group(1) if m else None) from e
    except msgspec.DecodeError as e:
        raise bad_request(f"malformed JSON body: {e}") from e


def decode_generate_body(body: bytes) -> GenerateReqInput:
    """The /generate body, type-checked; exactly-one-of and batch-length checks come later
    (`GenerateReqInput.validate`)."""
    return decode_body(body, GenerateReqInput)


def expand_request(obj: GenerateReqInput, vocab_size: int) -> list[GenerateReqInput]:
    """One single-prompt, n == 1 request per generation: a batch is split, and a prompt with
    n > 1 becomes n copies with rids `<rid>-<i>` and seeds `seed + i` (so they differ)."""
    try:
        obj.validate()
    except ValueError as e:
        raise bad_request(str(e), getattr(e, "param", None)) from e
    out: list[GenerateReqInput] = []
    for sub in obj.split():
        sp = parse_sampling_params(sub.sampling_params, vocab_size)
        if sp.n > MAX_N:
            raise bad_request(f"n must be in [1, {MAX_N}], got {sp.n}", "sampling_params.n")
        if sp.n == 1:
            out.append(sub)
            continue
        base = sub.rid if isinstance(sub.rid, str) else uuid.uuid4().hex
        for i in range(sp.n):
            params = dict(sub.sampling_params or {})
            params["n"] = 1
            if sp.seed is not None:
                params["seed"] = sp.seed + i
            out.append(msgspec.structs.replace(sub, sampling_params=params, rid=f"{base}-{i}"))
    return out


def tokenize_request(
    obj: GenerateReqInput, tokenizer: Any, context_len: int, vocab_size: int
) -> TokenizedGenerateReq:
    """Tokenize and validate one prompt (n == 1; `expand_request` comes first)."""
    if obj.is_batch:
        raise bad_request("expected one prompt; split batches with expand_request first")
    try:
        obj.validate()
    except ValueError as e:
        raise bad_request(str(e), getattr(e, "param", None)) from e
    if obj.text is not None:
        if not isinstance(obj.text, str):
            raise bad_request("'text' must be a string", "text")
        ids = list(tokenizer.encode(obj.text))
        field = "text"
    else:
        ids = list(obj.input_ids or [])  # type: ignore[arg-type]
        field = "input_ids"
        bad = [t for t in ids if not 0 <= t < vocab_size]
        if bad:
            raise bad_request(
                f"input_ids contains token id {bad[0]} outside the vocabulary [0, {vocab_size})",
                field,
            )
    if not ids:
        raise bad_request("the prompt is empty: give text or input_ids with at least one token",
                          field)
    if len(ids) >= context_len:
        raise APIError(
            f"the prompt has {len(ids)} tokens; this model's context length is {context_len}, "
            "which must leave room for at least one new token",
            400, param=field, code="context_length_exceeded",
        )
    sp = parse_sampling_params(obj.sampling_params, vocab_size)
    if sp.n != 1:
        raise bad_request("expected n == 1; fan out with expand_request first",
                          "sampling_params.n")
    if sp.seed is not None and not _INT_MIN <= sp.seed <= _INT_MAX:
        # Also catches seed + i of an n > 1 fan-out running past the top.
        raise bad_request(f"seed must be in [-2**63, 2**64), got {sp.seed}",
                          "sampling_params.seed")
    room = context_len - len(ids)
    if sp.max_new_tokens > room:
        sp = msgspec.structs.replace(
            sp, max_new_tokens=room, min_new_tokens=min(sp.min_new_tokens, room)
        )
    if sp.top_k > vocab_size:  # the same filter (none), in a range the IPC can encode
        sp = msgspec.structs.replace(sp, top_k=vocab_size)
    return TokenizedGenerateReq(
        rid=obj.rid if isinstance(obj.rid, str) else uuid.uuid4().hex,
        input_ids=ids, sampling_params=sp, return_logprob=obj.return_logprob,
        # Clipped to what has the same effect (a start past the prompt: no prompt logprobs;
        # more alternatives than the vocabulary: all of them), so huge values stay encodable.
        logprob_start_len=min(obj.logprob_start_len, len(ids)),
        top_logprobs_num=min(obj.top_logprobs_num, vocab_size),
    )
