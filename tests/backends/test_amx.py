"""The llvm backend's attention on the matrix unit (kernelc/backends/llvm/amx.py): which kernels
take it, its results against a float64 evaluation on awkward shapes and data, the calls it
passes to the f32 code, and that exact kernels never take it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import kernelc as kc
from kernelc.backends.llvm import amx

ATTENTION = "kernel t(x: f32[i, D], y: f32[j, D], v: f32[j, E]) -> f32[i, E] {{ return softmax[j]({score}, v) }}"
needs_amx = pytest.mark.skipif(amx.unavailable() is not None, reason=f"no AMX-BF16: {amx.unavailable()}")


def _match(source: str, d: int = 64, e: int = 64) -> amx.Attention | None:
    return amx.match(kc.kernel(source).optimized, {"D": d, "E": e})


@pytest.mark.parametrize("score, scale", [
    ("dot(x, y) * 0.125", 0.125), ("0.5 * dot(y, x)", 0.5), ("dot(x, y)", 1.0), ("dot(x, y) / 8.0", 0.125),
    ("dot(x, y) / 3.0", np.float32(1) / np.float32(3)), ("-dot(x, y)", -1.0), ("-(dot(x, y) * 2.0)", -2.0),
    ("dot(x, y) * rsqrt(f32(D))", 0.125)])
def test_match_recognizes_attention(score: str, scale: float) -> None:
    found = _match(ATTENTION.format(score=score))
    assert found is not None and not found.causal
    assert (found.queries, found.keys, found.values, found.dim, found.values_dim) == ("x", "y", "v", 64, 64)
    assert amx.factor(found, {}) == pytest.approx(float(scale), rel=1e-7)


def test_match_scale_parameter() -> None:
    source = "kernel t(x: f32[i, D], y: f32[j, D], v: f32[j, E], s: f32) -> f32[i, E] " \
             "{ return softmax[j](dot(x, y) / s, v) }"
    found = _match(source)
    assert found is not None
    assert amx.factor(found, {"s": np.float32(4)}) == 0.25
    assert amx.factor(found, {"s": np.float32(0)}) is None  # 1/0: not finite, the f32 code runs
    assert amx.factor(found, {"s": np.float32(np.inf)}) is None  # 1/inf = 0: every score 0


@pytest.mark.parametrize("mask", ["j <= i", "i >= j"])
def test_match_causal_mask(mask: str) -> None:
    found = _match(ATTENTION.format(score=f"where({mask}, dot(x, y) * 0.125, -inf)"))
    assert found is not None and found.causal


@pytest.mark.parametrize("source", [
    ATTENTION.format(score="sqdist(x, y)"),  # not a dot product
    ATTENTION.format(score="dot(x, y) + 1.0"),
    ATTENTION.format(score="exp(dot(x, y))"),
    ATTENTION.format(score="where(j < i, dot(x, y), -inf)"),  # row 0 sees no key
    ATTENTION.format(score="where(j <= i, dot(x, y), 0.0)"),
    ATTENTION.format(score="dot(x, y) * x[0]"),  # a factor per row
    "kernel t(x: f64[i, D], y: f64[j, D], v: f64[j, E]) -> f64[i, E] { return softmax[j](dot(x, y), v) }",
    "kernel t(x: f32[i, D], y: f32[j, D], v: f32[j, E]) -> f32[j, E] { return softmax[i](dot(x, y), v) }",
    "kernel t(x: f32[i, D], y: f32[j, D], w: f32[j]) -> f32[i] { return logsumexp[j](dot(x, y), w) }",
    "kernel t(x: f32[i, D], y: f32[j, D], v: f32[j, E]) -> (f32[i, E], f32[i]) "
    "{ return softmax[j](dot(x, y), v), max[j](dot(x, y)) }",
    "kernel t(x: f32[i, D], y: f32[j, D], v: f32[j, E], s: f32[i]) -> f32[i, E] "
    "{ return softmax[j](dot(x, y) * s, v) }",  # a factor per row
])
def test_match_rejects(source: str) -> None:
    assert _match(source) is None


def test_match_rejects_short_dot_products() -> None:
    assert _match(ATTENTION.format(score="dot(x, y)"), d=amx.MIN_DIM - 1) is None
    assert _match(ATTENTION.format(score="dot(x, y)"), d=amx.MIN_DIM) is not None


def _reference(x: np.ndarray, y: np.ndarray, v: np.ndarray, scale: float) -> np.ndarray:
    s = x.astype(np.float64) @ y.T.astype(np.float64) * scale
    p = np.exp(s - s.max(1, keepdims=True))
    return p @ v.astype(np.float64) / p.sum(1, keepdims=True)


def _relative(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def _executable(d: int, e: int, scale: str = "0.125") -> amx.AttentionExecutable:
    found = _match(ATTENTION.format(score=f"dot(x, y) * {scale}"), d, e)
    assert found is not None
    return amx.AttentionExecutable(found, threads=2, chunks_per_thread=2)


@needs_amx
@pytest.mark.parametrize("n, m, d, e", [
    (16, 1, 16, 1), (16, 31, 16, 17), (17, 33, 40, 64), (100, 77, 64, 64), (33, 2500, 100, 3), (64, 1100, 64, 16)])
def test_attention_against_float64(n: int, m: int, d: int, e: int) -> None:
    """Rows and keys not multiples of the tiles, dimensions not multiples of 32, several key
    tiles (2500 keys), one row and one key."""
    rng = np.random.default_rng(n * m + d)
    x, y = rng.standard_normal((n, d), np.float32), rng.standard_normal((m, d), np.float32)
    v = rng.standard_normal((m, e), np.float32)
    out = np.full((n, e), np.nan, np.float32)
    assert _executable(d, e).run({"x": x, "y": y, "v": v}, out)
    assert _relative(out, _reference(x, y, v, 0.125)) < 2e-5


@needs_amx
def test_attention_large_scores_and_negative_scale() -> None:
    """Scores spread over hundreds (the running maximum moves, most weights underflow to 0) and a
    negative factor (the smallest dot product wins). bf16x3 scores are off by about 2^-16 of
    sum |x_d y_d| |scale| (here ~5e-3 on scores of ~64), so the outputs by ~1e-4: f32 would be
    100x closer, which is why only a tolerance variant takes this path (its error measured)."""
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((40, 64), np.float32) * 4, rng.standard_normal((700, 64), np.float32) * 4
    v = rng.standard_normal((700, 8), np.float32)
    for scale in ("0.5", "-0.25"):
        out = np.empty((40, 8), np.float32)
        assert _executable(64, 8, scale).run({"x": x, "y": y, "v": v}, out)
        assert _relative(out, _reference(x, y, v, float(scale))) < 1e-3


def _causal_reference(x: np.ndarray, y: np.ndarray, v: np.ndarray, scale: float) -> np.ndarray:
    s = x.astype(np.float64) @ y.T.astype(np.float64) * scale
    s[np.arange(len(x))[:, None] < np.arange(len(y))[None, :]] = -np.inf
    p = np.exp(s - s.max(1, keepdims=True))
    return p @ v.astype(np.float64) / p.sum(1, keepdims=True)


@needs_amx
@pytest.mark.parametrize("n, m", [(16, 1), (40, 40), (33, 100), (100, 33), (1500, 1500), (70, 2100)])
def test_causal_attention_against_float64(n: int, m: int) -> None:
    """where(j <= i, s, -inf): blocks on the diagonal masked per row, blocks past it skipped;
    more rows than keys, more keys than rows, several key tiles."""
    source = ATTENTION.format(score="where(j <= i, dot(x, y) * rsqrt(f32(D)), -inf)")
    found = _match(source, 64, 24)
    assert found is not None and found.causal
    rng = np.random.default_rng(n + m)
    x, y = rng.standard_normal((n, 64), np.float32), rng.standard_normal((m, 64), np.float32)
    v = rng.standard_normal((m, 24), np.float32)
    out = np.full((n, 24), np.nan, np.float32)
    assert amx.AttentionExecutable(found, threads=2, chunks_per_thread=2).run({"x": x, "y": y, "v": v}, out)
    assert _relative(out, _causal_reference(x, y, v, 0.125)) < 2e-5


@needs_amx
def test_causal_example_takes_the_tile_path() -> None:
    """examples/attention.kc under a tolerance: within it of the NumPy reference backend."""
    import pathlib

    path = pathlib.Path(__file__).parents[2] / "examples" / "attention.kc"
    rng = np.random.default_rng(8)
    q, k, v = (rng.standard_normal((300, 64), np.float32) for _ in range(3))
    loose = kc.load(path, tolerance=1e-4, autotune="off").causal_attention
    exact = kc.load(path, autotune="off").causal_attention
    assert _stage(loose, q, k, v).pattern is not None
    assert _relative(loose(q, k, v, backend="llvm"), exact(q, k, v, backend="numpy")) < 1e-4


@needs_amx
@pytest.mark.parametrize("n, m, mask", [(40, 90, False), (100, 1500, False), (70, 70, True), (33, 3000, True)])
def test_logsumexp_of_scores(n: int, m: int, mask: bool) -> None:
    """logsumexp[j](c dot(x, y)) takes the tile path too (the sums without the numerators)."""
    score = "dot(x, y) * 0.25"
    source = "kernel t(x: f32[i, D], y: f32[j, D]) -> f32[i] " \
             f"{{ return logsumexp[j]({f'where(j <= i, {score}, -inf)' if mask else score}) }}"
    k = kc.kernel(source, tolerance=1e-4, autotune="off")
    found = _match(source, 48, 0)
    assert found is not None and found.values is None and found.causal == mask
    rng = np.random.default_rng(n + m)
    x, y = rng.standard_normal((n, 48), np.float32), rng.standard_normal((m, 48), np.float32)
    assert _stage(k, x, y).pattern is not None
    s = x.astype(np.float64) @ y.T.astype(np.float64) * 0.25
    if mask:
        s[np.arange(n)[:, None] < np.arange(m)[None, :]] = -np.inf
    top = s.max(1)
    want = top + np.log(np.exp(s - top[:, None]).sum(1))
    got = k(x, y, backend="llvm")
    assert got.dtype == np.float32 and _relative(got, want) < 2e-5


@needs_amx
def test_scalar_values() -> None:
    """softmax[j](s, w) with w: f32[j] (one value per key): the output is f32[i]."""
    source = "kernel t(x: f32[i, D], y: f32[j, D], w: f32[j]) -> f32[i] { return softmax[j](dot(x, y), w) }"
    k = kc.kernel(source, tolerance=1e-4, autotune="off")
    rng = np.random.default_rng(7)
    x, y, w = rng.random((40, 32), np.float32), rng.random((90, 32), np.float32), rng.random(90, np.float32)
    assert _stage(k, x, y, w).pattern is not None
    got = k(x, y, w, backend="llvm")
    assert got.shape == (40,)
    assert _relative(got, _reference(x, y, w[:, None], 1.0)[:, 0]) < 2e-5


@needs_amx
def test_narrow_inputs_take_the_tile_path() -> None:
    """bf16 inputs and output under a tolerance: the f32 values of the inputs go through the
    split copies (their lo parts are 0), the f32 result is rounded to bf16."""
    import ml_dtypes

    bf16 = ml_dtypes.bfloat16
    source = ("kernel t(x: bf16[i, D], y: bf16[j, D], v: bf16[j, E]) -> bf16[i, E] "
              "{ return softmax[j](dot(x, y) * 0.125, v) }")
    k = kc.kernel(source, tolerance=1e-2, autotune="off")
    rng = np.random.default_rng(9)
    x, y, v = (rng.standard_normal(shape).astype(bf16) for shape in ((40, 64), (300, 64), (300, 48)))
    pattern = _stage(k, x, y, v).pattern
    assert isinstance(pattern, amx.AttentionExecutable)
    out = np.full((40, 48), np.nan, bf16)
    assert pattern.run({"x": x, "y": y, "v": v}, out)
    want = _reference(*(a.astype(np.float32) for a in (x, y, v)), 0.125)
    assert _relative(out.astype(np.float32), want) <= float(ml_dtypes.finfo(bf16).eps)


@needs_amx
def test_attention_strided_and_ties() -> None:
    """Non-contiguous inputs, and equal keys (equal scores share the weight)."""
    rng = np.random.default_rng(4)
    x = rng.random((50, 128), np.float32)[:, ::2]
    y = np.repeat(rng.random((20, 64), np.float32), 5, axis=0)
    v = rng.random((100, 32), np.float32)[:, ::2]
    out = np.empty((50, 16), np.float32)
    assert _executable(64, 16).run({"x": x, "y": y, "v": v}, out)
    assert _relative(out, _reference(x, y, v, 0.125)) < 2e-5


@needs_amx
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 2.0 ** 41, 2.0 ** -41])
def test_unsafe_inputs_take_the_f32_code(bad: float) -> None:
    """Values the bf16 split cannot carry to ~16 bits: the tile path declines, and the kernel's
    result is the f32 code's (as exact, NaN and infinities included)."""
    rng = np.random.default_rng(5)
    x, y, v = rng.random((20, 64), np.float32), rng.random((40, 64), np.float32), rng.random((40, 4), np.float32)
    y[7, 3] = bad
    out = np.empty((20, 4), np.float32)
    assert not _executable(64, 4).run({"x": x, "y": y, "v": v}, out)
    source = ATTENTION.format(score="dot(x, y) * 0.125")
    got = kc.kernel(source, tolerance=1e-4, autotune="off")(x, y, v, backend="llvm")
    want = kc.kernel(source, autotune="off")(x, y, v, backend="llvm")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    finite = np.isfinite(want)
    assert np.allclose(got[finite], want[finite], rtol=1e-4, atol=1e-6)


