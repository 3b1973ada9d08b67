"""The one front door for generation requests, shared by the offline Engine and the server.

From a `GenerateReqInput` (one prompt or a batch), a tokenizer (None: ids in, ids out) and the
model's limits, `prepare_request` validates, tokenizes, fans out `n` and returns one
`TokenizedGenerateReq` per generation. Every problem raises `InvalidRequest` (a ValueError)
whose `.param` names the field, before anything reaches the scheduler, so a bad batch is
refused whole. The server turns it into a 400; the Engine lets it raise.

Fan-out: a prompt with n > 1 becomes n copies with rids `<rid>-<i>` and seeds `seed + i`, so
the copies differ yet stay reproducible.

Context policy: a prompt of `context_len` tokens or more is refused (no room for even one new
token). `max_new_tokens` larger than what is left of the context is clipped to fit, as SGLang's
scheduler does, so clients that ask for "as many as possible" get that instead of an error; the
request then finishes with `{"type": "length"}` at the context limit.

Media: a prompt with `image_data` / `video_data` goes through its model's input processor
(`multimodal.processor`), which returns input_ids with one placeholder span per item and the
typed items; they travel on the message (`mm_items`). A client's own input_ids are checked
against the vocabulary first: placeholder ids lie beyond it on purpose.

Torch-free on purpose: this runs in the server's HTTP process.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import msgspec

from sglang.protocol.errors import InvalidRequest
from sglang.protocol.generate import GenerateReqInput
from sglang.protocol.media import MediaRef, media_per_prompt
from sglang.protocol.sampling_params import SamplingParams
from sglang.runtime.messages import MultimodalItem, TokenizedGenerateReq
from sglang.runtime.multimodal.parallel import serial_tokenizer, side_by_side
from sglang.runtime.multimodal.processor import InputProcessor, process_prompt

# Gives the model's input processor when a prompt carries media (ValueError when the model
# takes none); a callable so text-only traffic never looks one up.
ProcessorSource = Callable[[], InputProcessor]

# Copies one prompt may fan out into (OpenAI's cap on `n`): expansion is synchronous, so an
# unbounded `n` would stall the event loop and exhaust memory before the scheduler saw anything.
MAX_N = 128
# Caps a server puts on one request (`check_limits`; the offline Engine keeps big batches and
# full-vocabulary logprobs). Alternatives per position, as OpenAI's top_logprobs: prompt logprobs
# over the whole vocabulary made one 80-token request answer with a 146 MB body after minutes.
MAX_TOP_LOGPROBS = 20
# Prompts in one batch, and generations (prompts x n) one request may start: both are expanded
# synchronously before anything is refused, so they bound the work a single request can cause.
MAX_BATCH = 1024
MAX_GENERATIONS = 1024
# A request id is echoed into responses, logs and the IPC: printable and short.
MAX_RID_LEN = 256
# The IPC encoding (msgpack) and torch.Generator both take integers in [-2**63, 2**64).
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
# Without a tokenizer there is no text to match and no vocabulary to compile a grammar over.
_NEEDS_TOKENIZER = ("stop", "regex", "json_schema", "ebnf")


class ContextLengthExceeded(InvalidRequest):
    """A prompt that leaves no room for a new token (the server's code: context_length_exceeded)."""

    code = "context_length_exceeded"


@dataclass(frozen=True)
class ModelLimits:
    context_len: int
    vocab_size: int


@dataclass(frozen=True)
class PreparedReq:
    """One generation: the scheduler message, and where its result goes back."""

    msg: TokenizedGenerateReq
    prompt_index: int  # which prompt of the request
    copy_index: int  # which of its n copies


@dataclass(frozen=True)
class PreparedRequest:
    reqs: list[PreparedReq]
    is_batch: bool  # the caller asked with a list of prompts

    @property
    def single(self) -> bool:
        """One prompt, one generation: the caller gets one result rather than a list."""
        return not self.is_batch and len(self.reqs) == 1


def check_rid(rid: Any, param: str = "rid") -> None:
    """Refuse ids with control characters (they would forge log lines and break
    terminals) or absurd length; a non-string rid is left to the type checks."""
    if not isinstance(rid, str):
        return
    if not rid or len(rid) > MAX_RID_LEN:
        raise InvalidRequest(f"rid must be 1 to {MAX_RID_LEN} characters, got {len(rid)}", param)
    if not rid.isprintable():
        raise InvalidRequest("rid must not contain control or other non-printable characters",
                             param)


def check_limits(obj: GenerateReqInput) -> None:
    """A server's size caps on one request, checked before any prompt is tokenized so an
    oversized request costs nothing. Not part of `prepare_request`: offline use may batch more."""
    if not 0 <= obj.top_logprobs_num <= MAX_TOP_LOGPROBS:
        raise InvalidRequest(
            f"top_logprobs_num must be in [0, {MAX_TOP_LOGPROBS}], got {obj.top_logprobs_num}",
            "top_logprobs_num",
        )
    prompts = obj.batch_size if obj.is_batch else 1
    if prompts > MAX_BATCH:
        raise InvalidRequest(f"a batch may hold at most {MAX_BATCH} prompts, got {prompts}",
                             "input_ids" if obj.text is None else "text")
    sps = obj.sampling_params if isinstance(obj.sampling_params, list) \
        else [obj.sampling_params] * prompts
    total = sum(_n_of(sp) for sp in sps)
    if total > MAX_GENERATIONS:
        raise InvalidRequest(
            f"the request asks for {total} generations (prompts x n); at most "
            f"{MAX_GENERATIONS} are allowed per request", "sampling_params.n",
        )


def _n_of(sp: Any) -> int:
    # Only a cheap estimate for the cap: the real parse (and its errors) comes later.
    n = sp.n if isinstance(sp, SamplingParams) else sp.get("n", 1) if isinstance(sp, dict) else 1
    return n if isinstance(n, int) and 1 <= n <= MAX_N else 1


def tokenize_prompt(obj: GenerateReqInput, tokenizer: Any, vocab_size: int) -> tuple[list[int], str]:
    """The token ids of one prompt and the field they came from ("text" / "input_ids").
    A plain function (no state, no event loop) so it can run in a worker thread."""
    if obj.text is not None:
        if not isinstance(obj.text, str):
            raise InvalidRequest("'text' must be a string", "text")
        if tokenizer is None:
            raise InvalidRequest(
                "this server runs without a tokenizer (skip_tokenizer_init): send input_ids "
                "instead of text", "text",
            )
        ids, field = list(tokenizer.encode(obj.text)), "text"
    else:
        ids, field = list(obj.input_ids or []), "input_ids"  # type: ignore[arg-type]
        for t in ids:
            if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab_size:
                raise InvalidRequest(
                    f"input_ids contains token id {t!r} outside the vocabulary [0, {vocab_size})",
                    field,
                )
    if not ids:
        raise InvalidRequest(
            "the prompt is empty: give text or input_ids with at least one token", field
        )
    return ids, field


def parse_sampling_params(raw: Any, tokenizer: Any, vocab_size: int) -> SamplingParams:
    """Parse and verify once; errors name `sampling_params.<field>`."""
    try:
        if isinstance(raw, SamplingParams):
            sp = msgspec.structs.replace(raw)  # a copy: callers may share theirs
        else:
            sp = SamplingParams.from_dict(raw)
        sp.verify(vocab_size=vocab_size)
    except InvalidRequest as e:
        raise e.with_prefix("sampling_params") from e
    # regex / json_schema / ebnf are compiled by the scheduler, not here: only it knows the
    # grammar backend in use, it caches compiled grammars, and compiling twice would double the
    # cost. A spec that does not compile comes back as a per-request error with status_code 400.
    if sp.n > MAX_N:
        raise InvalidRequest(f"n must be in [1, {MAX_N}], got {sp.n}", "sampling_params.n")
    if tokenizer is None:
        for name in _NEEDS_TOKENIZER:
            if getattr(sp, name) is not None:
                raise InvalidRequest(
                    f"{name} needs a tokenizer, and this server runs without one "
                    "(skip_tokenizer_init); stop_token_ids work", f"sampling_params.{name}",
                )
    if sp.top_k > vocab_size:  # the same filter (none), in a range the IPC can encode
        sp = msgspec.structs.replace(sp, top_k=vocab_size)
    return sp


def _media_note(items: list[MultimodalItem] | None) -> str:
    """How much of a prompt its media take, for the context-length error."""
    if not items:
        return ""
    counts: dict[str, int] = {}
    for it in items:
        counts[it.modality] = counts.get(it.modality, 0) + 1
    what = " and ".join(f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in counts.items())
    return f" ({sum(it.length for it in items)} of them placeholders for {what}: too many " \
        "or too large media for the context)"


def _fit_to_context(sp: SamplingParams, prompt_len: int, field: str, limits: ModelLimits,
                    items: list[MultimodalItem] | None = None) -> SamplingParams:
    ctx = limits.context_len
    if prompt_len >= ctx:
        raise ContextLengthExceeded(
            f"the prompt has {prompt_len} tokens{_media_note(items)}; this model's context "
            f"length is {ctx}, which must leave room for at least one new token", field,
        )
    room = ctx - prompt_len
    if sp.max_new_tokens > room:
        sp = msgspec.structs.replace(
            sp, max_new_tokens=room, min_new_tokens=min(sp.min_new_tokens, room)
        )
    return sp


def _copies(sp: SamplingParams, rid: str | None) -> list[tuple[str, SamplingParams]]:
    if sp.n == 1:
        return [(rid if rid is not None else uuid.uuid4().hex, sp)]
    base = rid if rid is not None else uuid.uuid4().hex
    out = []
    for i in range(sp.n):
        seed = None if sp.seed is None else sp.seed + i
        out.append((f"{base}-{i}", msgspec.structs.replace(sp, n=1, seed=seed)))
    return out


def _tokenize_with_media(
    obj: GenerateReqInput,
    tokenizer: Any,
    vocab_size: int,
    images: list[MediaRef],
    videos: list[MediaRef],
    processor: ProcessorSource | None,
) -> tuple[list[int], str, list[MultimodalItem]]:
    media_field = "image_data" if images else "video_data"
    if obj.text is not None:
        if not isinstance(obj.text, str):
            raise InvalidRequest("'text' must be a string", "text")
        prompt: str | list[int] = obj.text
        field = "text"
    else:
        prompt, field = tokenize_prompt(obj, tokenizer, vocab_size)
    try:
        if processor is None:
            raise ValueError("this runtime takes no images or videos")
        ids, items = process_prompt(processor(), prompt, images, videos, tokenizer, vocab_size)
    except InvalidRequest:
        raise
    except ValueError as e:  # unreadable media, a model without a processor, bad spans
        raise InvalidRequest(str(e), media_field) from e
    if not ids:
        raise InvalidRequest("the prompt is empty", field)
    return ids, field, items


def _prepare_media(
    subs: list[GenerateReqInput],
    media: list[tuple[list[MediaRef], list[MediaRef]]],
    tokenizer: Any,
    vocab_size: int,
    processor: ProcessorSource | None,
) -> dict[int, Future[tuple[list[int], str, list[MultimodalItem]]]]:
    """Each prompt with media through its input processor, the prompts of a batch side by side
    (`multimodal.parallel`): a batch of videos would otherwise decode one by one while the GPU
    waits. Results are read in prompt order, so the first bad prompt is the one reported."""
    todo = [i for i, (images, videos) in enumerate(media) if images or videos]
    shared = serial_tokenizer(tokenizer) if len(todo) > 1 else tokenizer

    def job(i: int) -> Callable[[], tuple[list[int], str, list[MultimodalItem]]]:
        return lambda: _tokenize_with_media(subs[i], shared, vocab_size, *media[i], processor)

    return dict(zip(todo, side_by_side([job(i) for i in todo]), strict=True))


def prepare_request(
    obj: GenerateReqInput,
    tokenizer: Any,
    limits: ModelLimits,
    processor: ProcessorSource | None = None,
) -> PreparedRequest:
    """Validate, tokenize and fan out a request: one TokenizedGenerateReq per generation, in
    prompt order, copies of a prompt together. `processor` handles prompts with media."""
    obj.validate()
    for rid in obj.rid if isinstance(obj.rid, list) else [obj.rid]:
        check_rid(rid)
    reqs: list[PreparedReq] = []
    subs = obj.split()
    media = [(media_per_prompt(sub.image_data, 1, False, "image_data")[0],
              media_per_prompt(sub.video_data, 1, False, "video_data")[0]) for sub in subs]
    with_media = _prepare_media(subs, media, tokenizer, limits.vocab_size, processor)
    for p_idx, sub in enumerate(subs):
        images, videos = media[p_idx]
        items: list[MultimodalItem] | None = None
        if images or videos:
            ids, _, items = with_media[p_idx].result()
            # Too long because of its media: the error names the media field.
            field = "image_data" if images else "video_data"
        else:
            ids, field = tokenize_prompt(sub, tokenizer, limits.vocab_size)
        sp = parse_sampling_params(sub.sampling_params, tokenizer, limits.vocab_size)
        sp = _fit_to_context(sp, len(ids), field, limits, items)
        rid = sub.rid if isinstance(sub.rid, str) else None
        for c_idx, (copy_rid, copy_sp) in enumerate(_copies(sp, rid)):
            if copy_sp.seed is not None and not _INT_MIN <= copy_sp.seed <= _INT_MAX:
                # Also catches seed + i of a fan-out running past the top.
                raise InvalidRequest(f"seed must be in [-2**63, 2**64), got {copy_sp.seed}",
                                     "sampling_params.seed")
            msg = TokenizedGenerateReq(
                rid=copy_rid, input_ids=ids, sampling_params=copy_sp,
                return_logprob=sub.return_logprob,
                # Clipped to what has the same effect (a start past the prompt: no prompt
                # logprobs; more alternatives than the vocabulary: all of them), so huge values
                # stay encodable.
                logprob_start_len=min(sub.logprob_start_len, len(ids)),
                top_logprobs_num=min(sub.top_logprobs_num, limits.vocab_size),  # tiny vocabs
                mm_items=items or None,
            )
            reqs.append(PreparedReq(msg, p_idx, c_idx))
    return PreparedRequest(reqs, obj.is_batch)
