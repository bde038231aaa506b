"""The llvm backend's exact f32 attention in fused AVX-512 micro-kernels
(kernelc/backends/llvm/fused_attention.py): which kernels take it, its results against a float64
evaluation and against the generic code on awkward shapes and data, and the calls it passes to
the generic code."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import kernelc as kc
from kernelc.backends import registry
from kernelc.backends.interface import Schedule
from kernelc.backends.llvm import fused_attention, fused_sums
from kernelc.backends.llvm.jit import vector_widths

ATTENTION = "kernel t(x: f32[i, D], y: f32[j, D], v: f32[j, E]) -> f32[i, E] {{ return softmax[j]({score}, v) }}"
needs_avx512 = pytest.mark.skipif(512 not in vector_widths(), reason="no AVX-512 on this host")


def _reference(x: np.ndarray, y: np.ndarray, v: np.ndarray, scale: float, causal: bool = False) -> np.ndarray:
    s = x.astype(np.float64) @ y.T.astype(np.float64) * scale
    if causal:
        s[np.arange(len(x))[:, None] < np.arange(len(y))[None, :]] = -np.inf
    p = np.exp(s - s.max(1, keepdims=True))
    return p @ v.astype(np.float64) / p.sum(1, keepdims=True)


def _relative(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


def _stage(k: kc.Kernel, *args: np.ndarray, **knobs):
    """The first stage of the llvm executable that a call with these arguments runs (knobs
    added to its default schedule)."""
    from kernelc.backends import runtime

    backend = registry.get("llvm")
    bound = runtime.bind(k.ir, args, {})
    schedule = backend.default_schedule(k.optimized, bound.sizes)
    schedule = Schedule("llvm", tuple(sorted((dict(schedule.knobs) | knobs).items())))
    return backend.compile(k.optimized, schedule).stages[0][0]


def _generic(k: kc.Kernel, *args: np.ndarray) -> np.ndarray:
    """The kernel's result from the generic row functions (knobs fused_attention and fused_sums False)."""
    from kernelc.backends import runtime

    backend = registry.get("llvm")
    bound = runtime.bind(k.ir, args, {})
    schedule = backend.default_schedule(k.optimized, bound.sizes)
    off = {"fused_attention": False, "fused_sums": False}
    schedule = Schedule("llvm", tuple(sorted((dict(schedule.knobs) | off).items())))
    call = runtime.allocate(k.ir, bound)
    backend.compile(k.optimized, schedule).run(call)
    return call.outputs[0]


@needs_avx512
@pytest.mark.parametrize("score, d, e", [("dot(x, y) * 0.125", 64, 64), ("dot(y, x) * rsqrt(f32(D))", 16, 128),
                                         ("-dot(x, y) / 4.0", 128, 16), ("0.5 * dot(x, y)", 32, 48)])
def test_match(score: str, d: int, e: int) -> None:
    found = fused_attention.match(kc.kernel(ATTENTION.format(score=score)).optimized, {"D": d, "E": e})
    assert found is not None and (found.dim, found.values_dim) == (d, e)


@pytest.mark.parametrize("source, d, e", [
    (ATTENTION.format(score="dot(x, y)"), 8, 64),  # shorter than amx.MIN_DIM: the row functions do well
    (ATTENTION.format(score="dot(x, y)"), 64, 300),  # more values than MAX_DIM
    (ATTENTION.format(score="dot(x, y)"), 512, 64),  # longer than MAX_DIM
    ("kernel t(x: f64[i, D], y: f64[j, D], v: f64[j, E]) -> f64[i, E] { return softmax[j](dot(x, y), v) }", 64, 64),
])
def test_match_rejects(source: str, d: int, e: int) -> None:
    assert fused_attention.match(kc.kernel(source).optimized, {"D": d, "E": e}) is None


@needs_avx512
@pytest.mark.parametrize("n, m, d, e, causal", [
    (1, 1, 16, 16, False), (3, 17, 16, 16, False), (37, 65, 64, 64, False), (200, 1000, 64, 64, False),
    (33, 129, 128, 32, False), (70, 70, 64, 64, True), (100, 37, 32, 16, True), (37, 300, 48, 80, True),
    (37, 65, 24, 8, False), (50, 90, 72, 1, True), (9, 200, 250, 200, False)])
