"""The llvm backend's sums of a function of a long sqdist or dot in fused AVX-512 micro-kernels
(kernelc/backends/llvm/fused_sums.py): which kernels take them, and their results against the
NumPy reference and the generic code on awkward shapes, data and per-call values."""

from __future__ import annotations

import re

import numpy as np
import pytest

import kernelc as kc
from kernelc.backends import registry, runtime
from kernelc.backends.interface import Schedule
from kernelc.backends.llvm import fused_sums, ops
from kernelc.backends.llvm.jit import vector_widths
from kernelc.ir.ops import Op
from kernelc.testing.runners import run_on

needs_avx512 = pytest.mark.skipif(512 not in vector_widths(), reason="no AVX-512 on this host")
SUM = "kernel g(x: f32[i, D], y: f32[j, D], b: f32[j], s: f32) -> f32[i] {{ return {red}[j]({term}) }}"
TERMS = ["exp(-sqdist(x, y) / (2 * s * s)) * b", "b * (dot(y, x) * s + 1.0) ** 3", "1 / (1 + sqdist(x, y))",
         "exp(-sqrt(sqdist(y, x)) * s) * b", "min(max(dot(x, y) * s, -1.0), 1.0)"]


def _pattern(k: kc.Kernel, args: dict, **knobs):
    llvm = registry.get("llvm")
    schedule = llvm.default_schedule(k.optimized, runtime.bind(k.ir, (), args).sizes)
    schedule = Schedule("llvm", tuple(sorted((dict(schedule.knobs) | knobs).items())))
    stages = llvm.compile(k.optimized, schedule).stages  # (a hoisting stage may come first)
    return next((stage.pattern for stage, _ in stages if stage.pattern is not None), None), schedule


def _generic(k: kc.Kernel, args: dict) -> np.ndarray:
    """The kernel's result from the generic row functions (knobs fused_sums and fused_attention
    False)."""
    off = {"fused_sums": False, "fused_attention": False}
    schedule = _pattern(k, args)[1]
    return run_on(registry.get("llvm"), k, **args,
                  schedule=Schedule("llvm", tuple(sorted((dict(schedule.knobs) | off).items()))))


def _args(rng: np.random.Generator, n: int, m: int, d: int) -> dict:
    return {"x": (rng.standard_normal((n, d)) * 0.3).astype(np.float32),
            "y": (rng.standard_normal((m, d)) * 0.3).astype(np.float32),
            "b": rng.standard_normal(m).astype(np.float32), "s": np.float32(1.5)}


@pytest.mark.parametrize("term", TERMS)
def test_match(term: str) -> None:
    k = kc.kernel(SUM.format(red="sum", term=term))
    pair = fused_sums.match(k.optimized, {"D": 64})
    if 512 not in vector_widths():
        assert pair is None
        return
    assert pair is not None and pair.dim == 64 and pair.distance == ("sqdist" in term)
    assert (pair.weight == "b") == ("b" in term)


@pytest.mark.parametrize("source, d", [
    (SUM.format(red="sum", term="exp(-sqdist(x, y)) * b"), 8),  # shorter than MIN_DIM
    (SUM.format(red="sum", term="atan2(dot(x, y), s) * b"), 64),  # a libm call per lane (no vector variant)
    (SUM.format(red="sum", term="dot(x, y) ** s"), 64),  # pow of a variable exponent
    (SUM.format(red="logsumexp", term="-sqdist(x, y) * s, b"), 64),  # a weighted log-sum-exp
    (SUM.format(red="softmax", term="-sqdist(x, y) * s, x[0] * b"), 64),  # values of both rows and keys
    (SUM.format(red="sum", term="exp(-sqdist(x, y)) * x[0]"), 64),  # a per-row factor
    (SUM.format(red="sum", term="exp(-sqdist(x, y)) + dot(x, y)"), 64),  # two long sums
    ("kernel g(x: f64[i, D], y: f64[j, D]) -> f64[i] { return sum[j](exp(-sqdist(x, y))) }", 64),
])
def test_match_rejects(source: str, d: int) -> None:
    assert fused_sums.match(kc.kernel(source).optimized, {"D": d}) is None


