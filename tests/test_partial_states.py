"""Partial states on every backend (ir/passes/partial.py): a kernel's reductions computed in
blocks of j by the backend under test, merged with the monoids' combine and finished, equal one
pass of the same backend: indices exactly, values to rounding; with ties, NaN, empty blocks and
M < K."""

from __future__ import annotations

import numpy as np
import pytest

import kernelc as kc
from kernelc.api import Kernel
from kernelc.ir.passes import partial

KERNEL = """
kernel every(x: f64[i, D], y: f64[j, D], w: f64[j, 2], c: f64[i]) -> (f64[i], f64[i], f64[i], i64[i], i64[i], f64[i, 4], i64[i, 4], f64[i], f64[i, 2], f64[i, 2], f64[i, 4]) {
    d = sqdist(x, y)
    return c * sum[j](exp(-d)), mean[j](d), max[j](-d), argmax[j](-d), argmin[j](d), kmin[j, 4](d), argkmax[j, 4](-d), logsumexp[j](-d), logsumexp[j](-d, w), softmax[j](-d, w), kmax[j, 4](-d)
}
"""


def _blocked(run, kernel: kc.Kernel, x, y, w, c, cuts: list[int]) -> tuple:
    """The kernel computed as partial states of the blocks of j between `cuts`, merged in order."""
    plan = partial.plan(kernel.ir)
    part, finish = Kernel(plan.partial, ""), Kernel(plan.finish, "")
    states = None
    for start, stop in zip(cuts[:-1], cuts[1:]):
        outs = run(part, x, y[start:stop], w[start:stop], c)
        block = [partial.block_state(r, [outs[k] for k in ks], start, stop - start)
                 for r, ks in zip(plan.reductions, plan.parts)]
        states = block if states is None else [partial.combine(r, a, b) for r, a, b in zip(plan.reductions, states, block)]
    values = [partial.finalize(r, s) for r, s in zip(plan.reductions, states)]
    return run(finish, x, y[:0], w[:0], c, *values)


@pytest.mark.parametrize("cuts", [[0, 3, 3, 10, 25, 40], [0, 40], [0, 2, 3]], ids=["uneven+empty", "one", "M<K"])
def test_blocks_merge_like_one_pass(run, cuts):
    rng = np.random.default_rng(5)
    m = cuts[-1]
    x = np.round(rng.random((17, 2)) * 3) / 3  # ties
    y = np.round(rng.random((m, 2)) * 3) / 3
    y[m // 2, 1] = np.nan
    w = rng.standard_normal((m, 2))
    w[:, 1] = np.abs(w[:, 1])
    c = rng.random(17)
    kernel = kc.kernel(KERNEL)
    want = run(kernel, x, y, w, c)
    got = _blocked(run, kernel, x, y, w, c, cuts)
    for g, v in zip(got, want):
        if v.dtype == np.int64:
            np.testing.assert_array_equal(g, v)
        else:
            np.testing.assert_allclose(g, v, rtol=1e-10, atol=1e-12, equal_nan=True)


def test_narrow_float_states_keep_their_order(run):
    """bf16 K-best and arg-extreme states merge as floats (NaN last), not as integers."""
    import ml_dtypes

    kernel = kc.kernel("kernel n(x: bf16[i], y: bf16[j]) -> (bf16[i, 3], i64[i, 3], i64[i]) "
                       "{ d = x * y \n return kmax[j, 3](d), argkmin[j, 3](d), argmax[j](d) }")
    x = np.array([1.0, -2.0, 0.5], dtype=ml_dtypes.bfloat16)
    y = np.array([3.0, np.nan, -1.0, 2.0, 0.25, -3.0, np.nan], dtype=ml_dtypes.bfloat16)
    plan = partial.plan(kernel.ir)
    part, finish = Kernel(plan.partial, ""), Kernel(plan.finish, "")
    states = None
    for start, stop in [(0, 2), (2, 2), (2, 5), (5, 7)]:
        outs = run(part, x, y[start:stop])
        block = [partial.block_state(r, [outs[k] for k in ks], start, stop - start)
                 for r, ks in zip(plan.reductions, plan.parts)]
        states = block if states is None else [partial.combine(r, a, b) for r, a, b in zip(plan.reductions, states, block)]
    got = run(finish, x, y[:0], *[partial.finalize(r, s) for r, s in zip(plan.reductions, states)])
    want = run(kernel, x, y)
    np.testing.assert_array_equal(got[0].astype(np.float32), want[0].astype(np.float32))
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[2], want[2])
