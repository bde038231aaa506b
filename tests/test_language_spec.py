"""Every program of LANGUAGE.md parses and runs, and computes what the page says."""

import math
import re
from pathlib import Path

import numpy as np
import pytest

import kernelc as kc
from kernelc.explain import random_arguments
from kernelc.dsl.builtins import ALL_FUNCTION_NAMES

SPEC = (Path(__file__).resolve().parents[1] / "docs" / "LANGUAGE.md").read_text()
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", SPEC, flags=re.S)


def test_spec_kernel_blocks_compile_and_run():
    kernels = [code for lang, code in BLOCKS if code.lstrip().startswith(("kernel", "#"))
               and "kernel" in code and "{" in code and "STATEMENTS" not in code]
    assert kernels, "LANGUAGE.md has kernel examples"
    for code in kernels:
        for k in kc.compile(code):
            k(**random_arguments(k, n=5, m=7, dims={}, seed=1), backend="numpy")


def test_spec_python_example_runs_with_smaller_sizes():
    (code,) = [c for lang, c in BLOCKS if lang == "python"]
    (kernel_src,) = [c for lang, c in BLOCKS if c.lstrip().startswith("# Gaussian")]
    code = code.replace("100_000", "300").replace("200_000", "500")
    env = {"SOURCE": kernel_src}
    exec(compile(code, "LANGUAGE.md", "exec"), env)  # noqa: S102 - our own documentation
    assert env["out"].shape == (300, 2)


SNIPPETS = [
    # (kernel source, check(kernel) -> None)
    ("kernel softmax_rows(a: f32[i, j]) -> f32[i, j] { return exp(a - logsumexp[j](a)) }", None),
    ("kernel count(x: f32[i, D], y: f32[j, D], r: f32) -> i64[i] { d2 = sqdist(x, y); return sum[j](d2 < r*r) }", None),
    ("kernel f(x: f32[i, D], y: f32[j, D], eps: f32) -> f32[i] { s = -sqdist(x, y) / eps; return -eps * logsumexp[j](s) }",
     None),
    ("kernel nw(x: f32[i], y: f32[j], t: f32[j]) -> f32[i] {\n w = exp(-square(x - y)); t2 = t\n"
     " num = sum[j](w * t2); den = sum[j](w); return num / den }", None),
    ("kernel nn(x: f32[i, D], y: f32[j, D]) -> (f32[i], i64[i]) { d = sqdist(x, y); return min[j](d), argmin[j](d) }",
     None),
    ("kernel knn(x: f32[i, D], y: f32[j, D]) -> i64[i, K] { return argkmin[j, K](sqdist(x, y)) }", None),
    ("kernel attn(q: f32[i, D], k: f32[j, D], v: f32[j, E]) -> f32[i, E] {\n"
     " s = dot(q, k) * rsqrt(f32(D))\n return softmax[j](where(j <= i, s, -inf), v) }", None),
    ("kernel types(a: f32, b: f32[D], c: f32[3], d: f32[i], e: f32[i, D], f: f32[j], g: f32[j, D], h: f32[i, j],"
     " k: f32[i, j, D]) -> f32[i, j, D] { return a + b + c[0] + d + e + f + g + h + k }", None),
]


@pytest.mark.parametrize("src, check", SNIPPETS)
def test_spec_snippets_run(src, check):
    k = kc.kernel(src)
    k(**random_arguments(k, n=4, m=6, dims={"K": 2}, seed=0), backend="numpy")


def test_several_kernels_in_one_source():
    mod = kc.compile("kernel a(x: f32[i]) -> f32[i] { return x + 1 }\n"
                     "kernel b(x: f32[i]) -> f32[i] { return x * 2 }")
    x = np.array([1.0, 2.0], np.float32)
    np.testing.assert_array_equal(mod.a(x), [2, 3])
    np.testing.assert_array_equal(mod["b"](x), [2, 4])
    assert [k.name for k in mod] == ["a", "b"]


def test_every_function_in_the_table_is_known():
    row = next(line for line in SPEC.splitlines() if line.startswith("| `exp exp2"))
    names = row.split("`")[1].split()
    table_names = set(names) | {"min", "max", "pow", "atan2", "clamp", "dot", "sqnorm", "norm", "sqdist", "sum",
                                "mean", "logsumexp", "argmax", "argmin", "normalize", "softmax", "concat", "where"}
    assert table_names <= ALL_FUNCTION_NAMES


def ev(expr: str, dtype: str = "f64", **params):
    """Evaluate a scalar expression of scalar parameters (declared as `dtype` unless given)."""
    decl = ", ".join(f"{n}: {t}" for n, (t, _) in params.items())
    out = kc.kernel(f"kernel t({decl}) -> {dtype} {{ return {expr} }}")
    return out(**{n: v for n, (_, v) in params.items()})


def test_precedence_and_literals():
    assert ev("-x**2", x=("f64", 3.0)) == -9.0
    assert ev("2**3**2", "i64") == 512
    assert ev("-2**2", "i64") == -4
    assert ev("2.0**-1") == 0.5
    with pytest.raises(kc.KernelTypeError, match="negative power"):
        ev("2**-1")
    assert ev(".5 + 1e-3 + 2.5") == 3.001
    assert ev("7 / 2") == 3.5  # true division, ints give floats
    assert ev("not (1 < 2) or 2 >= 2", "bool")
    assert ev("1 # a comment\n") == 1.0