@needs_avx512
@pytest.mark.parametrize("red", ["sum", "mean"])
@pytest.mark.parametrize("term", TERMS)
@pytest.mark.parametrize("n, m, d", [(1, 1, 16), (5, 63, 20), (37, 1000, 64), (260, 300, 16), (9, 700, 250)])
def test_against_the_reference_and_the_generic_code(red: str, term: str, n: int, m: int, d: int) -> None:
    """Rows and keys not multiples of the micro-block, tile or panel, one row and one key, D not a
    multiple of 16 (zero-padded per call); within a sum's rounding of both."""
    k = kc.kernel(SUM.format(red=red, term=term), autotune="off")
    args = _args(np.random.default_rng(n + m + d), n, m, d)
    args = {p.name: args[p.name] for p in k.ir.params}
    assert isinstance(_pattern(k, args)[0], fused_sums.FusedSumExecutable)
    got = k(**args, backend="llvm")
    magnitude = k(**(args | ({"b": np.abs(args["b"])} if "b" in args else {})), backend="numpy")
    for want in (k(**args, backend="numpy"), _generic(k, args)):
        assert np.all(np.abs(got - want) <= 2e-6 * np.abs(magnitude).max() + 1e-30), (got, want)


@needs_avx512
def test_special_values_follow_ieee_as_the_generic_code() -> None:
    """NaN and inf inputs and weights, and keys whose term is inf (1 / 0 at a zero distance):
    the same NaN and inf pattern as the generic code's, the finite sums alike."""
    k = kc.kernel(SUM.format(red="sum", term="inv(sqdist(x, y)) * b"), autotune="off")
    rng = np.random.default_rng(7)
    args = _args(rng, 40, 300, 32)
    args["y"][5] = args["x"][3]  # a distance of 0 for row 3: inv(0) b is +-inf
    args["x"][7, 2], args["y"][100, 0] = np.nan, np.inf  # row 7 NaN; key 100's term 0 (inv(inf))
    assert isinstance(_pattern(k, args)[0], fused_sums.FusedSumExecutable)
    got, generic = k(**args, backend="llvm"), _generic(k, args)
    assert np.isnan(generic).sum() == 1 and np.isinf(generic).sum() == 1
    np.testing.assert_array_equal(np.isnan(got), np.isnan(generic))
    np.testing.assert_array_equal(got[np.isinf(generic)], generic[np.isinf(generic)])
    finite = np.isfinite(generic)
    np.testing.assert_allclose(got[finite], generic[finite], rtol=1e-5)


@needs_avx512
def test_no_keys_and_the_knob() -> None:
    """No keys: the generic code (sum 0, mean NaN); the knob turns the path off and the tuner
    times the path and the generic code."""
    k = kc.kernel(SUM.format(red="mean", term="exp(-sqdist(x, y)) * b"), autotune="off")
    args = _args(np.random.default_rng(1), 20, 0, 64)
    pattern, _ = _pattern(k, args)
    assert not pattern.run(args, np.empty(20, np.float32))
    assert np.isnan(k(**args, backend="llvm")).all()
    args = _args(np.random.default_rng(1), 20, 50, 64)
    assert _pattern(k, args, fused_sums=False)[0] is None
    llvm = registry.get("llvm")
    sizes = runtime.bind(k.ir, (), args).sizes
    offs = [s for s in llvm.candidates(k.optimized, sizes) if s.get("fused_sums") is False]
    assert len(offs) == 1 and llvm.canonical_schedule(k.optimized, llvm.default_schedule(k.optimized, sizes)).knobs \
        == tuple((key, v) for key, v in llvm.default_schedule(k.optimized, sizes).knobs
                 if key in ("dims", "threads", "chunks_per_thread"))


_SCORE = re.compile(r"(?<![a-z])s(?![a-z0-9])")  # the score `s` in a generated term
# libm's functions, which f may hold where libmvec has a 16-lane variant (glibc >= 2.35)
_LIBMVEC = ops.libm_vectorizes(Op.TANH, 16) and ops.libm_vectorizes(Op.LOG1P, 16)
_LIBM_TERMS = ["tanh({})", "sin({})", "cos({})", "erf({})", "atan({})", "expm1(-abs({}))", "log1p(abs({}))",
               "softplus({})", "sinh(min({}, 8.0))"]


def _terms(depth: int):
    """Expressions in the score `s`, a per-call scalar `c` and literals, built from the vector
    operations the path takes (exponents of -|e|: finite on the test's data)."""
    from hypothesis import strategies as st

    leaf = st.sampled_from(["s", "s", "c", "0.5", "2.0"])
    if depth == 0:
        return leaf
    sub = _terms(depth - 1)
    return st.one_of(
        leaf,
        st.builds(lambda a, f: f.format(a), sub, st.sampled_from(
            ["exp(-abs({}))", "sqrt(abs({}))", "inv(1.0 + abs({}))", "square({})", "-({})", "abs({})",
             "log(1.0 + abs({}))", "exp2(-abs({}))", "rsqrt(1.0 + abs({}))", "({}) ** 3", "sigmoid({})",
             "relu({})", "log2(1.0 + abs({}))"] + (_LIBM_TERMS if _LIBMVEC else []))),
        st.builds(lambda a, b, f: f.format(a, b), sub, sub, st.sampled_from(
            ["({} + {})", "({} - {})", "({} * {})", "min({}, {})", "max({}, {})", "({}) / (1.0 + abs({}))"])))


