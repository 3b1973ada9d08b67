from __future__ import annotations

import math

import pytest
import torch

from sglang.protocol.sampling_params import SamplingParams
from sglang.runtime.layers.sampler import (
    SamplingBatch,
    apply_penalties,
    argmax_only,
    compute_logprobs,
    gather_token_logprobs,
    normalized_logprob,
    sample,
    top_logprobs,
)
from sglang.runtime.scheduler.output import OutputProcessor
from sglang.runtime.scheduler.request import Req

V = 32


def _batch(
    params: list[SamplingParams],
    *,
    seeds: list[int | None] | None = None,
    output_ids: list[list[int]] | None = None,
    prompt_ids: list[list[int]] | None = None,
    eos_block: list[list[int]] | None = None,
    vocab: int = V,
) -> SamplingBatch:
    b = len(params)
    gens: list[torch.Generator | None] = []
    for s in seeds or [None] * b:
        gens.append(None if s is None else torch.Generator("cpu").manual_seed(s))
    return SamplingBatch.build(
        params,
        gens,
        output_ids or [[] for _ in range(b)],
        prompt_ids or [[] for _ in range(b)],
        vocab,
        "cpu",
        eos_block or [[] for _ in range(b)],
    )


def _logits(b: int, vocab: int = V, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, vocab, generator=g) * 3


def test_greedy_is_argmax() -> None:
    logits = _logits(6)
    batch = _batch([SamplingParams(temperature=0.0)] * 6)
    assert batch.all_greedy and not batch.need_penalties
    assert torch.equal(sample(logits, batch), logits.argmax(-1))


def test_top_k_one_and_tiny_top_p_are_greedy() -> None:
    logits = _logits(8)
    expected = logits.argmax(-1)
    for _ in range(5):
        assert torch.equal(sample(logits, _batch([SamplingParams(top_k=1)] * 8)), expected)
        tiny = _batch([SamplingParams(top_p=1e-6)] * 8)
        assert tiny.need_top_p and not tiny.all_greedy
        assert torch.equal(sample(logits, tiny), expected)


def test_mixed_greedy_and_sampling_rows() -> None:
    logits = _logits(4)
    params = [
        SamplingParams(temperature=0.0),
        SamplingParams(),
        SamplingParams(top_k=1),
        SamplingParams(temperature=0.0),
    ]
    out = sample(logits, _batch(params))
    for i in (0, 2, 3):
        assert out[i] == logits[i].argmax()
    assert out.dtype == torch.int64 and out.shape == (4,)


def test_does_not_modify_logits() -> None:
    logits = _logits(3)
    before = logits.clone()
    params = [SamplingParams(repetition_penalty=1.5, frequency_penalty=0.5, min_new_tokens=2)] * 3
    sample(logits, _batch(params, output_ids=[[1, 2]] * 3, eos_block=[[0]] * 3))
    assert torch.equal(logits, before)


def _empirical(logits_row: torch.Tensor, p: SamplingParams, n: int) -> torch.Tensor:
    logits = logits_row.unsqueeze(0).expand(n, -1).contiguous()
    toks = sample(logits, _batch([p] * n, vocab=logits.shape[-1]))
    return torch.bincount(toks, minlength=logits.shape[-1]).float() / n


def test_temperature_distribution() -> None:
    torch.manual_seed(0)
    row = torch.tensor([1.0, 0.5, 0.0, -1.0])
    for temp in (0.5, 1.0, 2.0):
        freq = _empirical(row, SamplingParams(temperature=temp), 40000)
        expected = torch.softmax(row / temp, -1)
        assert torch.allclose(freq, expected, atol=0.012), (temp, freq, expected)


def test_top_k_distribution() -> None:
    torch.manual_seed(1)
    row = torch.tensor([2.0, 1.0, 0.5, 0.0, -0.5])
    freq = _empirical(row, SamplingParams(top_k=2), 40000)
    expected = torch.softmax(row[:2], -1)
    assert torch.allclose(freq[:2], expected, atol=0.012)
    assert freq[2:].sum() == 0