@needs_amx
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("values", [True, False])
def test_few_row_blocks_split_the_keys(causal: bool, values: bool) -> None:
    """One block of rows on two threads: the keys split in two parts whose states are merged
    (causal: the second part lies past every row's diagonal, so its states are empty)."""
    score = "where(j <= i, dot(x, y), -inf)" if causal else "dot(x, y)"
    source = ATTENTION.format(score=score) if values else \
        f"kernel t(x: f32[i, D], y: f32[j, D]) -> f32[i] {{ return logsumexp[j]({score}) }}"
    found = _match(source, 32, 8 if values else 0)
    rng = np.random.default_rng(10)
    x, y, v = rng.standard_normal((20, 32), np.float32), rng.standard_normal((3000, 32), np.float32), \
        rng.standard_normal((3000, 8), np.float32)
    out = np.full((20, 8) if values else 20, np.nan, np.float32)
    ex = amx.AttentionExecutable(found, threads=2, chunks_per_thread=4)
    assert ex.run({"x": x, "y": y, "v": v}, out)
    s = x.astype(np.float64) @ y.T.astype(np.float64)
    if causal:
        s[np.arange(20)[:, None] < np.arange(3000)[None, :]] = -np.inf
    top = s.max(1, keepdims=True)
    p = np.exp(s - top)
    want = p @ v / p.sum(1, keepdims=True) if values else (top + np.log(p.sum(1, keepdims=True)))[:, 0]
    assert _relative(out, want) < 1e-4  # scores up to ~20, off by ~2^-16 sum |x_d y_d|: ~4e-5 here