def _generated_case():
    from hypothesis import strategies as st

    return st.fixed_dictionaries({
        "term": _terms(3).filter(lambda t: _SCORE.search(t) is not None),
        "score": st.sampled_from(["sqdist(x, y)", "dot(x, y)"]), "red": st.sampled_from(["sum", "mean"]),
        "weight": st.booleans(), "n": st.integers(1, 40), "m": st.integers(1, 300), "d": st.integers(16, 80),
        "c": st.floats(-2.0, 2.0, width=32), "seed": st.integers(0, 2 ** 16)})


@needs_avx512
def test_generated_terms_against_the_reference() -> None:
    """Generated f(s) (and weights, reductions, shapes, scores, per-call values): the fused path
    takes each, and agrees with the generic code (which the NumPy reference checks elsewhere;
    f32 arithmetic in f, whose intermediate results may underflow where float64's do not)
    within a sum's rounding of sum |f(s) b|, with the same non-finite values."""
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.filter_too_much,
                                                                     HealthCheck.too_slow])
    @given(_generated_case())
    def check(case: dict) -> None:
        term = _SCORE.sub(case["score"], case["term"])
        weighted = f"({term}) * b" if case["weight"] else term
        source = (f"kernel g(x: f32[i, D], y: f32[j, D], b: f32[j], c: f32) -> f32[i] "
                  f"{{ return {case['red']}[j]({weighted}) }}")
        k = kc.kernel(source, autotune="off")
        rng = np.random.default_rng(case["seed"])
        # small integers: every score exact in f32 (as in the reference), so that only f's own
        # rounding and the sums' order remain
        args = {"x": rng.integers(-2, 3, (case["n"], case["d"])).astype(np.float32),
                "y": rng.integers(-2, 3, (case["m"], case["d"])).astype(np.float32),
                "b": rng.standard_normal(case["m"]).astype(np.float32), "c": np.float32(case["c"])}
        pattern, _ = _pattern(k, args)
        assert isinstance(pattern, fused_sums.FusedSumExecutable), source
        got, want = k(**args, backend="llvm"), _generic(k, args)
        size = _generic(kc.kernel(source.replace(f"{case['red']}[j](", f"{case['red']}[j](abs(", 1)
                                  .replace(" }", ") }"), autotune="off"), args)
        finite = np.isfinite(want)
        np.testing.assert_array_equal(np.isfinite(got), finite, err_msg=source)
        assert np.all(np.abs(got - want)[finite] <= 1e-5 * size[finite] + 1e-30), source

    check()



@needs_avx512
@pytest.mark.parametrize("term", ["floor(s * c)", "ceil(s * c) * b", "round(s * c)", "sign(s - 2.0) * b",
                                  "step(s - 3.0) * b"] + [f.format("s * c") for f in _LIBM_TERMS])
def test_more_functions_of_the_score(term: str) -> None:
    """Rounding, sign and step functions of integer scores (exact in both codes and in the
    reference's f64, so no term sits across a step from the other's), and libm's
    functions through libmvec's 16-lane variants, called on the score vectors where the host has
    them (the generic code's loop vectorizer calls the same variants; otherwise f holding one
    leaves the kernel to the generic code): the fused path against the generic code and the
    reference."""
    source = (f"kernel g(x: f32[i, D], y: f32[j, D], b: f32[j], c: f32) -> f32[i] "
              f"{{ return sum[j]({_SCORE.sub('sqdist(x, y)', term)}) }}")
    k = kc.kernel(source, autotune="off")
    rng = np.random.default_rng(5)
    args = {"x": rng.integers(-2, 3, (37, 40)).astype(np.float32),
            "y": rng.integers(-2, 3, (300, 40)).astype(np.float32),
            "b": rng.standard_normal(300).astype(np.float32), "c": np.float32(0.25)}  # s * c exact in f32 too
    args = {p.name: args[p.name] for p in k.ir.params}
    libm = any(name in term for name in ("tanh", "sin", "cos", "erf", "atan", "expm1", "log1p", "softplus"))
    fused = isinstance(_pattern(k, args)[0], fused_sums.FusedSumExecutable)
    assert fused == (_LIBMVEC or not libm), term
    got, generic = k(**args, backend="llvm"), _generic(k, args)
    size = float(np.abs(generic).max()) + 1.0
    np.testing.assert_allclose(got, generic, rtol=0, atol=2e-6 * size * 300)
    np.testing.assert_allclose(got, k(**args, backend="numpy"), rtol=0, atol=2e-6 * size * 300)