def test_top_p_keeps_nucleus() -> None:
    torch.manual_seed(2)
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    row = probs.log()
    freq = _empirical(row, SamplingParams(top_p=0.75), 40000)
    # 0.5 alone is < 0.75, so the nucleus is {0, 1}; token 2 starts after 0.8 of the mass.
    assert freq[2:].sum() == 0
    assert torch.allclose(freq[:2], torch.tensor([0.625, 0.375]), atol=0.012)


def test_top_p_applies_after_top_k() -> None:
    torch.manual_seed(3)
    row = torch.tensor([0.4, 0.3, 0.2, 0.1]).log()
    # Top-2 renormalised is [4/7, 3/7]; top_p=0.5 keeps only the first.
    freq = _empirical(row, SamplingParams(top_k=2, top_p=0.5), 5000)
    assert freq[0] == 1.0


def test_min_p() -> None:
    torch.manual_seed(4)
    row = torch.tensor([0.5, 0.3, 0.12, 0.08]).log()
    # Threshold 0.3 * 0.5 = 0.15 drops tokens 2 and 3.
    freq = _empirical(row, SamplingParams(min_p=0.3), 40000)
    assert freq[2:].sum() == 0
    assert torch.allclose(freq[:2], torch.tensor([0.625, 0.375]), atol=0.012)
    one = _empirical(row, SamplingParams(min_p=1.0), 2000)
    assert one[0] == 1.0


def test_top_k_without_top_p_uses_narrow_path() -> None:
    torch.manual_seed(5)
    logits = _logits(4, vocab=50)
    batch = _batch([SamplingParams(top_k=3), SamplingParams(top_k=5)] * 2, vocab=50)
    assert batch.need_top_k and batch.max_top_k == 5
    for _ in range(20):
        out = sample(logits, batch)
        for i, k in enumerate([3, 5, 3, 5]):
            assert out[i] in logits[i].topk(k).indices


def test_seeded_rows_reproduce_across_calls_and_batches() -> None:
    logits = _logits(1, vocab=64, seed=7)[0]
    target = SamplingParams(temperature=1.3, top_p=0.9, top_k=40)

    def run(position: int, others: list[SamplingParams], steps: int = 8) -> list[int]:
        params = list(others)
        params.insert(position, target)
        rows = [_logits(1, vocab=64, seed=100 + j)[0] for j in range(len(params))]
        rows[position] = logits
        batch_logits = torch.stack(rows)
        seeds: list[int | None] = [None] * len(params)
        seeds[position] = 1234
        # One generator per request for the whole generation, as the scheduler would keep.
        batch = _batch(params, seeds=seeds, vocab=64)
        out = []
        for _ in range(steps):
            out.append(int(sample(batch_logits, batch)[position]))
        return out

    alone = run(0, [])
    assert len(set(alone)) > 1  # genuinely random, not greedy
    assert run(0, []) == alone
    assert run(2, [SamplingParams(), SamplingParams(temperature=0.0), SamplingParams()]) == alone
    assert run(1, [SamplingParams(top_k=2), SamplingParams(min_p=0.2, seed=5)]) == alone
    assert run(3, [SamplingParams(top_k=3)] * 5) == alone


def test_different_seeds_differ() -> None:
    logits = _logits(1, vocab=64)[0].expand(2, -1).contiguous()
    p = [SamplingParams(temperature=2.0)] * 2
    batch = _batch(p, seeds=[1, 2], vocab=64)
    a = [sample(logits, batch).tolist() for _ in range(10)]
    assert any(x[0] != x[1] for x in a)


def test_penalties_match_hand_computation() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0, -2.0, 1.0], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]])
    params = [
        SamplingParams(repetition_penalty=2.0, frequency_penalty=0.5, presence_penalty=0.25),
        SamplingParams(),
    ]
    prompt = [[0, 1], [0]]
    output = [[2, 2, 1], [3]]
    batch = _batch(params, prompt_ids=prompt, output_ids=output, vocab=6)
    assert batch.need_penalties
    got = apply_penalties(logits, batch)
    # Row 0: rep on {0,1,2}: 2->1, -1->-2, 0.5->0.25; freq counts (output only): 2:2, 1:1.
    exp0 = [1.0, -2.0 - 0.5 - 0.25, 0.25 - 1.0 - 0.25, 3.0, -2.0, 1.0]
    assert torch.allclose(got[0], torch.tensor(exp0))
    assert torch.equal(got[1], logits[1])  # neutral params leave the row alone