def _split_bits(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """bf16 hi and lo bit patterns, each rounded to nearest even: the split amx_pack makes."""
    def rounded(f: np.ndarray) -> np.ndarray:
        u = f.astype(np.float32).view(np.uint32).astype(np.uint64)
        return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)

    hi = rounded(a)
    return hi, rounded(a - (hi.astype(np.uint32) << 16).view(np.float32))


def _layout_oracle(att: amx.Attention, x: np.ndarray, y: np.ndarray, v: np.ndarray) -> list[np.ndarray]:
    """The copies by the index formulas of amx_pack's docstring, element by element."""
    shapes = amx.layout_shapes(att, len(x), len(y))
    d, dp, ep = att.dim, att.padded_dim, att.padded_values
    queries = np.zeros(int(np.prod(shapes["queries"])), np.uint16)
    hi, lo = _split_bits(x)
    i, c = np.meshgrid(np.arange(len(x)), np.arange(d), indexing="ij")
    for shift, part in ((0, hi), (dp, lo)):
        a = c + shift
        queries[(((i // 16) * att.chunks + a // 32) * 16 + (a % 32) // 2) * 32 + 2 * (i % 16) + a % 2] = part
    keys = np.zeros(shapes["keys"], np.uint16)
    hi, lo = _split_bits(y)
    keys[:len(y), :d], keys[:len(y), dp:dp + d] = hi, lo
    values = np.zeros(int(np.prod(shapes["values"])), np.uint16)
    j, e = np.meshgrid(np.arange(len(v)), np.arange(att.values_dim), indexing="ij")
    for p, part in enumerate(_split_bits(v)):
        values[((((j // 32) * 2 + p) * (ep // 16) + e // 16) * 16 + e % 16) * 32 + j % 32] = part
    return [queries, keys.ravel(), values]


@needs_amx
@pytest.mark.parametrize("n, m, d, e", [(1, 1, 16, 1), (33, 70, 40, 17), (300, 1000, 64, 64)])
def test_native_copies_match_the_layout(n: int, m: int, d: int, e: int) -> None:
    """amx_pack's copies, made over row ranges on the threads, equal the documented layout
    bit for bit (split to nearest even, padding zero, 64-byte aligned)."""
    found = _match(ATTENTION.format(score="dot(x, y)"), d, e)
    rng = np.random.default_rng(n + m)
    x, y, v = (rng.standard_normal(shape, np.float32) for shape in ((n, d), (m, d), (m, e)))
    x[0, 0], y[-1, -1], v[0, -1] = 0.0, np.float32(2.0 ** -40), np.float32(-(2.0 ** 40))  # the safe range's ends
    copies = amx.AttentionExecutable(found, threads=2, chunks_per_thread=2).prepare(x, y, v)
    assert copies is not None
    for got, want in zip(copies, _layout_oracle(found, x, y, v)):
        assert got.ctypes.data % amx.ALIGN == 0
        np.testing.assert_array_equal(got.ravel(), want)


@needs_amx
def test_native_copies_count_unsafe_values() -> None:
    found = _match(ATTENTION.format(score="dot(x, y)"), 32, 4)
    ex = amx.AttentionExecutable(found, threads=2, chunks_per_thread=2)
    rng = np.random.default_rng(12)
    for where in ("x", "y", "v"):
        for bad in (np.nan, np.inf, 2.0 ** 40.5, 2.0 ** -40.5, -1e-30):
            arrays = {"x": rng.random((600, 32), np.float32), "y": rng.random((700, 32), np.float32),
                      "v": rng.random((700, 4), np.float32)}
            arrays[where][-1, -1] = bad
            assert ex.prepare(arrays["x"], arrays["y"], arrays["v"]) is None, (where, bad)


@needs_amx
def test_few_rows_take_the_f32_code() -> None:
    rng = np.random.default_rng(9)
    x = rng.random((amx.MIN_ROWS - 1, 64), np.float32)
    y, v = rng.random((50, 64), np.float32), rng.random((50, 4), np.float32)
    assert not _executable(64, 4).run({"x": x, "y": y, "v": v}, np.empty((len(x), 4), np.float32))
    source = ATTENTION.format(score="dot(x, y)")
    got = kc.kernel(source, tolerance=1e-4, autotune="off")(x, y, v, backend="llvm")
    assert _relative(got, _reference(x, y, v, 1.0)) < 1e-5


@needs_amx
def test_zero_scale_and_empty_calls_decline() -> None:
    source = "kernel t(x: f32[i, D], y: f32[j, D], v: f32[j, E], s: f32) -> f32[i, E] " \
             "{ return softmax[j](dot(x, y) * s, v) }"
    ex = amx.AttentionExecutable(_match(source, 64, 4), threads=1, chunks_per_thread=1)
    x, y, v = np.ones((40, 64), np.float32), np.ones((0, 64), np.float32), np.ones((0, 4), np.float32)
    assert not ex.run({"x": x, "y": y, "v": v, "s": np.float32(1)}, np.empty((40, 4), np.float32))
    y, v = np.ones((5, 64), np.float32), np.ones((5, 4), np.float32)
    assert not ex.run({"x": x, "y": y, "v": v, "s": np.float32(0)}, np.empty((40, 4), np.float32))
    assert ex.run({"x": x, "y": y, "v": v, "s": np.float32(2)}, np.empty((40, 4), np.float32))


def _stage(k: kc.Kernel, *args: np.ndarray):
    _, _, executable = k.compiled(*args, backend="llvm")
    return executable.stages[0][0]


@needs_amx
def test_only_tolerance_variants_use_the_matrix_unit() -> None:
    rng = np.random.default_rng(6)
    x, y, v = rng.random((64, 64), np.float32), rng.random((300, 64), np.float32), rng.random((300, 64), np.float32)
    source = ATTENTION.format(score="dot(x, y) * 0.125")
    exact = kc.kernel(source, autotune="off")
    loose = kc.kernel(source, tolerance=1e-4, autotune="off")
    assert not isinstance(_stage(exact, x, y, v).pattern, amx.AttentionExecutable)  # (the fused f32 path)
    assert isinstance(_stage(loose, x, y, v).pattern, amx.AttentionExecutable)
    assert "tdpbf16ps" in _stage(loose, x, y, v).code
    explained = loose.explain(backend="llvm", n=64, m=300, dims={"D": 64, "E": 64})
    assert "softmax attention on the AMX-BF16 tile unit" in explained
    assert "AMX" not in exact.explain(backend="llvm", n=64, m=300, dims={"D": 64, "E": 64})
    assert _relative(loose(x, y, v, backend="llvm"), _reference(x, y, v, 0.125)) < 1e-4


@needs_amx
def test_the_tuner_times_one_candidate_per_tile_unit_code() -> None:
    """Tolerance variants on the matrix unit ignore the row functions' knobs (rows, vector width,
    tiles, ...): the tuner keeps one candidate of each code, differing in threads or chunks (the
    exact variant, in the fused f32 path, also that path turned off); a backend without the
    optional hook keeps them all."""
    from kernelc.backends import registry
    from kernelc.backends.autotune import tuner
    from kernelc.backends.interface import Sizes

    k = kc.kernel(ATTENTION.format(score="dot(x, y) * 0.125"), tolerance=1e-4)
    backend = registry.get("llvm")
    sizes = Sizes(4096, 4096, (("D", 64), ("E", 64)))
    found = tuner.candidates(k, backend, sizes)
    for name in {c.variant for c in found}:
        ours = [dict(c.schedule.knobs) for c in found if c.variant == name]
        differ = {knob for s in ours[1:] for knob, value in s.items() if ours[0].get(knob) != value}
        allowed = {"threads", "chunks_per_thread"} | ({"fused_attention", "fused_sums"} if name == "exact" else set())
        assert differ <= allowed and len(ours) > 1
    assert any(c.variant != "exact" for c in found)

    class Plain:  # the protocol's methods only
        name = backend.name

        def candidates(self, kernel, sizes):
            return backend.candidates(kernel, sizes)

    assert len(tuner.candidates(k, Plain(), sizes)) > len(found)


@needs_amx
def test_matrix_unit_knob_turns_it_off() -> None:
    from kernelc.backends import registry
    from kernelc.backends.interface import Schedule, Sizes

    k = kc.kernel(ATTENTION.format(score="dot(x, y)"), tolerance=1e-4)
    backend = registry.get("llvm")
    sizes = Sizes(64, 300, (("D", 64), ("E", 64)))
    knobs = dict(backend.default_schedule(k.optimized, sizes).knobs) | {"approx_math": True}
    on = backend.compile(k.optimized, Schedule("llvm", tuple(sorted(knobs.items()))))
    off = backend.compile(k.optimized, Schedule("llvm", tuple(sorted((knobs | {"matrix_unit": False}).items()))))
    assert isinstance(on.stages[0][0].pattern, amx.AttentionExecutable)
    assert not isinstance(off.stages[0][0].pattern, amx.AttentionExecutable)  # (the exact fused path)


@needs_amx
def test_cached_tile_code_in_a_fresh_process(tmp_path) -> None:
    """Object code from the disk cache runs in a process that has not yet asked the OS for the
    tile state (a tile instruction before that faults)."""
    script = textwrap.dedent(f"""
        import numpy as np, kernelc as kc
        k = kc.kernel({ATTENTION.format(score="dot(x, y)")!r}, tolerance=1e-4, autotune="off")
        rng = np.random.default_rng(0)
        x, y, v = rng.random((32, 64), np.float32), rng.random((64, 64), np.float32), rng.random((64, 16), np.float32)
        s = x.astype(np.float64) @ y.T.astype(np.float64)
        p = np.exp(s - s.max(1, keepdims=True))
        want = p @ v / p.sum(1, keepdims=True)
        got = k(x, y, v, backend="llvm")
        _, _, ex = k.compiled(x, y, v, backend="llvm")
        assert ex.stages[0][0].pattern is not None
        print(float(np.abs(got - want).max()))
    """)
    env = {**os.environ, "KERNELC_CACHE_DIR": str(tmp_path)}  # PYTHONPATH too, where kernelc's needs are found
    for _ in range(2):  # compiled, then from the cache
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        assert float(done.stdout) < 1e-4