@needs_avx512
@pytest.mark.parametrize("red", ["sum", "mean"])
def test_values_of_the_row_and_of_the_key(red: str) -> None:
    """f may read scalar parameters of the row and of the key (adaptive bandwidths h_i h_j, a
    shift per row): each row's value splat, the keys' values a vector per 16 keys (zero past m)."""
    k = kc.kernel("kernel g(x: f32[i, D], y: f32[j, D], hx: f32[i], hy: f32[j]) -> f32[i] "
                  f"{{ return {red}[j](exp(-sqdist(x, y) / (hx * hy)) + inv(hx + sqdist(x, y) * hy)) }}",
                  autotune="off")
    rng = np.random.default_rng(4)
    for n, m, d in ((1, 1, 16), (37, 1000, 64), (9, 70, 20)):
        args = {name: v for name, v in _args(rng, n, m, d).items() if name in ("x", "y")}
        args |= {"hx": rng.uniform(0.5, 2, n).astype(np.float32), "hy": rng.uniform(0.5, 2, m).astype(np.float32)}
        pair = fused_sums.match(k.optimized, {"D": d})
        assert pair is not None and [v.arg for v in pair.row_values + pair.key_values] == ["hx", "hy"]
        assert isinstance(_pattern(k, args)[0], fused_sums.FusedSumExecutable)
        got, want = k(**args, backend="llvm"), k(**args, backend="numpy")
        np.testing.assert_allclose(got, want, rtol=2e-6 * max(1.0, float(np.abs(want).max())), atol=1e-6)
        np.testing.assert_allclose(got, _generic(k, args), rtol=1e-5, atol=1e-6)


@needs_avx512
def test_one_side_expressions_are_computed_per_call() -> None:
    """A cosine similarity's norms (norm(x) of the row, norm(y) of the key: component sums of one
    side, evaluated per call in NumPy) with or without the hoisting stage that moves norm(y) out."""
    k = kc.kernel("kernel g(x: f32[i, D], y: f32[j, D], b: f32[j]) -> f32[i] "
                  "{ return sum[j](exp(dot(x, y) / (norm(x) * norm(y))) * b) }", autotune="off")
    pair = fused_sums.match(k.optimized, {"D": 64})
    assert pair is not None and len(pair.row_values) == len(pair.key_values) == 1
    rng = np.random.default_rng(6)
    for n, m in ((37, 1000), (5, 63), (300, 2000)):
        args = {name: v for name, v in _args(rng, n, m, 64).items() if name in ("x", "y", "b")}
        for hoist in (False, True):
            schedule = _pattern(k, args, hoist=hoist)[1]
            llvm = registry.get("llvm")
            ex = llvm.compile(k.optimized, schedule)
            assert any(isinstance(stage.pattern, fused_sums.FusedSumExecutable) for stage, _ in ex.stages)
            got = run_on(llvm, k, schedule=schedule, **args)
            want = k(**args, backend="numpy")
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))
        np.testing.assert_allclose(k(**args, backend="llvm"), _generic(k, args), rtol=1e-5,
                                   atol=1e-5 * float(np.abs(want).max()))


@needs_avx512
@pytest.mark.parametrize("term", ["g - sqdist(x, y) / s", "-sqrt(sqdist(x, y)) * s", "dot(x, y) / (norm(x) * norm(y))",
                                  "g * tanh(dot(x, y) * s)"])
@pytest.mark.parametrize("n, m, d", [(1, 1, 16), (37, 1000, 64), (9, 70, 20), (300, 2000, 250)])
def test_logsumexp_of_terms(term: str, n: int, m: int, d: int) -> None:
    """Sinkhorn's soft minimum `logsumexp[j](g - sqdist / eps)` and others in the attention's
    online state (a reference that moves only by more than HEADROOM): against the reference and
    the generic code, within a few f32 roundings of the sum's scale."""
    k = kc.kernel(f"kernel g(x: f32[i, D], y: f32[j, D], g: f32[j], s: f32) -> f32[i] "
                  f"{{ return logsumexp[j]({term}) }}", autotune="off")
    rng = np.random.default_rng(n + m + d)
    args = {"x": rng.standard_normal((n, d)).astype(np.float32), "y": rng.standard_normal((m, d)).astype(np.float32),
            "g": (rng.standard_normal(m) * 30).astype(np.float32), "s": np.float32(0.7)}
    args = {p.name: args[p.name] for p in k.ir.params}
    assert isinstance(_pattern(k, args)[0], fused_sums.FusedSumExecutable)
    got = k(**args, backend="llvm")
    for want in (k(**args, backend="numpy"), _generic(k, args)):
        np.testing.assert_allclose(got, want, rtol=0, atol=4e-6 * (1.0 + float(np.abs(want).max())))