def test_frequency_penalty_changes_greedy_choice() -> None:
    logits = torch.tensor([[1.0, 0.9, 0.0]])
    p = SamplingParams(temperature=0.0, frequency_penalty=0.2)
    assert int(sample(logits, _batch([p], output_ids=[[0]], vocab=3))[0]) == 1
    assert int(sample(logits, _batch([p], output_ids=[[]], vocab=3))[0]) == 0


def test_min_new_tokens_masks_eos() -> None:
    eos = 3
    logits = torch.zeros(2, 5)
    logits[:, eos] = 10.0
    p = SamplingParams(temperature=0.0, min_new_tokens=2)
    batch = _batch([p, p], output_ids=[[1], [1, 2]], eos_block=[[eos, 4], [eos, 4]], vocab=5)
    out = sample(logits, batch)
    assert int(out[0]) != eos  # still below min_new_tokens
    assert int(out[1]) == eos  # reached it: eos allowed again
    # Sampling rows too, over many draws.
    torch.manual_seed(0)
    q = SamplingParams(min_new_tokens=1)
    toks = sample(logits[:1].expand(500, -1), _batch([q] * 500, eos_block=[[eos]] * 500, vocab=5))
    assert not (toks == eos).any()


def test_unused_stages_are_skipped() -> None:
    b = _batch([SamplingParams(), SamplingParams(temperature=0.0, top_p=0.5)])
    assert not (b.need_top_p or b.need_top_k or b.need_min_p or b.need_penalties)
    assert b.eos_block is None and b.seen_mask is None and b.output_counts is None


def test_logprob_helpers() -> None:
    logits = _logits(3)
    lp = compute_logprobs(logits)
    assert lp.dtype == torch.float32
    assert torch.allclose(lp.exp().sum(-1), torch.ones(3))
    assert torch.allclose(lp, torch.log_softmax(logits.double(), -1).float(), atol=1e-5)
    ids = torch.tensor([0, 5, 31])
    assert torch.equal(gather_token_logprobs(lp, ids), lp[torch.arange(3), ids])
    ids2 = torch.tensor([[1, 2], [3, 4], [5, 6]])
    assert gather_token_logprobs(lp, ids2).shape == (3, 2)
    vals, idx = top_logprobs(lp, 4)
    assert vals.shape == (3, 4) and torch.equal(idx[:, 0], logits.argmax(-1))
    assert (vals[:, :-1] >= vals[:, 1:]).all()
    assert top_logprobs(lp, 100)[0].shape == (3, V)
    assert normalized_logprob([-1.0, -2.0, -3.0]) == pytest.approx(-2.0)
    assert normalized_logprob([]) == 0.0
    assert math.isfinite(normalized_logprob([-0.5]))


def test_bf16_logits_accepted() -> None:
    logits = _logits(2).bfloat16()
    out = sample(logits, _batch([SamplingParams(top_p=0.9), SamplingParams(temperature=0)]))
    assert out.shape == (2,) and int(out[1]) == int(logits[1].float().argmax())


def _req(i: int, params: SamplingParams, output_ids: list[int]) -> Req:
    return Req(rid=f"r{i}", prompt_ids=[5, 6, 7], params=params, output_ids=list(output_ids))


def _general(out: OutputProcessor, reqs: list[Req], logits: torch.Tensor,
             histories: list[list[int]] | None = None) -> torch.Tensor:
    """What `sample_on_device` does without its argmax shortcut."""
    batch = SamplingBatch.build(
        [r.params for r in reqs], [None] * len(reqs),
        histories or [r.output_ids for r in reqs], [r.prompt_ids for r in reqs], V, "cpu",
        [out._stop_ids(r) for r in reqs],
    )
    return sample(logits[:, :V], batch)


def test_argmax_only_rows() -> None:
    assert argmax_only(SamplingParams(temperature=0.0), 0)
    assert argmax_only(SamplingParams(top_k=1, temperature=0.7), 0)
    assert argmax_only(SamplingParams(temperature=0.0, min_new_tokens=2), 2)
    assert not argmax_only(SamplingParams(temperature=0.0, min_new_tokens=2), 1)
    assert not argmax_only(SamplingParams(), 0)
    for bad in ({"repetition_penalty": 1.1}, {"frequency_penalty": 0.5},
                {"presence_penalty": -0.5}, {"logit_bias": {"3": 2.0}}):
        assert not argmax_only(SamplingParams(temperature=0.0, **bad), 5), bad