def test_against_float64_and_the_generic_code(n: int, m: int, d: int, e: int, causal: bool) -> None:
    """Rows and keys not multiples of the micro-block, tile or panel; one row and one key; a
    causal mask with more keys than rows and more rows than keys; D and E not multiples of 16
    (zero-padded per call)."""
    score = "where(j <= i, dot(x, y) * 0.125, -inf)" if causal else "dot(x, y) * 0.125"
    k = kc.kernel(ATTENTION.format(score=score), autotune="off")
    rng = np.random.default_rng(n * m + d + e)
    x, y = rng.standard_normal((n, d), np.float32), rng.standard_normal((m, d), np.float32)
    v = rng.standard_normal((m, e), np.float32)
    assert isinstance(_stage(k, x, y, v).pattern, fused_attention.FusedAttentionExecutable)
    got = k(x, y, v, backend="llvm")
    assert _relative(got, _reference(x, y, v, 0.125, causal)) < 1e-5
    assert _relative(got, _generic(k, x, y, v)) < 1e-5


@needs_avx512
def test_scalar_values_are_padded_to_a_vector() -> None:
    """softmax[j](s, w) with w: f32[j] (E = 1, padded to 16 values per key): an f32[i] output."""
    k = kc.kernel("kernel t(x: f32[i, D], y: f32[j, D], w: f32[j]) -> f32[i] "
                  "{ return softmax[j](dot(x, y) * 0.125, w) }", autotune="off")
    rng = np.random.default_rng(5)
    x, y, w = rng.standard_normal((45, 40), np.float32), rng.standard_normal((70, 40), np.float32), \
        rng.standard_normal(70).astype(np.float32)
    pattern = _stage(k, x, y, w).pattern
    assert isinstance(pattern, fused_attention.FusedAttentionExecutable)
    out = np.full(45, np.nan, np.float32)
    assert pattern.run({"x": x, "y": y, "w": w}, out)
    assert _relative(out, _reference(x, y, w[:, None], 0.125)[:, 0]) < 1e-5
    np.testing.assert_array_equal(k(x, y, w, backend="llvm"), out)