VALUES = ("kernel g(x: f32[i, D], y: f32[j, D], v: {t}[j, E], s: f32) -> {out}[i, E] "
          "{{ return {red}[j]({term} * v) }}")


def test_match_values() -> None:
    """Sums of f(s) times a vector of values per key (kernel regression with several outputs,
    mean shift on embeddings), f32 or narrow; values longer than MAX_DIM go to the generic code."""
    term = "exp(-sqdist(x, y) * s)"
    for t in ("f32", "f16", "bf16"):
        pair = fused_sums.match(kc.kernel(VALUES.format(t=t, out="f32", red="sum", term=term)).optimized,
                                {"D": 64, "E": 40})
        if 512 not in vector_widths():
            assert pair is None
            return
        assert pair is not None and pair.values == "v" and pair.values_dim == 40 and pair.weight is None
    assert fused_sums.match(kc.kernel(VALUES.format(t="f32", out="f32", red="sum", term=term)).optimized,
                            {"D": 64, "E": fused_sums.MAX_DIM + 1}) is None


@needs_avx512
@pytest.mark.parametrize("red", ["sum", "mean"])
@pytest.mark.parametrize("term", ["exp(-sqdist(x, y) * s)", "dot(x, y) * s", "inv(1.0 + sqdist(x, y))"])
@pytest.mark.parametrize("n, m, d, e", [(1, 1, 16, 2), (37, 1000, 64, 64), (5, 63, 20, 17), (9, 700, 250, 250),
                                        (260, 300, 16, 3)])
def test_values_against_the_reference_and_the_generic_code(red: str, term: str, n: int, m: int, d: int,
                                                             e: int) -> None:
    """E not a multiple of 16 (v and the output padded per call), one key, rows past a panel:
    within a sum's rounding of sum |f(s) v| of both."""
    k = kc.kernel(VALUES.format(t="f32", out="f32", red=red, term=term), autotune="off")
    rng = np.random.default_rng(n + m + d + e)
    args = {"x": (rng.standard_normal((n, d)) * 0.3).astype(np.float32),
            "y": (rng.standard_normal((m, d)) * 0.3).astype(np.float32),
            "v": rng.standard_normal((m, e)).astype(np.float32), "s": np.float32(10.0 / d)}  # exp(-s d2) of O(1)
    assert isinstance(_pattern(k, args)[0], fused_sums.FusedSumExecutable)
    got = k(**args, backend="llvm")
    assert got.shape == (n, e)
    size = np.abs(k(**(args | {"v": np.abs(args["v"])}), backend="numpy")).max()
    for want in (k(**args, backend="numpy"), _generic(k, args)):
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * size + 1e-30)


@needs_avx512
@pytest.mark.parametrize("t", ["f16", "bf16"])
@pytest.mark.parametrize("red", ["sum", "softmax"])
def test_narrow_values_are_taken_in_f32(t: str, red: str) -> None:
    """f16 and bf16 values (and embeddings) are their f32 values, as the generic code takes them
    (LANGUAGE.md §5); an output of their type is the f32 result rounded once."""
    import ml_dtypes

    types = {"f16": np.float16, "bf16": ml_dtypes.bfloat16}
    body = "sum[j](exp(-sqdist(x, y) * s) * v)" if red == "sum" else "softmax[j](-sqdist(x, y) * s, v)"
    k = kc.kernel(f"kernel g(x: {t}[i, D], y: {t}[j, D], v: {t}[j, E], s: {t}) -> {t}[i, E] {{ return {body} }}",
                  autotune="off")
    rng = np.random.default_rng(11)
    args = {"x": rng.standard_normal((30, 40)).astype(types[t]), "y": rng.standard_normal((500, 40)).astype(types[t]),
            "v": rng.standard_normal((500, 20)).astype(types[t]), "s": types[t](0.05)}
    assert isinstance(_pattern(k, args)[0], fused_sums.FusedSumExecutable)
    got, generic = k(**args, backend="llvm"), _generic(k, args)
    assert got.dtype == types[t]
    # the f32 results agree to their sums' order; rounded to the narrow type, within an ulp of it
    eps = float(ml_dtypes.finfo(types[t]).eps)
    np.testing.assert_allclose(got.astype(np.float32), generic.astype(np.float32), rtol=eps,
                               atol=eps * float(np.abs(generic.astype(np.float32)).max()) * 1e-2)


