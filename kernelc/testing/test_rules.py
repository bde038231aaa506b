"""One test per rule of LANGUAGE.md §6, on the NumPy reference backend, with default and tiny
tiles (so partial states are merged across tiles)."""

import numpy as np
import pytest

import kernelc as kc

NAN, INF = np.nan, np.inf


def k(src):
    return kc.kernel(src)


REDUCE = {
    name: k(f"kernel r(x: f64[i], y: f64[j]) -> {'i64' if name.startswith('arg') else 'f64'}[i] "
            f"{{ return {name}[j](y + 0 * x) }}")
    for name in ("sum", "mean", "max", "min", "argmax", "argmin", "logsumexp")
}
SOFTMAX = k("kernel r(x: f64[i], s: f64[j], v: f64[j, E]) -> f64[i, E] { return softmax[j](s + 0 * x, v) }")
KMIN = k("kernel r(x: f64[i], y: f64[j]) -> (f64[i, K], i64[i, K]) { d = y + 0 * x; return kmin[j, K](d), argkmin[j, K](d) }")
KMAX = k("kernel r(x: f64[i], y: f64[j]) -> (f64[i, K], i64[i, K]) { d = y + 0 * x; return kmax[j, K](d), argkmax[j, K](d) }")
X = np.zeros(2)


@pytest.mark.parametrize("name, expected", [
    ("sum", 0.0), ("mean", NAN), ("max", -INF), ("min", INF), ("argmax", -1), ("argmin", -1), ("logsumexp", -INF),
])
def test_empty_range(run, name, expected):
    out = run(REDUCE[name], X, np.zeros(0))
    np.testing.assert_array_equal(out, np.full(2, expected))


def test_empty_range_softmax_and_kmin(run):
    np.testing.assert_array_equal(run(SOFTMAX, X, np.zeros(0), np.zeros((0, 3))), np.zeros((2, 3)))
    vals, idx = run(KMIN, X, np.zeros(0), K=3)
    np.testing.assert_array_equal(vals, np.full((2, 3), INF))
    np.testing.assert_array_equal(idx, np.full((2, 3), -1))


def test_kmin_pads_when_m_below_k(run):
    vals, idx = run(KMIN, X, np.array([3.0, 1.0]), K=4)
    np.testing.assert_array_equal(vals[0], [1.0, 3.0, INF, INF])
    np.testing.assert_array_equal(idx[0], [1, 0, -1, -1])
    vals, idx = run(KMAX, X, np.array([3.0, 1.0]), K=3)
    np.testing.assert_array_equal(vals[0], [3.0, 1.0, -INF])
    np.testing.assert_array_equal(idx[0], [0, 1, -1])


@pytest.mark.parametrize("name", ["argmin", "argmax"])
def test_ties_go_to_the_smallest_index(run, name):
    y = np.array([5.0, 1.0, 7.0, 1.0, 7.0, 1.0, 7.0])
    want = 1 if name == "argmin" else 2
    np.testing.assert_array_equal(run(REDUCE[name], X, y), [want, want])


def test_argkmin_ties_in_index_order(run):
    y = np.array([2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 0.0])
    vals, idx = run(KMIN, X, y, K=5)
    np.testing.assert_array_equal(idx[0], [6, 1, 3, 5, 0])
    np.testing.assert_array_equal(vals[0], [0.0, 1.0, 1.0, 1.0, 2.0])
    vals, idx = run(KMAX, X, y, K=4)
    np.testing.assert_array_equal(idx[0], [0, 2, 4, 1])


@pytest.mark.parametrize("name", ["min", "max"])
def test_nan_propagates_through_min_max(run, name):
    y = np.array([1.0, NAN, -3.0, NAN, 9.0])
    assert np.isnan(run(REDUCE[name], X, y)).all()


@pytest.mark.parametrize("name", ["argmin", "argmax"])
def test_arg_extreme_returns_first_nan(run, name):
    y = np.array([1.0, -9.0, NAN, 9.0, NAN])
    np.testing.assert_array_equal(run(REDUCE[name], X, y), [2, 2])
    # as NumPy's argmin/argmax on the materialized matrix
    assert getattr(np, name)(y) == 2