@needs_avx512
@pytest.mark.parametrize("n, m, causal", [(1, 1, False), (37, 101, False), (300, 300, True), (90, 40, True)])
def test_logsumexp_of_scores(n: int, m: int, causal: bool) -> None:
    """logsumexp[j] of the scores (no values): the running maximum plus the log of the sum."""
    score = "where(j <= i, dot(x, y) * 0.125, -inf)" if causal else "dot(x, y) * 0.125"
    k = kc.kernel(f"kernel l(x: f32[i, D], y: f32[j, D]) -> f32[i] {{ return logsumexp[j]({score}) }}",
                  autotune="off")
    rng = np.random.default_rng(n + m)
    x, y = rng.standard_normal((n, 32), np.float32), rng.standard_normal((m, 32), np.float32)
    assert isinstance(_stage(k, x, y).pattern, fused_attention.FusedAttentionExecutable)
    s = x.astype(np.float64) @ y.T.astype(np.float64) * 0.125
    if causal:
        s[np.arange(n)[:, None] < np.arange(m)[None, :]] = -np.inf
    top = s.max(1)
    want = top + np.log(np.exp(s - top[:, None]).sum(1))
    np.testing.assert_allclose(k(x, y, backend="llvm"), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(k(x, y, backend="llvm"), _generic(k, x, y), rtol=1e-6, atol=1e-6)


@needs_avx512
def test_several_panels_in_one_chunk() -> None:
    """One thread and one chunk: rows in panels of PANEL (the last short, its last micro-block
    past the end), each panel a pass over every tile of keys."""
    k = kc.kernel(ATTENTION.format(score="dot(x, y) * 0.125"), autotune="off")
    n = 2 * fused_attention.PANEL + 7
    rng = np.random.default_rng(11)
    x, y = rng.standard_normal((n, 32), np.float32), rng.standard_normal((150, 32), np.float32)
    v = rng.standard_normal((150, 16), np.float32)
    pattern = _stage(k, x, y, v, threads=1, chunks_per_thread=1).pattern
    out = np.full((n, 16), np.nan, np.float32)
    assert pattern.run({"x": x, "y": y, "v": v}, out)
    assert _relative(out, _reference(x, y, v, 0.125)) < 1e-5


@needs_avx512
def test_spread_scores_and_factors() -> None:
    """Scores over hundreds (the running maximum moves, most weights underflow to 0), a negative
    factor, a division by a power of 2 (an exact reciprocal) and a scalar parameter."""
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((40, 64), np.float32) * 4, rng.standard_normal((700, 64), np.float32) * 4
    v = rng.standard_normal((700, 16), np.float32)
    for score, scale in (("dot(x, y) * 0.5", 0.5), ("-dot(x, y) * 0.25", -0.25), ("dot(x, y) / 8.0", 0.125)):
        got = kc.kernel(ATTENTION.format(score=score))(x, y, v, backend="llvm")
        assert _relative(got, _reference(x, y, v, scale)) < 1e-5
    k = kc.kernel("kernel t(x: f32[i, D], y: f32[j, D], v: f32[j, E], s: f32) -> f32[i, E] "
                  "{ return softmax[j](dot(x, y) * s, v) }")
    assert _relative(k(x, y, v, np.float32(0.3), backend="llvm"), _reference(x, y, v, np.float32(0.3))) < 1e-5


@needs_avx512
@pytest.mark.parametrize("rise", [100.0, 7.0, -100.0])
def test_the_rows_reference_moves_or_stays(rise: float) -> None:
    """Scores that rise along the keys by `rise` over a row (100: the reference moves on many
    tiles; 7: less than HEADROOM after the first tile, weights above 1; -100: it never moves
    after the first tile), the second half of the keys in random order: softmax and logsumexp
    against float64."""
    rng = np.random.default_rng(8)
    n, m, d = 40, 1000, 32
    u = rng.standard_normal(d).astype(np.float32)
    u /= np.linalg.norm(u)
    y = (np.linspace(0.0, 1.0, m, dtype=np.float32)[:, None] * u).astype(np.float32)
    y[m // 2:] = y[m // 2:][rng.permutation(m - m // 2)]
    x = (rng.uniform(0.5, 1.0, (n, 1)) * rise * 8 * u).astype(np.float32)
    v = rng.standard_normal((m, 16), np.float32)
    got = kc.kernel(ATTENTION.format(score="dot(x, y) * 0.125"), autotune="off")(x, y, v, backend="llvm")
    assert _relative(got, _reference(x, y, v, 0.125)) < 1e-5
    lse = kc.kernel("kernel l(x: f32[i, D], y: f32[j, D]) -> f32[i] { return logsumexp[j](dot(x, y) * 0.125) }",
                    autotune="off")
    s = x.astype(np.float64) @ y.T.astype(np.float64) * 0.125
    want = s.max(1) + np.log(np.exp(s - s.max(1, keepdims=True)).sum(1))
    np.testing.assert_allclose(lse(x, y, backend="llvm"), want, rtol=1e-6, atol=1e-6)


@needs_avx512
@pytest.mark.parametrize("case", ["nan", "inf", "huge", "zero scale", "no keys", "divisor 3"])
def test_calls_it_cannot_take_exactly_run_the_generic_code(case: str) -> None:
    """The path declines (and the generic code gives the language's results: NaN propagates,
    a factor of 0 weighs every key alike, no keys give 0); a division by 3 is not a product by
    an exact reciprocal."""
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((50, 32), np.float32), rng.standard_normal((90, 32), np.float32)
    v = rng.standard_normal((90, 16), np.float32)
    score = {"zero scale": "dot(x, y) * 0.0", "divisor 3": "dot(x, y) / 3.0"}.get(case, "dot(x, y) * 0.125")
    k = kc.kernel(ATTENTION.format(score=score))
    if case == "nan":
        x[3, 4] = np.nan
    elif case == "inf":
        v[7, 0] = np.inf
    elif case == "huge":
        y[0, 0] = np.float32(1e30)
    elif case == "no keys":
        y, v = y[:0], v[:0]
    pattern = _stage(k, x, y, v).pattern
    assert isinstance(pattern, fused_attention.FusedAttentionExecutable)
    assert not pattern.run({"x": x, "y": y, "v": v}, np.empty((50, 16), np.float32))
    got = k(x, y, v, backend="llvm")
    want = k(x, y, v, backend="numpy")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@needs_avx512
@pytest.mark.parametrize("x_type, y_type, v_type, out_type, causal", [
    ("bf16", "bf16", "bf16", "bf16", False), ("f16", "f16", "f16", "f16", True), ("bf16", "bf16", "f32", "f32", False),
    ("bf16", "f16", "f32", "f32", True), ("f32", "f32", "f16", "f32", False)])
def test_narrow_inputs_are_computed_in_f32(x_type: str, y_type: str, v_type: str, out_type: str,
                                           causal: bool) -> None:
    """f16 and bf16 inputs take the fused path as their f32 values (exact conversions); a narrow
    output is the f32 result rounded once; the factor's arithmetic is f32 too (c / 3 is not
    rounded to bf16): what the row functions compute (LANGUAGE.md §5)."""
    import ml_dtypes

    types = {"f32": np.float32, "f16": np.float16, "bf16": ml_dtypes.bfloat16}
    score = "dot(x, y) * (c / 3.0)"
    score = f"where(j <= i, {score}, -inf)" if causal else score
    k = kc.kernel(f"kernel t(x: {x_type}[i, D], y: {y_type}[j, D], v: {v_type}[j, E], c: {x_type}) -> "
                  f"{out_type}[i, E] {{ return softmax[j]({score}, v) }}", autotune="off")
    rng = np.random.default_rng(len(x_type + y_type + v_type) + causal)
    x = rng.standard_normal((70, 64)).astype(types[x_type])
    y = rng.standard_normal((150, 64)).astype(types[y_type])
    v = rng.standard_normal((150, 32)).astype(types[v_type])
    c = types[x_type](1.0)
    pattern = _stage(k, x, y, v, c).pattern
    assert isinstance(pattern, fused_attention.FusedAttentionExecutable)
    out = np.full((70, 32), np.nan, types[out_type])
    assert pattern.run({"x": x, "y": y, "v": v, "c": c}, out)  # taken, not passed to the generic code
    got = out.astype(np.float32)
    eps = max(float(ml_dtypes.finfo(types[out_type]).eps), 1e-5)  # the output's rounding, or f32's error
    generic = _generic(k, x, y, v, c).astype(np.float32)
    assert _relative(got, generic) <= eps
    want = _reference(x.astype(np.float32), y.astype(np.float32), v.astype(np.float32),
                      float(np.float32(1) / np.float32(3)), causal)
    assert _relative(got, want) <= eps
    np.testing.assert_array_equal(k(x, y, v, c, backend="llvm"), out)


@needs_avx512
def test_knob_turns_it_off_and_explain_names_it() -> None:
    """Off, the fused sums (which take a softmax of any f(s)) run it; both off, the generic code."""
    k = kc.kernel(ATTENTION.format(score="dot(x, y) * 0.125"), autotune="off")
    x = np.ones((8, 64), np.float32)
    assert isinstance(_stage(k, x, x, x, fused_attention=False).pattern, fused_sums.FusedSumExecutable)
    assert _stage(k, x, x, x, fused_attention=False, fused_sums=False).pattern is None
    assert "fused in AVX-512 FMA micro-kernels" in k.explain(backend="llvm", n=64, m=64, dims={"D": 64, "E": 64})


@needs_avx512
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(n=6, m=24, d=64, e=32, causal=False, spread=8.0, seed=15669)
@given(n=st.integers(1, 80), m=st.integers(1, 200), d=st.sampled_from([16, 23, 32, 64]),
       e=st.sampled_from([1, 16, 20, 32]), causal=st.booleans(), spread=st.sampled_from([0.01, 1.0, 8.0]),
       seed=st.integers(0, 2 ** 32 - 1))
def test_generated_shapes_and_data(n: int, m: int, d: int, e: int, causal: bool, spread: float, seed: int) -> None:
    score = "where(j <= i, dot(x, y) * 0.125, -inf)" if causal else "dot(x, y) * 0.125"
    k = kc.kernel(ATTENTION.format(score=score), autotune="off")
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, d)) * spread).astype(np.float32)
    y = (rng.standard_normal((m, d)) * spread).astype(np.float32)
    v = rng.standard_normal((m, e)).astype(np.float32)
    got, want = k(x, y, v, backend="llvm"), _reference(x, y, v, 0.125, causal)
    # a score's f32 dot product (any order) is off by at most D u sum_d |x_d y_d| |c| (u = 2^-24),
    # and a softmax moves by at most 2 max|v| per unit of score error: scores of hundreds carry
    # ~1e-4 into the weights (the hypothesis-found case n=6, m=24, d=64, spread=8, seed=15669 was
    # 2.7e-5 off, the generic code 0.5e-5: the orders differ)
    score_error = d * 2.0 ** -24 * float((np.abs(x).astype(np.float64) @ np.abs(y).T.astype(np.float64)).max()) * 0.125
    assert np.abs(got - want).max() <= (2 * score_error + 1e-5) * max(float(np.abs(v).max()), 1e-30)