@needs_avx512
@pytest.mark.parametrize("red", ["sum", "softmax"])
def test_values_with_the_keys_scalars(red: str) -> None:
    """Two scalars of the key (a bandwidth and a shift per point) beside a vector of values: the
    keys' scalars are rows of whole tiles, however many keys (70 here: not a multiple of 64)."""
    term = "exp(-sqdist(x, y) / hy) + gy"
    body = f"sum[j](({term}) * v)" if red == "sum" else f"softmax[j]({term}, v)"
    k = kc.kernel(f"kernel g(x: f32[i, D], y: f32[j, D], v: f32[j, E], hy: f32[j], gy: f32[j]) -> f32[i, E] "
                  f"{{ return {body} }}", autotune="off")
    rng = np.random.default_rng(12)
    args = {"x": rng.standard_normal((20, 32)).astype(np.float32),
            "y": rng.standard_normal((70, 32)).astype(np.float32),
            "v": rng.standard_normal((70, 5)).astype(np.float32), "hy": rng.uniform(1, 3, 70).astype(np.float32),
            "gy": rng.standard_normal(70).astype(np.float32)}
    assert len(fused_sums.match(k.optimized, {"D": 32, "E": 5}).key_values) == 2
    assert isinstance(_pattern(k, args)[0], fused_sums.FusedSumExecutable)
    got, want = k(**args, backend="llvm"), k(**args, backend="numpy")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))


@needs_avx512
def test_values_special() -> None:
    """NaN and inf in the values and in the terms (1 / 0 at a zero distance): the generic code's
    NaN and inf places."""
    k = kc.kernel(VALUES.format(t="f32", out="f32", red="sum", term="inv(sqdist(x, y))"), autotune="off")
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((20, 32)).astype(np.float32), rng.standard_normal((300, 32)).astype(np.float32)
    v = rng.standard_normal((300, 20)).astype(np.float32)
    y[4] = x[2]  # row 2's term for key 4 is +inf: inf times v[4] in every value
    v[9, 3], v[10, 5] = np.nan, np.inf  # value 3 NaN in every row; value 5 +-inf (or NaN with row 2)
    args = {"x": x, "y": y, "v": v, "s": np.float32(1.0)}
    assert isinstance(_pattern(k, args)[0], fused_sums.FusedSumExecutable)
    got, generic = k(**args, backend="llvm"), _generic(k, args)
    assert np.isnan(generic).sum() >= 20 and np.isinf(generic).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(generic))
    np.testing.assert_array_equal(got[np.isinf(generic)], generic[np.isinf(generic)])
    finite = np.isfinite(generic)
    np.testing.assert_allclose(got[finite], generic[finite], rtol=1e-5, atol=1e-5)


SOFTMAX = "kernel g(x: f32[i, D], y: f32[j, D], v: f32{v}, s: f32) -> f32{out} {{ return softmax[j]({term}, v) }}"


@needs_avx512
@pytest.mark.parametrize("term", ["-sqdist(x, y) / s", "dot(x, y) / (norm(x) * norm(y) * s)",
                                  "-sqrt(sqdist(x, y)) * s"])
@pytest.mark.parametrize("n, m, d, e", [(1, 1, 16, 2), (37, 1000, 64, 64), (9, 700, 250, 250), (260, 300, 16, 0)])
def test_softmax_of_terms(term: str, n: int, m: int, d: int, e: int) -> None:
    """Nadaraya-Watson `softmax[j](-sqdist(x, y) / h, v)` and others with vector values (E = 0:
    one value per key) in the attention's online state and numerator loop: against the
    reference and the generic code."""
    shapes = ("[j]", "[i]") if e == 0 else ("[j, E]", "[i, E]")
    k = kc.kernel(SOFTMAX.format(v=shapes[0], out=shapes[1], term=term), autotune="off")
    rng = np.random.default_rng(n + m + d + e)
    args = {"x": rng.standard_normal((n, d)).astype(np.float32), "y": rng.standard_normal((m, d)).astype(np.float32),
            "v": rng.standard_normal((m, e) if e else m).astype(np.float32),
            "s": np.float32(0.1 * d if "/" in term else 10.0 / d)}  # scores of O(1): f32's rounding of them
    assert isinstance(_pattern(k, args)[0], fused_sums.FusedSumExecutable)
    got = k(**args, backend="llvm")
    for want in (k(**args, backend="numpy"), _generic(k, args)):
        np.testing.assert_allclose(got, want, rtol=0, atol=4e-6 * float(np.abs(args["v"]).max()))