def test_greedy_fast_path_equals_general_path() -> None:
    eos = 4
    out = OutputProcessor(None, {eos}, V)
    logits = _logits(6, vocab=V + 8)  # a padded head: columns past the vocabulary
    logits[:, V:] = 100.0
    # Row 2's top token is EOS, by a margin every rule below overturns.
    logits[2, eos] = logits[2, :V].max() + 1.0
    greedy = [_req(i, SamplingParams(temperature=0.0), [1] * i) for i in range(6)]
    fast = out.sample_on_device(greedy, logits)
    assert torch.equal(fast, _general(out, greedy, logits))
    assert torch.equal(fast, logits[:, :V].argmax(-1))
    # Penalties, a bias, a pending min_new_tokens or sampling on another row: the general path,
    # and the plain greedy rows keep their tokens.
    others = [
        SamplingParams(temperature=0.0, frequency_penalty=1.5),
        SamplingParams(temperature=0.0, repetition_penalty=3.0),
        SamplingParams(temperature=0.0, min_new_tokens=5),
        SamplingParams(temperature=0.0, logit_bias={"0": 90.0}),
        SamplingParams(temperature=0.9),
    ]
    for other in others:
        mixed = list(greedy)
        mixed[2] = _req(2, other, [int(fast[2])] * 2)
        got = out.sample_on_device(mixed, logits)
        assert torch.equal(got[[0, 1, 3, 4, 5]], fast[[0, 1, 3, 4, 5]]), other
        if other.is_greedy:
            assert torch.equal(got, _general(out, mixed, logits)), other
            assert int(got[2]) != int(fast[2]), other  # the penalty did change that row


def test_histories_built_only_when_read() -> None:
    eos = 4
    out = OutputProcessor(None, {eos}, V)
    logits = torch.zeros(3, V)
    logits[:, eos] = 10.0
    calls = []

    def histories() -> list[list[int]]:
        calls.append(1)
        return [[1], [1, 9], [1, 9, 9]]  # a verify step: one request, two drafts

    plain = _req(0, SamplingParams(temperature=0.0), [1])
    assert out.sample([plain] * 3, logits, histories) == [eos] * 3
    assert not calls
    # min_new_tokens=3 blocks EOS until the row's history holds 3 tokens.
    pending = _req(0, SamplingParams(temperature=0.0, min_new_tokens=3), [1])
    got = out.sample([pending] * 3, logits, histories)
    assert calls and got[:2] != [eos, eos] and eos not in got[:2] and got[2] == eos


@pytest.mark.gpu
def test_cuda_seeded_rows_and_stages() -> None:
    dev = torch.device("cuda")
    vocab = 1000
    target_logits = _logits(1, vocab=vocab, seed=11)[0].to(dev)
    target = SamplingParams(temperature=0.8, top_p=0.95, top_k=50, min_p=0.01)

    def run(position: int, b: int) -> list[int]:
        params = [SamplingParams(top_k=5, repetition_penalty=1.2)] * b
        params[position] = target
        gens: list[torch.Generator | None] = [None] * b
        gens[position] = torch.Generator(dev).manual_seed(99)
        logits = _logits(b, vocab=vocab, seed=b).to(dev)
        logits[position] = target_logits
        batch = SamplingBatch.build(params, gens, [[1, 2]] * b, [[3]] * b, vocab, dev, [[0]] * b)
        return [int(sample(logits, batch)[position]) for _ in range(10)]

    ref = run(0, 1)
    assert len(set(ref)) > 1
    assert run(0, 1) == ref
    assert run(3, 7) == ref
    assert run(6, 7) == ref
    logits = _logits(4, vocab=vocab).to(dev)
    gb = SamplingBatch.build(
        [SamplingParams(temperature=0.0)] * 4,
        [None] * 4,
        [[]] * 4,
        [[]] * 4,
        vocab,
        dev,
        [[]] * 4,
    )
    assert torch.equal(sample(logits, gb), logits.argmax(-1))