@needs_avx512
def test_the_tuner_times_the_fused_path_once_per_thread_knob_and_off() -> None:
    """The fused path ignores the row functions' knobs: the tuner's candidates for the exact kernel
    differ in threads, chunks, or the path turned off (with the fused sums: the generic code, once)."""
    from kernelc.backends.autotune import tuner
    from kernelc.backends.interface import Sizes

    k = kc.kernel(ATTENTION.format(score="dot(x, y) * 0.125"))
    found = tuner.candidates(k, registry.get("llvm"), Sizes(4096, 4096, (("D", 64), ("E", 64))))
    knobs = [dict(c.schedule.knobs) for c in found]
    differ = {knob for s in knobs[1:] for knob, value in s.items() if knobs[0].get(knob) != value}
    assert differ <= {"threads", "chunks_per_thread", "fused_attention", "fused_sums"}
    assert sum(1 for s in knobs if s.get("fused_attention") is False and s.get("fused_sums") is False) == 1


EXTREME = "kernel m(x: {t}[i, D], y: {t}[j, D], s: f32) -> {out}[i] {{ return {red}[j]({score}) }}"
SCORES = ["dot(x, y)", "dot(y, x) * 0.5", "-dot(x, y) / s", "where(j <= i, dot(x, y), -inf)"]