@needs_avx512
@pytest.mark.parametrize("red", ["softmax", "logsumexp"])
def test_reference_moves_while_numerators_are_running(red: str) -> None:
    """Keys nearer and nearer to the rows, so that a row's scores pass its reference by more than
    HEADROOM tile after tile: the reference moves and the sums (and numerators) so far are
    rescaled, many times per row."""
    rng = np.random.default_rng(9)
    x = (rng.standard_normal((6, 24)) * 0.01).astype(np.float32)
    direction = rng.standard_normal(24).astype(np.float32)
    y = (np.linspace(10.0, 0.0, 2000, dtype=np.float32)[:, None] * direction[None]).astype(np.float32)
    v = rng.standard_normal((2000, 7)).astype(np.float32)
    source = SOFTMAX.format(v="[j, E]", out="[i, E]", term="-sqdist(x, y) / s") if red == "softmax" else \
        "kernel g(x: f32[i, D], y: f32[j, D], s: f32) -> f32[i] { return logsumexp[j](-sqdist(x, y) / s) }"
    k = kc.kernel(source, autotune="off")
    args = {"x": x, "y": y, "v": v, "s": np.float32(2.0)}
    args = {p.name: args[p.name] for p in k.ir.params}
    assert isinstance(_pattern(k, args)[0], fused_sums.FusedSumExecutable)
    got, want = k(**args, backend="llvm"), k(**args, backend="numpy")
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5)
    np.testing.assert_allclose(got, _generic(k, args), rtol=2e-5, atol=1e-5)


@needs_avx512
def test_softmax_special_terms() -> None:
    """+inf terms (1 / 0 at a zero distance, twice in a row: their values' mean), a NaN input
    (NaN), a row whose terms are all -inf (0, the softmax of nothing): the reference's results."""
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((8, 32)).astype(np.float32), rng.standard_normal((400, 32)).astype(np.float32)
    y[7], y[8] = x[1], x[1]
    x[3, 5] = np.nan
    v = rng.standard_normal((400, 5)).astype(np.float32)
    for term, keys in (("inv(sqdist(x, y))", y), ("log(sqdist(x, y))", np.repeat(x[:1], 50, 0))):
        k = kc.kernel(SOFTMAX.format(v="[j, E]", out="[i, E]", term=term), autotune="off")
        args = {"x": x, "y": keys, "v": v[:len(keys)], "s": np.float32(1.0)}
        assert isinstance(_pattern(k, args)[0], fused_sums.FusedSumExecutable)
        got, want = k(**args, backend="llvm"), k(**args, backend="numpy")
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=term)
        assert np.isnan(want[3]).all(), term
        finite = np.isfinite(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-5, atol=1e-5, err_msg=term)
    np.testing.assert_allclose(want[0], 0.0)  # log 0 = -inf for every key of row 0
    k = kc.kernel(SOFTMAX.format(v="[j, E]", out="[i, E]", term="inv(sqdist(x, y))"), autotune="off")
    np.testing.assert_allclose(k(x=x, y=y, v=v, s=np.float32(1.0), backend="llvm")[1], (v[7] + v[8]) / 2, rtol=1e-6)


@needs_avx512
def test_logsumexp_special_terms() -> None:
    """Terms that are -inf (log 0 at a zero distance), +inf (1 / 0, twice in a row) and NaN (a NaN
    input), in rows that hold numbers too and in rows that hold nothing else: the reference's
    results (+inf terms make +inf, a NaN makes NaN, all -inf gives -inf), and the generic code's."""
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((8, 32)).astype(np.float32), rng.standard_normal((500, 32)).astype(np.float32)
    y[7], y[8], y[300] = x[1], x[1], x[2]  # zero distances: two for row 1, one for row 2
    x[3, 5], y[450, 0] = np.nan, np.nan  # row 3 all NaN; key 450 NaN for every row
    same = np.repeat(x[:1], 100, 0)  # every distance of row 0 is 0: log 0 = -inf for all its keys
    cases = [("log(sqdist(x, y))", np.delete(y, 450, 0), {3: np.nan}),
             ("log(sqdist(x, y))", same, {0: -np.inf, 3: np.nan}),
             ("inv(sqdist(x, y))", np.delete(y, 450, 0), {1: np.inf, 2: np.inf, 3: np.nan}),
             ("-sqdist(x, y)", y, dict.fromkeys(range(8), np.nan))]
    for term, keys, specials in cases:
        k = kc.kernel(f"kernel g(x: f32[i, D], y: f32[j, D]) -> f32[i] {{ return logsumexp[j]({term}) }}",
                      autotune="off")
        args = {"x": x, "y": keys}
        assert isinstance(_pattern(k, args)[0], fused_sums.FusedSumExecutable)
        got, want, generic = k(**args, backend="llvm"), k(**args, backend="numpy"), _generic(k, args)
        expected = np.full(len(x), 1.0)
        expected[list(specials)] = list(specials.values())
        np.testing.assert_array_equal(np.isfinite(want), np.isfinite(expected), err_msg=term)  # the case is real
        for special in (np.isnan, np.isposinf, np.isneginf):
            np.testing.assert_array_equal(special(got), special(want), err_msg=term)
            np.testing.assert_array_equal(special(got), special(generic), err_msg=term)
        finite = np.isfinite(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-5, atol=1e-5, err_msg=term)


