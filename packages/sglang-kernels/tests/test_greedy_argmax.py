"""Row-wise argmax against torch.argmax: chunk edges, ties, -inf rows, strided rows, NaN."""

from __future__ import annotations

import json

import pytest
import torch
from kernel_cases import DEVICE, randn

from sglang.kernels import argmax, greedy_argmax
from sglang.kernels.greedy import TUNING_KERNEL, ArgmaxLaunch, tuning_key

LAUNCHES = [ArgmaxLaunch(block=64, programs=4), ArgmaxLaunch(block=32, programs=1),
            ArgmaxLaunch(block=16, programs=64)]


@pytest.mark.parametrize("launch", LAUNCHES, ids=["chunks", "one-chunk", "many-chunks"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("rows,n", [(1, 1), (1, 1000), (3, 257), (5, 64)])
def test_argmax_equals_torch(rows, n, dtype, launch):
    x = randn(rows, n, dtype=dtype, seed=rows * n)
    assert torch.equal(argmax(x, launch), x.argmax(dim=-1))


@pytest.mark.parametrize("launch", LAUNCHES, ids=["chunks", "one-chunk", "many-chunks"])
def test_argmax_ties_infinities_and_strided_rows(launch):
    """Ties in one block, across blocks and across chunks go to the first index; a row of
    -inf gives 0; rows of a wider buffer (a padded vocabulary sliced off) are read by stride."""
    wide = randn(6, 700, dtype=torch.float32, seed=1)
    x = wide[:, :600]
    x[0, [5, 6, 400, 599]] = 50.0
    x[1, [590, 599]] = 50.0
    x[2] = -float("inf")
    x[3, 300:] = 7.0
    x[3, :300] = -1.0
    x[4, 17] = float("inf")
    x[5, 333] = float("nan")
    got = argmax(x, launch)
    assert torch.equal(got, x.argmax(dim=-1))
    assert got.tolist()[:6] == [5, 590, 0, 300, 17, 333]


def test_argmax_rejects_bad_input():
    with pytest.raises(ValueError, match="contiguous last dim"):
        argmax(randn(4, 8, dtype=torch.float32).t())
    with pytest.raises(ValueError, match="empty row"):
        argmax(torch.empty(2, 0, device=DEVICE))
    assert argmax(torch.empty(0, 5, device=DEVICE)).shape == (0,)


def test_greedy_argmax_uses_the_kernel_only_where_measured_faster(override, monkeypatch):
    """No table entry, or one where torch won: torch's argmax; an entry with a launch: the
    kernel with that launch."""
    import sglang.kernels.greedy as mod

    x = randn(2, 300, dtype=torch.float32, seed=3)
    calls = []
    monkeypatch.setattr(mod, "argmax", lambda t, launch: calls.append(launch) or t.argmax(-1))
    assert torch.equal(greedy_argmax(x), x.argmax(-1)) and not calls
    if DEVICE.type == "cuda":
        return  # the table below is the interpreter's ("cpu")
    from sglang.kernels import tuning

    table = {tuning_key(300, torch.float32): {"1": {"launch": None},
                                              "64": {"launch": {"block": 32, "num_warps": 2}}}}
    (override / tuning.table_name(TUNING_KERNEL, "cpu")).write_text(json.dumps(table))
    tuning.load_table.cache_clear()
    assert torch.equal(greedy_argmax(x), x.argmax(-1)) and not calls
    big = randn(40, 300, dtype=torch.float32, seed=4)
    assert torch.equal(greedy_argmax(big), big.argmax(-1))
    assert calls == [ArgmaxLaunch(block=32, num_warps=2)]