@pytest.mark.parametrize("red", ["max", "min", "argmax", "argmin"])
def test_match_extremes(red: str) -> None:
    """max/min/argmax/argmin of the scores take the path (min and argmin as the maximum of the
    negated scores); the matrix unit does not take them (its scores are approximate); short
    dot products and a score that is not a product by a per-call factor do not."""
    out = "i64" if red.startswith("arg") else "f32"
    k = kc.kernel(EXTREME.format(t="f32", out=out, red=red, score="dot(x, y) * 0.5"))
    found = fused_attention.match(k.optimized, {"D": 64})
    assert found is not None and found.extreme.name.lower() == red and found.negate == (red in ("min", "argmin"))
    from kernelc.backends.llvm import amx
    assert amx.match(k.optimized, {"D": 64}) is None
    assert fused_attention.match(k.optimized, {"D": 8}) is None
    other = kc.kernel(EXTREME.format(t="f32", out=out, red=red, score="dot(x, y) * y[0]"))
    assert fused_attention.match(other.optimized, {"D": 64}) is None


@needs_avx512
@pytest.mark.parametrize("red", ["max", "min", "argmax", "argmin"])
@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize("n, m, d", [(1, 1, 16), (5, 63, 20), (37, 1000, 64), (260, 300, 16), (9, 700, 250)])
def test_extremes_against_the_reference(red: str, score: str, n: int, m: int, d: int) -> None:
    """Integer-valued inputs (every dot product exact, so the reference's are the same numbers)
    with repeated keys: the values equal the reference's and the indices are the first of equal
    scores; rows and keys not multiples of the micro-block, tile or panel; a causal mask."""
    if "where" in score and red in ("min", "argmin"):
        score = "where(j <= i, -dot(x, y), -inf)"
        red = {"min": "max", "argmin": "argmax"}[red]
    k = kc.kernel(EXTREME.format(t="f32", out="i64" if red.startswith("arg") else "f32", red=red, score=score),
                  autotune="off")
    rng = np.random.default_rng(n + m + d)
    x, y = rng.integers(-3, 4, (n, d)).astype(np.float32), rng.integers(-3, 4, (m, d)).astype(np.float32)
    y[m // 2:] = y[:m - m // 2]  # every score twice: the first index wins
    s = np.float32(4.0)
    assert isinstance(_stage(k, x, y, s).pattern, fused_attention.FusedAttentionExecutable)
    got, want = k(x, y, s, backend="llvm"), k(x, y, s, backend="numpy")
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, _generic(k, x, y, s))