def test_kmin_sorts_nan_last(run):
    y = np.array([NAN, 3.0, NAN, 1.0])
    vals, idx = run(KMIN, X, y, K=4)
    np.testing.assert_array_equal(idx[0], [3, 1, 0, 2])
    vals, idx = run(KMIN, X, y, K=6)
    np.testing.assert_array_equal(idx[0], [3, 1, 0, 2, -1, -1])  # NaNs before padding
    vals, idx = run(KMAX, X, y, K=3)
    np.testing.assert_array_equal(idx[0], [1, 3, 0])


def test_logsumexp_is_stable_and_handles_infinities(run):
    y = np.array([1000.0, 1000.0, -1000.0])
    np.testing.assert_allclose(run(REDUCE["logsumexp"], X, y), 1000.0 + np.log(2.0))
    assert (run(REDUCE["logsumexp"], X, np.array([-INF, -INF])) == -INF).all()
    assert (run(REDUCE["logsumexp"], X, np.array([1.0, INF])) == INF).all()
    assert np.isnan(run(REDUCE["logsumexp"], X, np.array([1.0, NAN]))).all()


def test_weighted_logsumexp(run):
    kern = k("kernel r(x: f64[i], s: f64[j], w: f64[j, E]) -> f64[i, E] { return logsumexp[j](s + 0 * x, w) }")
    s = np.array([700.0, 701.0, 699.5])
    w = np.array([[1.0, 0.0], [2.0, 0.0], [0.5, 0.0]])
    out = run(kern, X, s, w)
    want = 701.0 + np.log(np.exp(s - 701.0) @ w[:, 0])
    np.testing.assert_allclose(out[:, 0], want)
    assert (out[:, 1] == -INF).all()


def test_softmax_is_stable(run):
    s = np.array([1000.0, 1001.0, 999.0])
    v = np.arange(6.0).reshape(3, 2)
    p = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
    np.testing.assert_allclose(run(SOFTMAX, X, s, v), np.tile(p @ v, (2, 1)))


def test_softmax_of_all_minus_inf_is_zero(run):
    out = run(SOFTMAX, X, np.array([-INF, -INF]), np.ones((2, 2)))
    np.testing.assert_array_equal(out, np.zeros((2, 2)))


def test_sum_of_bools_counts_as_i64(run):
    kern = k("kernel count(x: f32[i, D], y: f32[j, D], r: f32) -> i64[i] { return sum[j](sqdist(x, y) < r * r) }")
    x = np.array([[0.0, 0.0], [10.0, 10.0]], np.float32)
    y = np.array([[0.1, 0.0], [0.0, 0.2], [5.0, 5.0], [10.0, 10.5]], np.float32)
    out = run(kern, x, y, 1.0)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [2, 1])


def test_integer_sums(run):
    kern = k("kernel s(x: i32[i], y: i32[j]) -> i64[i] { return sum[j](x * y) }")
    x = np.array([1, 2], np.int32)
    y = np.array([3, 4, 5], np.int32)
    np.testing.assert_array_equal(run(kern, x, y), [12, 24])


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_f32_sum_error_does_not_grow_with_m(backend):
    kern = k("kernel s(x: f32[i], y: f32[j]) -> f32[i] { return sum[j](y + 0 * x) }")
    rng = np.random.default_rng(0)
    for y in (np.full(2_000_000, 0.1, np.float32), rng.random(2_000_000, np.float32)):
        out = kern(np.zeros(1, np.float32), y, backend=backend)
        exact = float(y.astype(np.float64).sum())
        # a naive f32 loop is off by ~1e-3 here; blocked / f64 accumulation is within f32 rounding
        assert abs(out[0] - exact) / exact < 2e-7


def test_mean_over_j(run):
    kern = k("kernel m(x: f64[i], y: f64[j, D]) -> f64[i, D] { return mean[j](y * x) }")
    y = np.arange(12.0).reshape(4, 3)
    np.testing.assert_allclose(run(kern, np.array([1.0, 2.0]), y), np.outer([1.0, 2.0], y.mean(0)))