EXTREMES = ["max", "min", "argmax", "argmin", "kmax", "kmin", "argkmax", "argkmin"]


@needs_avx512
@pytest.mark.parametrize("red", EXTREMES)
@pytest.mark.parametrize("term", ["exp(-sqdist(x, y) / (hx * hy))", "dot(x, y) / (norm(x) * norm(y))",
                                  "sqrt(dot(x, y))", "log(square(dot(x, y)))"])
@pytest.mark.parametrize("n, m, d", [(1, 1, 16), (37, 700, 64), (9, 70, 20)])
def test_extremes_of_terms(red: str, term: str, n: int, m: int, d: int) -> None:
    """Extremes and the K best (K = 5) of f(s) on integer data (exact scores; every key twice):
    NaN terms (sqrt of a negative dot) win argmax and sort last among the K best, -inf terms
    (log 0) are values, fewer keys than K pad; the same results as the generic code, which
    computes f in the same f32 arithmetic, and the same NaN places as the reference."""
    arg = red.startswith("arg")
    kk = 5 if "k" in red.replace("arg", "") else 0
    out = ("i64" if arg else "f32") + (f"[i, {kk}]" if kk else "[i]")
    k = kc.kernel(f"kernel g(x: f32[i, D], y: f32[j, D], hx: f32[i], hy: f32[j]) -> {out} "
                  f"{{ return {red}[j{', ' + str(kk) if kk else ''}]({term}) }}", autotune="off")
    rng = np.random.default_rng(n + m + d + len(term))
    x, y = rng.integers(0, 3, (n, d)).astype(np.float32), rng.integers(-2, 3, (m, d)).astype(np.float32)
    y[:40] = np.abs(y[:40])  # the first keys' dots are >= 0: NaN and -inf come in lanes that hold numbers
    y[m // 2:] = y[:m - m // 2]
    args = {"x": x, "y": y, "hx": rng.uniform(1, 4, n).astype(np.float32),
            "hy": rng.uniform(1, 4, m).astype(np.float32)}
    pair = fused_sums.match(k.optimized, {"D": d})
    assert pair is not None and pair.kind.name.lower() == red
    assert isinstance(_pattern(k, args)[0], fused_sums.FusedSumExecutable)
    got = k(**args, backend="llvm")
    np.testing.assert_array_equal(got, _generic(k, args))
    if not arg:
        np.testing.assert_array_equal(np.isnan(got), np.isnan(k(**args, backend="numpy")))


@needs_avx512
@pytest.mark.parametrize("t", ["bf16", "f16"])
@pytest.mark.parametrize("red", ["sum", "argmax", "kmin"])
def test_narrow_inputs_are_computed_in_f32(t: str, red: str) -> None:
    """f16 and bf16 embeddings: their values in f32, f computed in f32 (LANGUAGE.md §5), a narrow
    output rounded once: the generic code's results (same f32 terms; sums to rounding)."""
    import ml_dtypes

    dtype = {"bf16": ml_dtypes.bfloat16, "f16": np.float16}[t]
    out = {"sum": f"{t}[i]", "argmax": "i64[i]", "kmin": f"{t}[i, 3]"}[red]
    reduction = {"sum": "sum[j](exp(-sqdist(x, y) * c) * b)", "argmax": "argmax[j](exp(-sqdist(x, y) * c))",
                 "kmin": "kmin[j, 3](sqdist(x, y) * c)"}[red]
    k = kc.kernel(f"kernel g(x: {t}[i, D], y: {t}[j, D], b: {t}[j], c: {t}) -> {out} {{ return {reduction} }}",
                  autotune="off")
    rng = np.random.default_rng(9)
    args = {"x": rng.integers(-2, 3, (40, 48)).astype(dtype), "y": rng.integers(-2, 3, (500, 48)).astype(dtype),
            "b": rng.standard_normal(500).astype(dtype), "c": dtype(0.125)}
    assert isinstance(_pattern(k, args)[0], fused_sums.FusedSumExecutable)
    got, generic = k(**args, backend="llvm"), _generic(k, args)
    if red == "sum":
        eps = float(ml_dtypes.finfo(dtype).eps)
        np.testing.assert_allclose(got.astype(np.float32), generic.astype(np.float32), rtol=eps, atol=eps)
    else:
        np.testing.assert_array_equal(got, generic)