@needs_avx512
@pytest.mark.parametrize("red", ["max", "argmax", "argmin"])
def test_extremes_of_rounded_scores(red: str) -> None:
    """Real-valued inputs: the extreme is the reference's within f32 rounding, and each index
    found is one whose float64 score is within rounding of the best (sums of products in another
    order than the generic code's); narrow inputs and output."""
    import ml_dtypes

    rng = np.random.default_rng(3)
    for t, out in (("f32", "f32"), ("bf16", "bf16")):
        dtype = np.float32 if t == "f32" else ml_dtypes.bfloat16
        k = kc.kernel(EXTREME.format(t=t, out="i64" if red.startswith("arg") else out, red=red,
                                     score="dot(x, y) * 0.125"), autotune="off")
        x, y = rng.standard_normal((300, 72)).astype(dtype), rng.standard_normal((2000, 72)).astype(dtype)
        s = np.float32(1.0)
        assert isinstance(_stage(k, x, y, s).pattern, fused_attention.FusedAttentionExecutable)
        got = k(x, y, s, backend="llvm")
        scores = x.astype(np.float64) @ y.astype(np.float64).T * 0.125
        if red == "max":
            eps = 1e-6 if t == "f32" else float(ml_dtypes.finfo(dtype).eps)
            np.testing.assert_allclose(got.astype(np.float64), scores.max(1), rtol=eps, atol=eps)
        else:
            best = scores.max(1) if red == "argmax" else scores.min(1)
            picked = scores[np.arange(len(x)), got]
            assert np.all(np.abs(picked - best) <= 1e-5 * np.abs(scores).max(1))


@needs_avx512
@pytest.mark.parametrize("case", ["nan", "inf", "huge"])
def test_extremes_it_cannot_take_exactly_run_the_generic_code(case: str) -> None:
    """NaN, inf and huge inputs leave the call to the generic code: argmax of a NaN score is its
    first index, as the language says."""
    k = kc.kernel(EXTREME.format(t="f32", out="i64", red="argmax", score="dot(x, y)"))
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((50, 32), np.float32), rng.standard_normal((90, 32), np.float32)
    y[{"nan": 40, "inf": 30, "huge": 20}[case], 0] = {"nan": np.nan, "inf": np.inf, "huge": 1e30}[case]
    s = np.float32(1.0)
    pattern = _stage(k, x, y, s).pattern
    assert not pattern.run({"x": x, "y": y, "s": s}, np.empty(50, np.int64))
    np.testing.assert_array_equal(k(x, y, s, backend="llvm"), k(x, y, s, backend="numpy"))


@needs_avx512
@pytest.mark.parametrize("red", ["kmax", "kmin", "argkmax", "argkmin"])
@pytest.mark.parametrize("k", [1, 5, 16])
@pytest.mark.parametrize("n, m, d", [(1, 1, 16), (5, 3, 20), (37, 1000, 64), (260, 300, 16), (9, 700, 250)])
def test_k_best_against_the_reference(red: str, k: int, n: int, m: int, d: int) -> None:
    """The K best scores (top-k retrieval) in the K slots of a vector: integer-valued inputs
    (exact dot products) with every key twice, so that equal scores must keep index order; fewer
    keys than K (the language's padding: -inf / +inf and -1)."""
    out = "i64" if red.startswith("arg") else "f32"
    kern = kc.kernel(f"kernel t(x: f32[i, D], y: f32[j, D], s: f32) -> {out}[i, {k}] "
                     f"{{ return {red}[j, {k}](dot(x, y) / s) }}", autotune="off")
    rng = np.random.default_rng(n + m + d + k)
    x, y = rng.integers(-3, 4, (n, d)).astype(np.float32), rng.integers(-3, 4, (m, d)).astype(np.float32)
    y[m // 2:] = y[:m - m // 2]
    s = np.float32(-2.0)
    assert isinstance(_stage(kern, x, y, s).pattern, fused_attention.FusedAttentionExecutable)
    got, want = kern(x, y, s, backend="llvm"), kern(x, y, s, backend="numpy")
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, _generic(kern, x, y, s))


@pytest.mark.parametrize("source", [
    "kernel t(x: f32[i, D], y: f32[j, D]) -> i64[i, 17] { return argkmax[j, 17](dot(x, y)) }",  # K > 16
    "kernel t(x: f32[i, D], y: f32[j, D]) -> f32[i, 4] { return kmax[j, 4](where(j <= i, dot(x, y), -inf)) }",
])
def test_k_best_the_path_leaves_to_the_generic_code(source: str) -> None:
    """More slots than a vector's lanes, and a causal mask (its masked keys are -inf values that
    fill the slots a row's own keys leave)."""
    assert fused_attention.match(kc.kernel(source).optimized, {"D": 64}) is None