def test_reductions_over_i(run):
    kern = k("kernel r(x: f64[i], y: f64[j]) -> (f64[j], i64[j]) { d = abs(x - y); return min[i](d), argmin[i](d) }")
    x = np.array([0.0, 5.0, 10.0])
    y = np.array([4.0, 9.0, -1.0, 7.5])
    vals, idx = run(kern, x, y)
    d = np.abs(x[:, None] - y[None, :])
    np.testing.assert_array_equal(vals, d.min(0))
    np.testing.assert_array_equal(idx, d.argmin(0))


def test_several_reductions_one_pass(run):
    kern = k("""kernel nn(x: f32[i, D], y: f32[j, D]) -> (f32[i], i64[i]) {
        d = sqdist(x, y)
        return min[j](d), argmin[j](d)
    }""")
    rng = np.random.default_rng(0)
    x, y = rng.random((7, 3), np.float32), rng.random((11, 3), np.float32)
    vals, idx = run(kern, x, y)
    d = ((x[:, None].astype(np.float64) - y[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(idx, d.argmin(1))
    np.testing.assert_allclose(vals, d.min(1), rtol=1e-6)


def test_epilogue_after_reductions(run):
    kern = k("""kernel nw(x: f64[i], y: f64[j], t: f64[j]) -> f64[i] {
        w = exp(-square(x - y))
        num = sum[j](w * t); den = sum[j](w)
        return num / den
    }""")
    x, y, t = np.array([0.0, 1.0]), np.array([0.0, 0.5, 2.0]), np.array([1.0, 2.0, 3.0])
    w = np.exp(-(x[:, None] - y[None]) ** 2)
    np.testing.assert_allclose(run(kern, x, y, t), (w @ t) / w.sum(1))


def test_index_values_and_causal_mask(run):
    kern = k("kernel c(x: f64[i], y: f64[j]) -> f64[i] { return sum[j](where(j <= i, y, 0)) + f64(i) }")
    y = np.arange(1.0, 6.0)
    np.testing.assert_array_equal(run(kern, np.zeros(5), y), np.cumsum(y) + np.arange(5))


def test_pair_output_with_reduction_computed_first(run):
    kern = k("kernel sm(a: f32[i, j]) -> f32[i, j] { return exp(a - logsumexp[j](a)) }")
    a = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32)
    e = np.exp(a - a.max(1, keepdims=True))
    np.testing.assert_allclose(run(kern, a), e / e.sum(1, keepdims=True), rtol=1e-6)


def test_map_over_j(run):
    kern = k("kernel m(y: f32[j, D]) -> f32[j] { return norm(y) }")
    y = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.testing.assert_allclose(run(kern, y), np.linalg.norm(y, axis=1), rtol=1e-6)


def test_scalar_output(run):
    kern = k("kernel total(b: f64[j]) -> f64 { return sum[j](b) }")
    out = run(kern, np.arange(10.0))
    assert out.shape == () and out == 45.0


def test_k_as_literal(run):
    kern = k("kernel n(x: f64[i], y: f64[j]) -> i64[i, 2] { return argkmin[j, 2](abs(x - y)) }")
    np.testing.assert_array_equal(run(kern, np.array([0.0]), np.array([5.0, -1.0, 0.5])), [[2, 1]])


def test_two_pass_kernels(run):
    """Reductions over the index an output runs over need a pass of their own first."""
    centred = k("kernel c(x: f64[i]) -> f64[i] { return x - mean[i](x) }")
    np.testing.assert_allclose(run(centred, np.arange(5.0)), np.arange(5.0) - 2.0)
    col_softmax = k("kernel c(a: f64[i, j]) -> f64[i, j] { return exp(a - logsumexp[i](a)) }")
    a = np.random.default_rng(0).normal(size=(4, 6))
    e = np.exp(a - a.max(0))
    np.testing.assert_allclose(run(col_softmax, a), e / e.sum(0), rtol=1e-12)
    both = k("kernel c(x: f64[i], y: f64[j]) -> f64 { return sum[i](x) * sum[j](y) }")
    assert run(both, np.arange(3.0), np.arange(4.0)) == 18.0