def test_weak_literals_take_the_dtype_they_meet():
    assert ev("2 * s", "f32", s=("f32", 1.5)).dtype == np.float32
    assert ev("x / 6", "f32", x=("f32", 3.0)) == np.float32(0.5)
    assert ev("n * 0.5", "f64", n=("i32", 3)) == 1.5  # a float literal makes an integer f64
    with pytest.raises(kc.KernelTypeError):
        ev("n * 0.5", "f32", n=("i32", 3))
    assert ev("n + 1", "i32", n=("i32", 3)).dtype == np.int32
    assert ev("1 + 2", "i64") == 3 and ev("pi", "f32") == np.float32(math.pi)


def test_promotion_and_casts():
    assert ev("a + b", "f64", a=("f32", 1.0), b=("f64", 2.0)) == 3.0
    assert ev("a + b", "f64", a=("i32", 1), b=("f32", 2.0)) == 3.0  # NumPy: i32 with f32 is f64
    assert ev("f32(a) + b", "f32", a=("i32", 1), b=("f32", 2.0)) == 3.0
    assert ev("f32(a)", "f32", a=("f16", 1.5)) == 1.5
    assert ev("i32(x)", "i32", x=("f64", -2.7)) == -2  # truncates toward zero
    assert ev("i32(x)", "i32", x=("f64", float("nan"))) == 0
    assert ev("i32(x)", "i32", x=("f64", 1e20)) == 2**31 - 1  # saturates
    assert ev("bool(x)", "bool", x=("f64", 0.5))
    assert ev("f16(x)", "f16", x=("f64", 70000.0)) == np.inf


def test_f16_arithmetic_rounds_only_where_asked():
    # 2048 + 1 is not representable in f16; computed in f32, the sum survives until the cast.
    assert ev("f32(a + b) - 2048", "f32", a=("f16", 2048.0), b=("f16", 1.0)) == 1.0
    assert ev("a + b", "f16", a=("f16", 2048.0), b=("f16", 1.0)) == 2048.0


OPS = [
    ("exp(x)", np.exp), ("exp2(x)", np.exp2), ("log(x)", np.log), ("log2(x)", np.log2), ("log1p(x)", np.log1p),
    ("expm1(x)", np.expm1), ("sqrt(x)", np.sqrt), ("rsqrt(x)", lambda v: 1 / np.sqrt(v)), ("abs(x)", np.abs),
    ("sign(x)", np.sign), ("floor(x)", np.floor), ("ceil(x)", np.ceil), ("round(x)", np.rint), ("sin(x)", np.sin),
    ("cos(x)", np.cos), ("tan(x)", np.tan), ("asin(x)", np.arcsin), ("acos(x)", np.arccos), ("atan(x)", np.arctan),
    ("sinh(x)", np.sinh), ("cosh(x)", np.cosh), ("tanh(x)", np.tanh), ("sigmoid(x)", lambda v: 1 / (1 + np.exp(-v))),
    ("relu(x)", lambda v: np.maximum(v, 0)), ("softplus(x)", lambda v: np.log1p(np.exp(v))),
    ("erf(x)", np.vectorize(math.erf)), ("square(x)", np.square), ("inv(x)", lambda v: 1 / v),
    ("step(x)", lambda v: np.where(v >= 0, 1.0, 0.0)), ("min(x, 0.5)", lambda v: np.minimum(v, 0.5)),
    ("max(x, 0.5)", lambda v: np.maximum(v, 0.5)), ("pow(x, 3)", lambda v: v ** 3),
    ("atan2(x, 0.5)", lambda v: np.arctan2(v, 0.5)), ("clamp(x, -0.5, 0.5)", lambda v: np.clip(v, -0.5, 0.5)),
]


@pytest.mark.parametrize("expr, fn", OPS, ids=[o[0] for o in OPS])
def test_elementwise_functions(expr, fn):
    x = np.array([-3.0, -1.5, -0.5, -0.0, 0.0, 0.25, 0.5, 1.5, 2.5, 10.0, np.inf, -np.inf, np.nan])
    k = kc.kernel(f"kernel t(x: f64[i]) -> f64[i] {{ return {expr} }}")
    with np.errstate(all="ignore"):
        want = fn(x).astype(np.float64)
    np.testing.assert_allclose(k(x), want, rtol=1e-14, atol=0)


def test_vector_functions():
    a = np.array([[3.0, 4.0, -1.0]])
    b = np.array([[1.0, 0.5, 2.0]])
    k = kc.kernel("""kernel v(a: f64[i, D], b: f64[i, D]) -> f64[i, 14] {
        return concat(dot(a, b), sqnorm(a), norm(a), sqdist(a, b), sum(a), mean(a), max(a), min(a),
                      logsumexp(a), f64(argmax(a)), f64(argmin(a)), normalize(a)[0], softmax(a)[1], a[1:3][0])
    }""")
    e = np.exp(a - a.max())
    want = [(a @ b.T).item(), (a * a).sum(), np.linalg.norm(a), ((a - b) ** 2).sum(), a.sum(), a.mean(), a.max(), a.min(),
            np.log(np.exp(a).sum()), 1, 2, 3 / np.linalg.norm(a), (e / e.sum())[0, 1], 4.0]
    np.testing.assert_allclose(k(a, b)[0], np.array(want, dtype=np.float64).ravel(), rtol=1e-14)


def test_index_and_dimension_values():
    k = kc.kernel("kernel t(x: f32[i, D], y: f32[j]) -> f32[i, j] { return f32(i * 10 + j) + rsqrt(f32(D)) * 0 }")
    out = k(np.zeros((2, 4), np.float32), np.zeros(3, np.float32))
    np.testing.assert_array_equal(out, [[0, 1, 2], [10, 11, 12]])
