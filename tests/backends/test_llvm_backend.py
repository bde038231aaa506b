"""The LLVM backend: its math against NumPy in ulps, its disk cache, and what it refuses."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import kernelc as kc
from kernelc.backends import cache, registry
from kernelc.backends.llvm.ops import EXACT_DIVISORS_F32
from kernelc.cli import main

ROOT = Path(__file__).resolve().parents[2]


def ulps(got: np.ndarray, want64: np.ndarray, dtype) -> np.ndarray:
    want = want64.astype(dtype)
    with np.errstate(all="ignore"):
        return np.abs(got.astype(np.float64) - want64) / np.spacing(np.abs(want)).astype(np.float64)


@pytest.fixture(params=["host", "no-scalef"])
def exp_scaling(request, monkeypatch):
    """The exact exp's two ways of applying 2^k: vscalef (AVX-512 hosts) and two exponent-bit
    steps (every other host), whichever this host has."""
    if request.param == "no-scalef":
        from kernelc.backends import llvm
        from kernelc.backends.llvm import ops

        monkeypatch.setattr(ops, "_HAS_SCALEF", False)
        monkeypatch.setattr(llvm, "CODEGEN_VERSION", llvm.CODEGEN_VERSION + "-no-scalef")  # its own cache entries


@pytest.mark.parametrize("dt, npdt, bound", [("f32", np.float32, 1.0), ("f64", np.float64, 1.0)])
@pytest.mark.parametrize("fn, ref, scale", [("exp", np.exp, 1.0), ("exp2", np.exp2, 1.4426950408889634)])
def test_exp_accuracy(dt, npdt, bound, fn, ref, scale, exp_scaling):
    k = kc.kernel(f"kernel e(x: {dt}[i]) -> {dt}[i] {{ return {fn}(x) }}")
    hi = (88.7 if dt == "f32" else 709.7) * scale
    lo = (-87.3 if dt == "f32" else -708.3) * scale  # normal results; subnormals are checked below
    x = np.concatenate([np.linspace(lo, hi, 300_001), np.random.default_rng(0).uniform(-1, 1, 100_000)]).astype(npdt)
    got = k(x, backend="llvm")
    err = ulps(got, ref(x.astype(np.float64)), npdt)
    assert err.max() <= bound, err.max()


@pytest.mark.parametrize("dt, npdt", [("f32", np.float32), ("f64", np.float64)])
def test_exp_edges(dt, npdt, exp_scaling):
    k = kc.kernel(f"kernel e(x: {dt}[i]) -> {dt}[i] {{ return exp(x) }}")
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e30, -1e30, 88.8, 709.8, -103.0, -745.0, -750.0], npdt)
    with np.errstate(all="ignore"):
        want = np.exp(x.astype(np.float64)).astype(npdt)
    got = k(x, backend="llvm")
    tiny = np.finfo(npdt).tiny
    close = np.isclose(got, want, rtol=0, atol=float(tiny)) | (np.isnan(got) & np.isnan(want)) | (got == want)
    assert close.all(), (x[~close], got[~close], want[~close])


@pytest.mark.parametrize("nonpositive", [False, True])
def test_vector_exp_is_the_scalar_exp_lane_by_lane(nonpositive, exp_scaling):
    """ops.poly_exp on a <16 x float> (as the fused attention builds its weights) gives the scalar
    f32 code's results bit for bit: it once took the f64 table for vectors (a degree-13
    polynomial, 64-bit exponents: twice the instructions)."""
    import ctypes

    from llvmlite import ir

    from kernelc.backends.llvm import ops
    from kernelc.backends.llvm.jit import compile_ir

    vec = ir.VectorType(ops.F32, 16)
    module = ir.Module(name="vector_exp")
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [vec.as_pointer()] * 2), name="vector_exp")
    b = ir.IRBuilder(fn.append_basic_block())
    b.store(ops.poly_exp(b, ops.Math(module), b.load(fn.args[0], align=4), nonpositive=nonpositive), fn.args[1],
            align=4)
    b.ret_void()
    address = compile_ir(lambda: str(module), ["vector_exp"])[0]["vector_exp"]
    call = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)(address)
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.uniform(-110, 0 if nonpositive else 90, 16 * 999), [-np.inf, 0.0, -0.0, np.nan]])
    x = x.astype(np.float32)
    x = np.concatenate([x, np.zeros(-len(x) % 16, np.float32)])
    got = np.empty_like(x)
    for at in range(0, len(x), 16):
        call(x[at:].ctypes.data, got[at:].ctypes.data)
    k = kc.kernel("kernel e(x: f32[i]) -> f32[i] { return exp(x) }")
    np.testing.assert_array_equal(got, k(x, backend="llvm"))


def test_disk_cache_is_used_and_survives_corruption(tmp_path):
    env = dict(os.environ, KERNELC_CACHE_DIR=str(tmp_path))
    script = ("import numpy as np, kernelc as kc, sys;"
              "k = kc.load(sys.argv[1]).gauss;"
              "x = np.arange(12, dtype=np.float32).reshape(4, 3) / 10;"
              "print(repr(k(x, x, x[:, :1], 0.5, backend='llvm').ravel().tolist()))")
    run = lambda: subprocess.run([sys.executable, "-c", script, str(ROOT / "examples/gauss.kc")], env=env,  # noqa
                                 capture_output=True, text=True, timeout=120)
    first = run()
    assert first.returncode == 0, first.stderr
    entries = list(tmp_path.glob("*.o"))
    assert len(entries) == 1
    assert run().stdout == first.stdout  # loaded from the cache
    data = entries[0].read_bytes()
    for broken in (data[: len(data) // 2], data[:-10] + b"x" * 10, b"garbage", data.replace(data[16:80], b"0" * 64)):
        entries[0].write_bytes(broken)
        again = run()
        assert again.returncode == 0 and again.stdout == first.stdout, again.stderr
        assert entries[0].read_bytes() == data  # the entry was rebuilt


def test_vector_math_from_the_disk_cache(tmp_path):
    """Object code that calls libmvec's vector variants runs when a fresh process loads it from
    the disk cache (the variants are bound when the JIT starts, not when code is generated)."""
    env = dict(os.environ, KERNELC_CACHE_DIR=str(tmp_path))
    script = ("import numpy as np, kernelc as kc;"
              "k = kc.kernel('kernel t(x: f32[i], y: f32[j]) -> f32[i] { return sum[j](sin(x * y) + tanh(x - y)) }');"
              "x = np.linspace(-3, 3, 700, dtype=np.float32);"
              "print(repr(k(x, x, backend='llvm').tolist()))")
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
            for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[-1].stderr
    assert runs[0].stdout == runs[1].stdout and list(tmp_path.glob("*.o"))


def test_cache_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERNELC_CACHE_DIR", str(tmp_path))
    cache.store(cache.make_key("x"), "o", b"payload")
    assert main(["cache", "info"]) == 0
    assert "entries: 1" in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0
    assert cache.info().entries == 0


def test_cache_store_and_load_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("KERNELC_CACHE_DIR", str(tmp_path))
    key = cache.make_key("a", "b")
    assert cache.load(key, "o") is None
    cache.store(key, "o", b"\x00\x01code")
    assert cache.load(key, "o") == b"\x00\x01code"
    assert cache.load(cache.make_key("a", "c"), "o") is None
    assert cache.make_key("ab", "c") != cache.make_key("a", "bc")


def test_cache_keys_follow_the_generator_source(tmp_path):
    """An edited generator file changes the fingerprint in its keys (no stale object code)."""
    (tmp_path / "gen.py").write_text("X = 1\n")
    before = cache.source_fingerprint(str(tmp_path))
    (tmp_path / "gen.py").write_text("X = 2\n")
    cache.source_fingerprint.cache_clear()
    assert cache.source_fingerprint(str(tmp_path)) != before
    from kernelc.backends import llvm as llvm_backend

    assert llvm_backend.codegen_version().startswith(llvm_backend.CODEGEN_VERSION + "-")


def test_unsupported_kernels_fall_back_under_auto(monkeypatch):
    from kernelc.backends import llvm as llvm_backend
    from kernelc.backends.llvm.ops import UnsupportedKernel

    def refuse(kernel, bindings):
        raise UnsupportedKernel("a construct this test pretends is missing")

    monkeypatch.setattr(llvm_backend, "check_supported", refuse)
    k = kc.kernel("kernel t(x: f32[i]) -> f32[i] { return 2 * x }")
    with pytest.raises(kc.UnsupportedKernelError, match="pretends is missing"):
        k(np.ones(3, np.float32), backend="llvm")
    x = np.ones(3, np.float32)
    np.testing.assert_array_equal(k(x), [2, 2, 2])  # auto: the next backend runs it (cuda where a GPU is, else numpy)
    after_llvm = [b.name for b in registry.auto_order({"x": x})]
    assert k.last_backend == after_llvm[after_llvm.index("llvm") + 1] and "pretends" in k.skipped["llvm"]


LONG_REDUCTIONS = [
    "kernel s(x: f32[i], y: f32[j, D]) -> f32[i, D] { return sum[j](x * y) }",
    "kernel s(x: f64[i], y: f64[j, D]) -> (f64[i, D], f64[i, D], f64[i]) {"
    " v = exp(-x * y); return mean[j](v), max[j](v) * 2, sum(min[j](v)) }",
    "kernel s(x: f32[i, D], y: f32[j, D]) -> f32[i, D] { return x - mean[j](y) }",
    "kernel s(x: i64[i], y: i64[j, D]) -> i64[j, D] { return sum[i](x * y) }",
    "kernel s(x: f32[i], y: f32[j, D]) -> f32[i, D] { return softmax[j](x * y[0], y) }",
    "kernel s(x: f64[i], y: f64[j, D]) -> f64[i, D] { return logsumexp[j](x * y[1], y) }",
]


@pytest.mark.parametrize("k_", [3, 300])
def test_k_reductions_with_large_k(k_):
    kern = kc.kernel("kernel s(x: f64[i], y: f64[j]) -> (f64[i, K], i64[i, K], i64[i, K]) {"
                     " d = abs(x - y); return kmin[j, K](d), argkmin[j, K](d), argkmax[j, K](d) }")
    rng = np.random.default_rng(k_)
    x, y = rng.random(4), np.round(rng.random(400) * 40) / 4  # many ties
    y[5] = np.nan
    for g, w in zip(kern(x, y, K=k_, backend="llvm"), kern(x, y, K=k_, backend="numpy")):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("dtype", ["f32", "f64", "i32", "i64"])
@pytest.mark.parametrize("k_", [1, 10, 16, 17, 32, 33])
def test_k_best_blocks_with_ties_nan_and_order(dtype, k_):
    """The block-buffered K-best reductions (slots in a vector of 16 lanes up to K = 16, of 32
    up to K = 32, scalar slots above) against the reference: NaN and infinities among the scores, runs of equal values,
    scores in ascending order (one insertion per block) and descending order (every score
    enters), column counts that leave a partial block."""
    kern = kc.kernel(f"kernel s(x: {dtype}[i], y: {dtype}[j]) -> ({dtype}[i, K], i64[i, K], {dtype}[i, K], i64[i, K])"
                     " { d = x - y; return kmin[j, K](d), argkmin[j, K](d), kmax[j, K](d), argkmax[j, K](d) }")
    rng = np.random.default_rng(k_)
    npdt = {"f32": np.float32, "f64": np.float64, "i32": np.int32, "i64": np.int64}[dtype]
    for m in (1, 13, 600):
        ties = np.round(rng.standard_normal(m) * 4)
        for y in (ties, np.sort(ties), np.sort(ties)[::-1].copy()):
            y = y.astype(npdt)
            if dtype[0] == "f" and m > 13:
                y[rng.integers(0, m, 5)] = np.nan
                y[rng.integers(0, m, 3)] = np.inf
                y[rng.integers(0, m, 3)] = -np.inf
            x = np.array([0, 1, -3], npdt)
            for g, w in zip(kern(x, y, K=k_, backend="llvm"), kern(x, y, K=k_, backend="numpy")):
                np.testing.assert_array_equal(g, w, err_msg=f"m={m}")


@pytest.mark.parametrize("src", LONG_REDUCTIONS)
@pytest.mark.parametrize("d", [3, 300, 2000])
def test_reductions_of_long_vectors(src, d):
    k = kc.kernel(src)
    rng = np.random.default_rng(d)
    dt = {"f32": np.float32, "f64": np.float64, "i64": np.int64}[src.split("x: ")[1][:3]]
    xshape = (7, d) if "x: f32[i, D]" in src else (7,)
    x, y = (rng.random(xshape) * 10).astype(dt), (rng.random((50, d)) * 10).astype(dt)
    got, want = k(x, y, backend="llvm"), k(x, y, backend="numpy")
    assert not k.skipped
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_integer_powers():
    k = kc.kernel("kernel p(x: i64[i], e: i64[i]) -> i64[i] { return x ** e }")
    x = np.array([2, -3, 1, -1, -1, 0, 5, 7, 2], np.int64)
    e = np.array([10, 3, -5, -3, -4, -1, 0, 30, 70], np.int64)
    np.testing.assert_array_equal(k(x, e, backend="llvm"), k(x, e, backend="numpy"))


def test_more_than_2_31_pairs():
    k = kc.kernel("kernel c(x: f32[i], y: f32[j]) -> i64[i] { return sum[j](x < y) }")
    n, m = 1 << 16, (1 << 15) + 3  # N * M > 2**31
    x = np.zeros(n, np.float32)
    y = np.ones(m, np.float32)
    y[::2] = -1
    out = k(x, y, backend="llvm")
    assert out.dtype == np.int64 and (out == (m // 2)).all()


def test_threads_do_not_change_results(monkeypatch):
    k = kc.kernel("kernel nn(x: f32[i, D], y: f32[j, D]) -> (f32[i], i64[i]) {"
                  " d = sqdist(x, y); return sum[j](exp(-d)), argmin[j](d) }")
    rng = np.random.default_rng(0)
    x, y = rng.random((3000, 3), np.float32), rng.random((501, 3), np.float32)
    a = k(x, y, backend="llvm")
    from kernelc.backends import llvm

    monkeypatch.setattr(llvm, "_CHUNK_WORK", 1024)  # as many chunks as the schedule allows (16 on 2 threads)
    many = kc.kernel(k.source)(x, y, backend="llvm")
    monkeypatch.setenv("KERNELC_NUM_THREADS", "1")
    b = kc.kernel(k.source)(x, y, backend="llvm")
    for got in (a, many):
        np.testing.assert_array_equal(got[1], b[1])
        np.testing.assert_array_equal(got[0], b[0])


LONG = [
    ("kernel r(x: f32[i, D], w: f32[D], eps: f32) -> f32[i, D] { return x * rsqrt(mean(x * x) + eps) * w }",
     lambda rng, d: (rng.normal(size=(5, d)).astype(np.float32), rng.normal(size=d).astype(np.float32), 1e-6)),
    ("kernel g(x: f32[i, D], y: f32[j, D]) -> f32[i] { return sum[j](exp(-sqdist(x, y) / f32(D))) }",
     lambda rng, d: (rng.random((4, d), np.float32), rng.random((6, d), np.float32))),
    ("kernel m(x: f64[i, D]) -> (f64[i], i64[i], f64[i], f64[i]) {"
     " return max(x), argmin(x), logsumexp(x), x[3] + sum(x[1:300]) }", lambda rng, d: (rng.normal(size=(3, d)),)),
    ("kernel c(x: f64[i, D]) -> f64[i, 300] { return concat(x[0:100], x, x[5:7])[0:300] * 2 }",
     lambda rng, d: (rng.normal(size=(3, d)),)),
]


@pytest.mark.parametrize("d", [300, 1000])
@pytest.mark.parametrize("src, make", LONG)
def test_long_vectors_are_loops(src, make, d):
    k = kc.kernel(src)
    args = make(np.random.default_rng(d), d)
    got, want = k(*args, backend="llvm"), k(*args, backend="numpy")
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_a_400000_feature_row():
    k = kc.kernel("kernel n(x: f32[i, D]) -> f32[i] { return norm(x) }")
    x = np.random.default_rng(0).random((3, 400_000), np.float32)
    np.testing.assert_allclose(k(x, backend="llvm"), np.linalg.norm(x.astype(np.float64), axis=1), rtol=1e-6)


F32_FUNCTIONS = ["exp", "exp2", "log", "log2", "log1p", "expm1", "sqrt", "rsqrt", "sin", "cos", "tan", "asin",
                 "acos", "atan", "sinh", "cosh", "tanh", "sigmoid", "softplus", "erf", "inv"]


@pytest.mark.parametrize("fn", F32_FUNCTIONS)
def test_f32_functions_within_a_few_ulp(fn):
    """f32 math is computed in f32 to a few ulp of the correctly rounded result (LANGUAGE.md §5)."""
    k = kc.kernel(f"kernel t(x: f32[i]) -> (f32[i], f64[i]) {{ return {fn}(x), {fn}(f64(x)) }}")
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-10, 10, 20_000), rng.uniform(-1, 1, 20_000), [0.0, 1.0, -1.0]]).astype(np.float32)
    if fn in ("log", "log2", "sqrt", "rsqrt"):
        x = np.abs(x) + np.float32(1e-3)
    if fn in ("asin", "acos"):
        x = np.clip(x, -1, 1)
    if fn == "log1p":
        x = np.abs(x)
    got, exact = k(x, backend="llvm")
    err = ulps(got, exact, np.float32)
    finite = np.isfinite(exact) & (np.abs(exact) > 1e-30)
    assert err[finite].max() <= 4, (fn, err[finite].max())


@pytest.mark.parametrize("dt, npdt, bound", [("f32", np.float32, 3.0), ("f64", np.float64, 3.0)])
def test_log_accuracy_and_edges(dt, npdt, bound):
    k = kc.kernel(f"kernel l(x: {dt}[i]) -> ({dt}[i], {dt}[i]) {{ return log(x), log2(x) }}")
    info = np.finfo(npdt)
    rng = np.random.default_rng(0)
    x = np.concatenate([np.exp(rng.uniform(-80, 80, 200_000)), rng.uniform(0.5, 2, 100_000),
                        [info.smallest_subnormal, info.tiny, info.max, 1.0]]).astype(npdt)
    ln, l2 = k(x, backend="llvm")
    assert ulps(ln, np.log(x.astype(np.float64)), npdt).max() <= bound
    assert ulps(l2, np.log2(x.astype(np.float64)), npdt).max() <= bound + 1
    edges = np.array([0.0, -0.0, -1.0, np.inf, -np.inf, np.nan], npdt)
    with np.errstate(all="ignore"):
        want = np.log(edges)
    got, _ = k(edges, backend="llvm")
    np.testing.assert_array_equal(got, want)


SPLIT = ("kernel a(x: f32[i, D], y: f32[j, D]) -> (f32[i], i64[i], f32[i], f32[i], f32[i, 2], i64[i, 3]) {"
         " d = sqdist(x, y); return min[j](d), argmin[j](d), logsumexp[j](-d), mean[j](d) * 2,"
         " softmax[j](-d, y[0:2]), argkmin[j, 3](d) }")


def test_few_rows_split_the_inner_index_over_threads(monkeypatch):
    """N = 1, M large: the inner index is split over threads and the partial states merged;
    indices are identical to one thread's, values equal up to the sums' rounding."""
    rng = np.random.default_rng(0)
    x, y = rng.random((1, 3), np.float32), rng.random((300_001, 3), np.float32)
    y[123_456] = y[7]  # a tie across chunks: the smaller index wins
    x[0] = y[7]
    many = kc.kernel(SPLIT)(x, y, backend="llvm")
    monkeypatch.setenv("KERNELC_NUM_THREADS", "1")
    one = kc.kernel(SPLIT)(x, y, backend="llvm")
    ref = kc.kernel(SPLIT)(x, y, backend="numpy")
    for a, b, r in zip(many, one, ref):
        if a.dtype.kind == "i":
            np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(a, r)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-6)
            np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-7)
    assert many[1][0] == 7


def test_approximate_exp_for_tolerance_variants():
    """approx_math (a kernel under a tolerance): a few ulp plus the rounding of x log2(e) above
    2**-125.5, 0 below; never a subnormal result; inf, -inf and NaN kept."""
    from kernelc.backends import registry
    from kernelc.backends.interface import Schedule
    from kernelc.testing.runners import run_on

    k = kc.kernel("kernel e(x: f32[i]) -> (f32[i], f32[i]) { return exp(x), exp2(x) }")
    x = np.concatenate([np.linspace(-150, 130, 300001), [np.inf, -np.inf, np.nan, -1e4, 1e4, 0.0]]).astype(np.float32)
    e, e2 = run_on(registry.get("llvm"), k, x, schedule=Schedule.of("llvm", dims=(), approx_math=True))
    x64 = x.astype(np.float64)
    with np.errstate(all="ignore"):
        for got, want, scale in ((e, np.exp(x64), np.abs(x64) * np.log2(np.e)), (e2, np.exp2(x64), np.abs(x64))):
            normal = np.isfinite(want) & (want > 2.0 ** -125.5) & (want < 3e38)
            rel = np.abs(got[normal] / want[normal] - 1)
            assert (rel <= 3e-7 + scale[normal] * 2.0 ** -24).all(), rel.max()
            assert (got[want < 2.0 ** -125.5] == 0).all()
            assert not ((got != 0) & (np.abs(got) < 2.0 ** -126)).any()  # no subnormals
            np.testing.assert_array_equal(got[-6:-1], [np.inf, 0.0, np.nan, 0.0, np.inf])
            assert got[-1] == 1.0


def test_approximate_sqrt_for_tolerance_variants():
    """approx_math: f32 sqrt by the reciprocal-square-root estimate and a Newton step, about
    2^-22 relative; 0 below 2^-126; +inf, NaN for negatives and NaN kept; f64 stays exact."""
    from kernelc.backends import registry
    from kernelc.backends.interface import Schedule
    from kernelc.testing.runners import run_on

    k = kc.kernel("kernel r(x: f32[i], z: f64[i]) -> (f32[i], f64[i]) { return sqrt(x), sqrt(z) }")
    x = np.concatenate([np.logspace(-37.9, 38.5, 200001), np.linspace(0, 4, 100001), [1e-40, 2.0 ** -126, 0.0, -0.0,
                        -1.0, np.inf, -np.inf, np.nan]]).astype(np.float32)
    got, got64 = run_on(registry.get("llvm"), k, x, x.astype(np.float64),
                        schedule=Schedule.of("llvm", dims=(), approx_math=True))
    with np.errstate(invalid="ignore"):
        want = np.sqrt(x.astype(np.float64))
    normal = (x >= 2.0 ** -126) & np.isfinite(x)
    assert (np.abs(got[normal] / want[normal] - 1) <= 2.0 ** -21).all()
    assert (got[(x >= 0) & (x < 2.0 ** -126)] == 0).all()
    np.testing.assert_array_equal(got[-4:], [np.nan, np.inf, np.nan, np.nan])
    np.testing.assert_array_equal(got64, want)


@pytest.mark.parametrize("c", sorted(EXACT_DIVISORS_F32))
def test_division_by_a_constant_is_correctly_rounded(c):
    """f32 `a / c` for the constants of ops.EXACT_DIVISORS_F32 is an FMA sequence, not a division,
    and equals IEEE division bit for bit: every 7th mantissa of two binades, subnormals, random
    bit patterns, the edges (+-0, +-inf, NaN, the largest and smallest), and -c. (tools/check_division.c
    checks all 2**32 inputs.)"""
    from kernelc.backends.interface import Schedule

    k = kc.kernel(f"kernel q(a: f32[i]) -> (f32[i], f32[i]) {{ return a / {c:g}, a / -{c:g} }}")
    code = registry.get("llvm").compile(k.ir, Schedule.of("llvm", dims=())).code
    assert " fdiv " not in code
    rng = np.random.default_rng(int(c))
    mantissas = np.arange(0, 2 ** 23, 7, dtype=np.uint32)
    bits = np.concatenate([mantissas | np.uint32(127 << 23), mantissas | np.uint32(200 << 23), mantissas[::64],
                           rng.integers(0, 2 ** 32, 500_000, dtype=np.uint32)])
    a = np.concatenate([bits.view(np.float32), np.float32([0.0, -0.0, np.inf, -np.inf, np.nan, 3.4028235e38,
                                                           -3.4028235e38, 1.17549435e-38, 1e-45, -1e-45])])
    a = np.concatenate([a, -a])
    got, got_negative = k(a, backend="llvm")
    with np.errstate(all="ignore"):
        for out, divisor in ((got, np.float32(c)), (got_negative, np.float32(-c))):
            want = a / divisor
            same = (out.view(np.uint32) == want.view(np.uint32)) | (np.isnan(out) & np.isnan(want))
            assert same.all(), (a[~same][:5], out[~same][:5], want[~same][:5])


BLOCKED = [  # reductions that share the inner pass of a register block, and outputs around them
    "kernel a(x: f32[i, D], y: f32[j, D], b: f32[j]) -> (f32[i], i64[i], f32[i])"
    " { d = sqdist(x, y); return sum[j](exp(-d) * b), argmin[j](d), logsumexp[j](-d) }",
    "kernel s(x: f32[i, D], y: f32[j, D], v: f32[j, 2]) -> (f32[i, 2], f32[i, 3], i64[i, 3])"
    " { d = sqdist(x, y); return softmax[j](-d, v), kmin[j, 3](d), argkmax[j, 3](d) }",
    "kernel m(x: f64[i, D], y: f64[j, D]) -> (f64[i], f64[i], f64[i, j])"
    " { d = dot(x, y); return max[j](d), mean[j](d), d - i + j }",
    "kernel c(x: f32[i, D], y: f32[j, D], r: f32) -> (i64[i], i64[i]) { d = sqdist(x, y);"
    " return sum[j](d < r * r), argmax[j](where(j <= i, d, -inf)) }",
]


@pytest.mark.parametrize("source", BLOCKED)
def test_every_candidate_schedule_agrees(source):
    """Rows per register block (1, 2, 4, 8; row counts that leave remainders), vector widths,
    hoisting, threads and chunks: each candidate schedule matches the NumPy reference."""
    from kernelc.backends import registry, runtime
    from kernelc.explain import random_arguments
    from kernelc.testing.runners import run_on

    k = kc.kernel(source)
    llvm = registry.get("llvm")
    for n in (1, 7, 37):
        args = random_arguments(k, n, 300, {"D": 3}, seed=n)
        want = k(**args, backend="numpy")
        schedules = llvm.candidates(k.ir, runtime.bind(k.ir, (), args).sizes)
        assert {s.get("rows") for s in schedules} >= {1, 2, 4, 8}
        assert {s.get("interleave") for s in schedules} >= {None, 1}
        for schedule in schedules:
            _assert_agrees(run_on(llvm, k, schedule=schedule, **args), want, schedule)


@pytest.mark.parametrize("source", BLOCKED)
def test_tiles_of_the_inner_index_agree(source):
    """Rows in chunks walking the inner index in tiles (uneven last tile, partial states merged
    with the monoids' combine in column order), with and without register blocks, match the
    NumPy reference."""
    from kernelc.backends import registry, runtime
    from kernelc.backends.interface import Schedule
    from kernelc.explain import random_arguments
    from kernelc.testing.runners import run_on

    k = kc.kernel(source)
    llvm = registry.get("llvm")
    args = random_arguments(k, 45, 700, {"D": 3}, seed=3)
    args["y"] = args["y"][np.arange(700) % 50]  # equal values in every tile: ties keep the first index
    want = k(**args, backend="numpy")
    default = llvm.default_schedule(k.ir, runtime.bind(k.ir, (), args).sizes)
    for rows in (1, 4):
        schedule = Schedule("llvm", tuple(sorted((dict(default.knobs) | {"tile": 256, "rows": rows,
                                                                         "threads": 2}).items())))
        _assert_agrees(run_on(llvm, k, schedule=schedule, **args), want, schedule)


def _assert_agrees(got, want, schedule) -> None:
    """Indices equal, floats within f32 rounding of the NumPy reference."""
    for g, w in zip(got, want):
        if g.dtype.kind == "i":
            np.testing.assert_array_equal(g, w, err_msg=str(schedule))
        else:
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6, err_msg=str(schedule))


def _llvm_schedules(k, args):
    """The default schedule and variants of it: 1 and 4 rows, each vector width of the host,
    and tiles of the inner index over 2 threads (the partial function)."""
    from kernelc.backends import registry, runtime
    from kernelc.backends.interface import Schedule
    from kernelc.backends.llvm.jit import vector_widths

    llvm = registry.get("llvm")
    default = dict(llvm.default_schedule(k.ir, runtime.bind(k.ir, (), args).sizes).knobs)
    variants = [{}, {"tile": 256, "threads": 2, "rows": 4}] + [{"rows": r, "vector_bits": v}
                                                               for r in (1, 4) for v in vector_widths()]
    return llvm, [Schedule("llvm", tuple(sorted((default | v).items()))) for v in variants]


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("e", [1, 3, 8, 17, 64, 100])
def test_softmax_and_weighted_logsumexp_blocks(dtype, e):
    """softmax (row-major values from E = 8: vector accumulators, E in register-sized chunks)
    and weighted logsumexp (a block maximum per component over nonzero weights) over several
    blocks, against the reference: huge scores, a block of -inf scores, +inf and NaN scores,
    weights of 0 (a whole component, and at the +inf score), negative and NaN weights."""
    from kernelc.testing.runners import run_on

    k = kc.kernel(f"kernel s(u: {dtype}[i], t: {dtype}[j], v: {dtype}[j, E], w: {dtype}[j, E]) -> "
                  f"({dtype}[i, E], {dtype}[i, E]) {{ s = u * t; return softmax[j](s, v), logsumexp[j](s, w) }}")
    npdt = np.float32 if dtype == "f32" else np.float64
    rng = np.random.default_rng(e)
    m = 600
    u = np.array([1.0, 2.0, -0.5, 0.25, 3.0], npdt)
    v = rng.standard_normal((m, e)).astype(npdt)
    w = rng.random((m, e)).astype(npdt)
    w[:, 0] = 0.0  # a component of zero weights only: -inf
    w[rng.integers(0, m, 20), -1] = -1.0
    cases = {"normal": rng.standard_normal(m) * 4, "huge": rng.standard_normal(m) * 1e30}
    cases["-inf block"] = cases["normal"].copy()
    cases["-inf block"][256:512] = -np.inf
    cases["+inf"] = cases["normal"].copy()
    cases["+inf"][300] = np.inf
    cases["nan"] = cases["normal"].copy()
    cases["nan"][450] = np.nan
    for name, t in cases.items():
        ww = w.copy()
        if name == "huge":  # the largest score weighs 0: the maximum must skip it (or all underflow)
            ww[np.argmax(t), e // 2] = 0.0
        if name == "+inf":
            ww[300, e // 2] = 0.0  # exp(inf) * 0: NaN in that component
        if name == "nan" and e > 2:
            ww[10, 1] = np.nan
        args = {"u": u, "t": t.astype(npdt), "v": v, "w": ww}
        want = k(**args, backend="numpy")
        llvm, schedules = _llvm_schedules(k, args)
        for schedule in schedules:
            for g, r in zip(run_on(llvm, k, schedule=schedule, **args), want):
                # f32: the weighted sums of values of either sign cancel (absolute error ~ |v|)
                np.testing.assert_allclose(g, r, rtol=2e-5 if dtype == "f32" else 1e-12,
                                           atol=2e-5 if dtype == "f32" else 1e-12, err_msg=f"{name} {schedule}")


@pytest.mark.parametrize("fn", ["sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "erf", "expm1",
                                "log1p", "atan2"])
def test_vectorized_libm_functions(fn):
    """libm functions in a vectorized loop (the j loop of an [i, j] output) run libmvec's
    vector variants where the host has them: f32 and f64 within a few ulp of the correctly
    rounded result over wide ranges (huge arguments, overflow to inf, NaN and infinities)."""
    import re

    from kernelc.backends.llvm import generate
    from kernelc.backends.llvm.jit import optimized_ir, vector_variants, vector_widths

    args = "y + x, y - x" if fn == "atan2" else "y + x"
    args64 = "f64(y + x), f64(y - x)" if fn == "atan2" else "f64(y + x)"  # the same (rounded) arguments
    k = kc.kernel(f"kernel t(x: f32[i], y: f32[j]) -> (f32[i, j], f64[i, j]) {{ return {fn}({args}), {fn}({args64}) }}")
    rng = np.random.default_rng(1)
    y = np.concatenate([rng.uniform(-10, 10, 4000), rng.uniform(-1, 1, 4000), rng.uniform(-100, 100, 1000),
                        [0.0, -0.0, 1.0, -1.0, 1e-30, 1e4, 1e6, -3e38, np.inf, -np.inf, np.nan]]).astype(np.float32)
    if fn in ("asin", "acos"):
        y = np.clip(y, -1, 1)
    x = np.array([0.0, 0.25], np.float32)
    got, exact = k(x, y, backend="llvm")
    with np.errstate(over="ignore"):
        rounded = exact.astype(np.float32)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(rounded), err_msg=fn)
    np.testing.assert_array_equal(got[np.isinf(rounded)], rounded[np.isinf(rounded)], err_msg=fn)
    finite = np.isfinite(rounded) & (np.abs(rounded) > 1e-30)
    error = ulps(got[finite], exact[finite], np.float32).max()
    assert error <= 4, (fn, error)
    # the f64 results (vector variants too) against NumPy's f64 functions
    a = (y[None, :] + x[:, None]).astype(np.float64)
    b = (y[None, :] - x[:, None]).astype(np.float64)
    numpy_fn = {"asin": np.arcsin, "acos": np.arccos, "atan": np.arctan, "erf": np.vectorize(math.erf)}.get(
        fn, getattr(np, fn, None))
    with np.errstate(all="ignore"):  # inf and NaN arguments, overflow: as the kernel's
        want = np.arctan2(a, b) if fn == "atan2" else numpy_fn(a)
    np.testing.assert_array_equal(np.isnan(exact), np.isnan(want), err_msg=fn)
    ok = np.isfinite(want) & (np.abs(want) > 1e-300)
    np.testing.assert_array_equal(exact[~ok & ~np.isnan(want)], want[~ok & ~np.isnan(want)], err_msg=fn)
    assert ulps(exact[ok], want[ok], np.float64).max() <= 4, (fn, ulps(exact[ok], want[ok], np.float64).max())
    name = f"{fn}f"
    if vector_variants(name, 2 if fn == "atan2" else 1):
        text = optimized_ir(generate(k.optimized, {}, "_t", False, 1, 0, False, vector_widths()[0])[0],
                            vector_widths()[0])
        assert re.search(rf"call <\d+ x float> @_ZGV\w+_{name}\b", text), "the f32 loop calls no vector variant"


PIPELINED = [
    "kernel g(x: f32[i, D], y: f32[j, D], b: f32[j], s: f32) -> f32[i] "
    "{ return sum[j](exp(-sqdist(x, y) / (2 * s * s)) * b) }",
    "kernel m(x: f32[i, D], y: f32[j, D], b: f32[j, E]) -> f32[i, E] "
    "{ r = sqrt(sqdist(x, y)); return sum[j]((1 + r + r * r / 3) * exp(-r) * b) }",
    "kernel d(x: f32[i, D], y: f32[j, D], t: f32[j]) -> (f32[i], f32[i]) "
    "{ q = dot(x, y) / (t + 2); return mean[j](q * q), sum[j](cos(q)) }",
]


@pytest.mark.parametrize("source", PIPELINED)
def test_pipelined_pair_loops_agree(source):
    """Knob `pipeline` (a pair loop whose terms need a division by a variable or a square root
    runs in two stages a block apart, codegen._pipelined_pass): empty, one-column, block-sized
    and uneven inner ranges, register blocks of 1 to 4 rows, tiles of the inner index and the
    partial function over 2 threads, against the NumPy reference and the one-stage loop."""
    from kernelc.backends import registry, runtime
    from kernelc.backends.interface import Schedule
    from kernelc.explain import random_arguments
    from kernelc.testing.runners import run_on

    k = kc.kernel(source)
    llvm = registry.get("llvm")
    for n, m in ((5, 0), (3, 1), (9, 256), (7, 257), (13, 700), (1, 3000)):
        args = random_arguments(k, n, m, {"D": 3, "E": 2}, seed=m)
        want = k(**args, backend="numpy")
        default = dict(llvm.default_schedule(k.ir, runtime.bind(k.ir, (), args).sizes).knobs)
        for knobs in ({"rows": 1}, {"rows": 2}, {"rows": 3}, {"rows": 4, "tile": 256, "threads": 2}):
            on = Schedule("llvm", tuple(sorted((default | knobs | {"pipeline": True}).items())))
            off = Schedule("llvm", tuple(sorted((default | knobs | {"pipeline": False}).items())))
            got = run_on(llvm, k, schedule=on, **args)
            _assert_agrees(got, want, on)
            for g, w in zip(got, run_on(llvm, k, schedule=off, **args)):
                np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=str(on))


def test_pipeline_cut_is_the_division_or_root_of_the_terms():
    """The pass runs in two stages where a pair term needs a division (other than by a constant
    that makes it a product, or a product and a remainder step) or a square root, the last one on
    the way to the reduction, and in one stage otherwise: no such operation, a buffered
    reduction (logsumexp), a tolerance (divisions by invariants become products)."""
    from kernelc.backends.llvm import codegen

    def staged(source: str, approx: bool = False) -> bool:
        text = codegen.generate(kc.kernel(source).optimized, {"D": 3, "E": 2}, approx=approx, pipeline=True)[0]
        return "stages.body" in text

    assert staged(PIPELINED[0]) and staged(PIPELINED[1]) and staged(PIPELINED[2])
    assert not staged(PIPELINED[0], approx=True)
    gauss = "kernel g(x: f32[i, D], y: f32[j, D]) -> f32[i] {{ return sum[j](exp(-sqdist(x, y) / {})) }}"
    for divisor in ("3.0", "-0.25", "2.0"):  # a product and a remainder step; products
        assert not staged(gauss.format(divisor))
    assert staged(gauss.format("2.5"))
    assert not staged("kernel l(x: f32[i, D], y: f32[j, D], s: f32) -> f32[i] "
                      "{ return logsumexp[j](-sqdist(x, y) / s) }")


def test_repeated_calls_reuse_the_default_schedule(monkeypatch):
    """Deciding the default knobs runs IR passes (about a millisecond a call for a Matérn kernel,
    more than the kernel itself at 100 x 100): a second call of the same sizes reuses the
    decision, a call of other sizes decides again, and the thread count is read at each call."""
    from kernelc.backends.llvm import _shape_knobs

    k = kc.kernel("kernel m(x: f32[i, D], y: f32[j, D], ell: f32[D], b: f32[j]) -> f32[i] "
                  "{ r = sqrt(sqdist(x / ell, y / ell)); return sum[j]((1 + r) * exp(-r) * b) }", autotune="off")
    rng = np.random.default_rng(0)
    args = dict(x=rng.random((100, 3), np.float32), y=rng.random((90, 3), np.float32),
                ell=np.float32([0.5, 1, 2]), b=rng.random(90, np.float32))
    k(**args, backend="llvm")
    before = _shape_knobs.cache_info()
    k(**args, backend="llvm")
    after = _shape_knobs.cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)
    k(**(args | {"x": args["x"][:50]}), backend="llvm")
    assert _shape_knobs.cache_info().misses == after.misses + 1
    monkeypatch.setenv("KERNELC_NUM_THREADS", "1")
    k(**args, backend="llvm")
    assert k.compiled(**args, backend="llvm")[1].get("threads") == 1


@pytest.mark.parametrize("dt, npdt, powers, bound", [("f32", np.float32, range(-8, 9), 0.5 + 1e-6),
                                                     ("f64", np.float64, (3, 4, 5, -3), 2.0)])
def test_constant_integer_powers(dt, npdt, powers, bound):
    """x ** n with a constant integer n, without a libm call per lane: f32 raised in f64 and
    rounded once (IEEE's result), f64 n = 3, 4 by multiplication (<= 2 ulp of NumPy's), other f64 powers
    by llvm.pow; the special values as NumPy's power has them."""
    rng = np.random.default_rng(1)
    big = 87 if dt == "f32" else 700  # |x| up to e^87: f32's range
    x = np.concatenate([rng.uniform(-3, 3, 200_000), np.exp(rng.uniform(-big, big, 100_000)),
                        -np.exp(rng.uniform(-big, big, 1000))]).astype(npdt)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 1e-45, -1e-40, 3e38, -3e38, 2.0 ** -126],
                       npdt)
    for n in powers:
        k = kc.kernel(f"kernel p(x: {dt}[i]) -> {dt}[i] {{ return x ** {n} }}")
        with np.errstate(all="ignore"):
            want = np.power(x.astype(np.float64), float(n))
            err = ulps(k(x, backend="llvm"), want, npdt)
            finite = np.isfinite(want.astype(npdt)) & (np.abs(want) >= np.finfo(npdt).tiny)
            assert err[finite].max() <= bound, (n, err[finite].max())
            got, ref = k(special, backend="llvm"), np.power(special.astype(np.float64), float(n)).astype(npdt)
            close = ulps(got, np.power(special.astype(np.float64), float(n)), npdt) <= bound
        same = (got == ref) & (np.signbit(got) == np.signbit(ref)) | (np.isnan(got) & np.isnan(ref))
        assert np.all(same | (close & (ref != 0))), (n, special[~same], got[~same], ref[~same])
    if dt == "f32":  # no call of pow left in the pair loop's code
        k = kc.kernel("kernel p(x: f32[i, D], y: f32[j, D], b: f32[j]) -> f32[i] "
                      "{ return sum[j]((dot(x, y) + 1) ** 3 * b) }")
        args = dict(x=x[:64].reshape(8, 8), y=x[64:128].reshape(8, 8), b=x[:8])
        assert "pow" not in k.compiled(**args, backend="llvm")[2].code
