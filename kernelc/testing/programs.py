"""Generated programs for differential testing: hypothesis writes well-typed kernels and data
(empty ranges, ties, NaN, inf, huge and tiny values, f16/bf16/f32/f64), and each backend's result
is compared with a brute-force float64 evaluation on the materialized N x M matrix, written
independently of every backend (the NumPy one included) here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import ml_dtypes
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

Env = dict[str, np.ndarray]


@dataclass(frozen=True)
class Expr:
    """A pair-level scalar expression: its source and its brute-force value on (N, M) grids."""

    src: str
    fn: Callable[[Env], np.ndarray]
    # A bound on the magnitudes of the values the expression combines (|a| + |b| for a + b, ...):
    # rounding errors of a backend computing in f32 are a few ulp of this, not of the result.
    mag: Callable[[Env], np.ndarray] = lambda e: np.ones((1, 1))  # noqa: E731
    smooth: bool = True  # no floor, step or data-dependent where: small errors stay small


def _leaves(dt: str) -> list[Expr]:
    ax = lambda e: np.abs(e["x"])  # noqa: E731
    ay = lambda e: np.abs(e["y"])  # noqa: E731
    return [
        Expr("u", lambda e: e["u"][:, None], lambda e: np.abs(e["u"])[:, None]),
        Expr("w", lambda e: e["w"][None, :], lambda e: np.abs(e["w"])[None, :]),
        Expr("a", lambda e: e["a"], lambda e: np.abs(e["a"])),
        Expr("s", lambda e: e["s"] * np.ones((1, 1)), lambda e: np.abs(e["s"]) * np.ones((1, 1))),
        Expr("sqdist(x, y)", lambda e: ((e["x"][:, None, :] - e["y"][None, :, :]) ** 2).sum(-1),
             lambda e: ((ax(e)[:, None, :] + ay(e)[None, :, :]) ** 2).sum(-1)),
        Expr("dot(x, y)", lambda e: (e["x"][:, None, :] * e["y"][None, :, :]).sum(-1),
             lambda e: (ax(e)[:, None, :] * ay(e)[None, :, :]).sum(-1)),
        Expr("x[1]", lambda e: e["x"][:, None, 1], lambda e: ax(e)[:, None, 1]),
        Expr("y[-1]", lambda e: e["y"][None, :, -1], lambda e: ay(e)[None, :, -1]),
        Expr("0.5", lambda e: np.full((1, 1), 0.5), lambda e: np.full((1, 1), 0.5)),
        Expr("2.0", lambda e: np.full((1, 1), 2.0), lambda e: np.full((1, 1), 2.0)),
        Expr(f"{dt}(i)", lambda e: np.arange(e["n"], dtype=np.float64)[:, None],
             lambda e: np.arange(e["n"], dtype=np.float64)[:, None]),
        Expr(f"{dt}(j)", lambda e: np.arange(e["m"], dtype=np.float64)[None, :],
             lambda e: np.arange(e["m"], dtype=np.float64)[None, :]),
        Expr("sum(x * x)", lambda e: (e["x"] ** 2).sum(-1)[:, None], lambda e: (e["x"] ** 2).sum(-1)[:, None]),
    ]


# (source format, value, magnitude bound from the operand's, smooth)
UNARY = [
    ("-({})", np.negative, lambda m: m, True), ("abs({})", np.abs, lambda m: m, True),
    ("exp(-abs({}))", lambda v: np.exp(-np.abs(v)), lambda m: 1 + m, True),
    ("sqrt(abs({}))", lambda v: np.sqrt(np.abs(v)), np.sqrt, False), ("tanh({})", np.tanh, lambda m: m, True),
    ("square({})", np.square, np.square, True), ("relu({})", lambda v: np.maximum(v, 0.0), lambda m: m, True),
    ("floor({})", np.floor, lambda m: m + 1, False), ("step({})", lambda v: (v >= 0) * 1.0, lambda m: 1 + 0 * m, False),
    ("sigmoid({})", lambda v: 1 / (1 + np.exp(-v)), lambda m: 1 + m, True),
]
BINARY = [
    ("({} + {})", np.add, np.add), ("({} - {})", np.subtract, np.add), ("({} * {})", np.multiply, np.multiply),
    ("min({}, {})", np.minimum, np.maximum), ("max({}, {})", np.maximum, np.maximum),
    ("({} / (1 + abs({})))", lambda a, b: a / (1 + np.abs(b)), lambda a, b: a * (1 + b)),
]


@st.composite
def expressions(draw, dt: str, depth: int = 3) -> Expr:
    leaves = _leaves(dt)
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(leaves))
    kind = draw(st.sampled_from(["unary", "binary", "where", "mask"]))
    a = draw(expressions(dt, depth - 1))
    if kind == "unary":
        fmt, fn, mag, smooth = draw(st.sampled_from(UNARY))
        return Expr(fmt.format(a.src), lambda e: fn(a.fn(e)), lambda e: mag(a.mag(e)), smooth and a.smooth)
    b = draw(expressions(dt, depth - 1))
    if kind == "binary":
        fmt, fn, mag = draw(st.sampled_from(BINARY))
        return Expr(fmt.format(a.src, b.src), lambda e: fn(a.fn(e), b.fn(e)), lambda e: mag(a.mag(e), b.mag(e)),
                    a.smooth and b.smooth)
    if kind == "where":
        c = draw(expressions(dt, depth - 1))
        return Expr(f"where({a.src} < {c.src}, {a.src}, {b.src})",
                    lambda e: np.where(a.fn(e) < c.fn(e), a.fn(e), b.fn(e)),
                    lambda e: np.maximum(a.mag(e), b.mag(e)), False)
    return Expr(f"where(j <= i, {a.src}, {b.src})",
                lambda e: np.where(np.arange(e["m"])[None, :] <= np.arange(e["n"])[:, None], a.fn(e), b.fn(e)),
                lambda e: np.where(np.arange(e["m"])[None, :] <= np.arange(e["n"])[:, None], a.mag(e), b.mag(e)),
                a.smooth and b.smooth)


# --- brute force of every reduction over axis 1 (j) of an (N, M) grid -----------------------------


def _lse(v: np.ndarray) -> np.ndarray:
    m = v.max(axis=1) if v.shape[1] else np.full(v.shape[0], -np.inf)
    safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(all="ignore"):
        total = np.exp(v - safe[:, None]).sum(axis=1)
        out = safe + np.log(total)
    out = np.where(m == np.inf, np.inf, out)
    out = np.where(m == -np.inf, -np.inf, out)
    return np.where(np.isnan(m), np.nan, out)


def _softmax(s: np.ndarray, v: np.ndarray) -> np.ndarray:
    m = s.max(axis=1) if s.shape[1] else np.full(s.shape[0], -np.inf)
    with np.errstate(all="ignore"):
        p = np.where(np.isposinf(m)[:, None], (s == np.inf) * 1.0, np.exp(s - np.where(np.isfinite(m), m, 0)[:, None]))
        den = p.sum(axis=1)
        out = (p * v).sum(axis=1) / den
    out = np.where(np.isneginf(m) | (s.shape[1] == 0), 0.0, out)
    return np.where(np.isnan(m), np.nan, out)


def _sorted(v: np.ndarray, k: int, largest: bool) -> tuple[np.ndarray, np.ndarray]:
    key = -v if largest else v
    order = np.argsort(key, axis=1, kind="stable")[:, :k]  # NaN last, ties by index
    vals = np.take_along_axis(v, order, 1)
    pad = k - vals.shape[1]
    fill = -np.inf if largest else np.inf
    vals = np.concatenate([vals, np.full((v.shape[0], pad), fill)], 1) if pad > 0 else vals
    order = np.concatenate([order, np.full((v.shape[0], pad), -1)], 1) if pad > 0 else order
    return vals, order


def _arg(v: np.ndarray, largest: bool) -> np.ndarray:
    if v.shape[1] == 0:
        return np.full(v.shape[0], -1)
    return (np.argmax if largest else np.argmin)(v, axis=1)


REDUCTIONS: dict[str, tuple[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]] = {
    # name -> (output kind, brute force on (values, weights))
    "sum": ("value", lambda v, w: v.sum(axis=1)),
    "mean": ("value", lambda v, w: v.mean(axis=1) if v.shape[1] else np.full(v.shape[0], np.nan)),
    "max": ("value", lambda v, w: v.max(axis=1) if v.shape[1] else np.full(v.shape[0], -np.inf)),
    "min": ("value", lambda v, w: v.min(axis=1) if v.shape[1] else np.full(v.shape[0], np.inf)),
    "logsumexp": ("value", lambda v, w: _lse(v)),
    "logsumexp_w": ("value", lambda v, w: _lse(v + np.log(w))),
    "softmax": ("value", _softmax),
    "argmin": ("index", lambda v, w: _arg(v, False)),
    "argmax": ("index", lambda v, w: _arg(v, True)),
    "kmin": ("kvalue", lambda v, w: _sorted(v, 3, False)[0]),
    "kmax": ("kvalue", lambda v, w: _sorted(v, 3, True)[0]),
    "argkmin": ("kindex", lambda v, w: _sorted(v, 3, False)[1]),
    "argkmax": ("kindex", lambda v, w: _sorted(v, 3, True)[1]),
}

SPECIAL = [0.0, -0.0, 1.0, 2.0, np.nan, np.inf, -np.inf, 1e30, -1e30, 1e-30, 3e-39]
DTYPES = {"f64": np.dtype(np.float64), "f32": np.dtype(np.float32), "f16": np.dtype(np.float16),
          "bf16": np.dtype(ml_dtypes.bfloat16)}
RTOL = {"f64": 1e-9, "f32": 1e-6, "f16": 2e-3, "bf16": 1.6e-2}  # a rounding or two of the output


def values(dt: np.dtype, tame: bool = False):
    """Mostly finite values, some ties; unless `tame`, also NaN, infinities, huge and tiny ones."""
    finite = st.floats(-3, 3, allow_nan=False, width=32)
    ties = st.sampled_from([0.0, 1.0, 2.0])
    options = (finite, finite, finite, ties) if tame else (finite, finite, finite, ties, st.sampled_from(SPECIAL))
    return st.one_of(*options).map(lambda v: dt.type(v))


@dataclass(frozen=True)
class Program:
    """A generated kernel (`source`) with its data, and how to judge a backend's result."""

    dt: str
    data: Env
    e: Expr
    name: str  # "map" or a key of REDUCTIONS
    over_i: bool
    epilogue: bool

    @property
    def source(self) -> str:
        return _kernel_source(self.dt, self.e, self.name, self.over_i, self.epilogue)

    def check(self, got: np.ndarray, reference: bool) -> None:
        """Assert that `got` is right. A `reference` backend (the NumPy one) must match the brute
        force to a rounding of the output, with exactly the same indices; another backend within
        1e-7 in f64, and in narrower dtypes within a forward-error bound of f32 arithmetic where
        f32 rounding cannot flip a discontinuity (elsewhere it is not judged)."""
        dt, data, e, name, over_i = self.dt, self.data, self.e, self.name, self.over_i
        want, scale = _brute_force(data, e, name, over_i, self.epilogue)
        if reference:
            _compare(got, want, scale, data, e, dt, name, over_i, exact_ties="dot(" not in e.src)
        elif dt == "f64":
            _compare(got, want, scale, data, e, dt, name, over_i, exact_ties=False, rtol=1e-7)
        elif _f32_comparable(data, e, name):
            _compare_f32(got, want, data, e, dt, name, over_i, self.epilogue)


@st.composite
def programs(draw) -> Program:
    dt = draw(st.sampled_from(["f64", "f32", "f32", "f16", "bf16"]))
    npdt = DTYPES[dt]
    gen = np.dtype(np.float64) if dt == "f64" else np.dtype(np.float32)  # hypothesis draws these
    n, m, d = draw(st.integers(0, 5)), draw(st.integers(0, 6)), draw(st.integers(2, 3))
    tame = draw(st.booleans())  # half the data sets have no special values: f32 backends compare there

    def arr(shape):
        with np.errstate(over="ignore"):
            return draw(hnp.arrays(gen, shape, elements=values(gen, tame))).astype(npdt)

    data = {"x": arr((n, d)), "y": arr((m, d)), "u": arr((n,)), "w": arr((m,)), "a": arr((n, m)), "s": arr(())}
    e = draw(expressions(dt))
    name = draw(st.sampled_from(["map"] + list(REDUCTIONS)))
    over_i = name != "map" and draw(st.booleans())
    epilogue = name != "map" and REDUCTIONS[name][0] == "value" and draw(st.booleans())
    return Program(dt, data, e, name, over_i, epilogue)


def _kernel_source(dt: str, e: Expr, name: str, over_i: bool, epilogue: bool) -> str:
    params = f"x: {dt}[i, D], y: {dt}[j, D], u: {dt}[i], w: {dt}[j], a: {dt}[i, j], s: {dt}"
    if name == "map":
        return f"kernel g({params}) -> {dt}[i, j] {{\n    return {e.src}\n}}"
    idx, out_idx = ("i", "j") if over_i else ("j", "i")
    kind = REDUCTIONS[name][0]
    out_dt = "i64" if "index" in kind else dt
    k = ", 3" if kind.startswith("k") else ""
    out_dim = ", 3" if kind.startswith("k") else ""
    args = f"{e.src}, exp(-abs(w + u))" if name in ("softmax", "logsumexp_w") else e.src
    name = name.removesuffix("_w")
    body = f"{name}[{idx}{k}]({args})"
    if epilogue:
        body = f"r * 2 + {'u' if out_idx == 'i' else 'w'}"
        return (f"kernel g({params}) -> {out_dt}[{out_idx}{out_dim}] {{\n    r = {name}[{idx}{k}]({args})\n"
                f"    return {body}\n}}")
    return f"kernel g({params}) -> {out_dt}[{out_idx}{out_dim}] {{\n    return {body}\n}}"


def _brute_force(data: Env, e: Expr, name: str, over_i: bool, epilogue: bool) -> tuple[np.ndarray, np.ndarray]:
    """(expected, error scale): the result and what its rounding error is relative to."""
    n, m = len(data["u"]), len(data["w"])
    env = {k: np.asarray(v, np.float64) for k, v in data.items()} | {"n": n, "m": m}
    with np.errstate(all="ignore"):
        grid = np.broadcast_to(e.fn(env), (n, m)).astype(np.float64)
        # the backend rounds constants to the kernel's dtype; ours (0.5, 2) are exact in all
        if name == "map":
            return grid, np.abs(grid)
        weights = np.broadcast_to(np.exp(-np.abs(env["w"][None, :] + env["u"][:, None])), (n, m))
        if over_i:
            grid, weights = grid.T, weights.T
        result = REDUCTIONS[name][1](grid, weights)
        scale = np.abs(grid).sum(axis=1) if name in ("sum", "mean", "softmax") else np.abs(result)
        if name.startswith("logsumexp"):
            scale = np.abs(result) + 1.0  # an absolute error of rounding in the log
        if name == "softmax":  # a weighted mean of the values (weights), shifted by the scores' rounding
            values = np.where(np.isfinite(weights), np.abs(weights), 0.0).max(axis=1, initial=0.0)
            scores = np.where(np.isfinite(grid), np.abs(grid), 0.0).max(axis=1, initial=0.0)
            scale = values * (1 + scores)
        if epilogue:
            other = env["u"] if not over_i else env["w"]
            result, scale = result * 2 + other, 2 * scale + np.abs(other)
    return result, scale


def _close(got: np.ndarray, want: np.ndarray, scale: np.ndarray, rtol: float) -> np.ndarray:
    got, want = got.astype(np.float64), want.astype(np.float64)
    with np.errstate(all="ignore"):
        same = (got == want) | (np.isnan(got) & np.isnan(want))
        near = np.abs(got - want) <= rtol * np.where(np.isfinite(scale), scale, np.abs(want)) + 1e-300
    return same | (near & np.isfinite(got) & np.isfinite(want))


def _check_indices(got: np.ndarray, want: np.ndarray, grid: np.ndarray, rtol: float, exact: bool) -> None:
    """Indices must agree; where the backend computes a value in another order than the brute
    force (a float64 matrix product for dot), a near-tie may go either way."""
    if exact:
        np.testing.assert_array_equal(got, want)
        return
    for r in range(got.shape[0]):
        for g, w in zip(np.atleast_1d(got[r]), np.atleast_1d(want[r])):
            if g == w:
                continue
            assert g >= 0 and w >= 0, (got[r], want[r])
            vg, vw = grid[r, g], grid[r, w]
            assert abs(vg - vw) <= rtol * max(abs(vg), abs(vw)), (r, got[r], want[r], vg, vw)


def _f32_comparable(data: Env, e: Expr, name: str) -> bool:
    """A backend computing in f32 is compared where f32 rounding cannot flip a discontinuity or
    overflow where f64 does not (finite inputs below 1e4; infinities and NaN are fine)."""
    used = set(re.findall(r"\b[xyuwas]\b", e.src)) | {"u", "w"}  # u and w also weigh softmax
    finite = [np.asarray(v, np.float64) for k, v in data.items() if k in used]
    small = all((np.abs(v[np.isfinite(v)]) < 1e4).all() for v in finite)
    return small and e.smooth and name not in ("kmin", "kmax", "argkmin", "argkmax")


F32_EPS = 2.0 ** -23


def _compare_f32(got, want, data, e, dt, name, over_i, epilogue) -> None:
    """Compare against the f64 brute force with an error bound of 64 f32 ulps of the magnitudes
    combined (forward error), plus the rounding of the output dtype."""
    n, m = len(data["u"]), len(data["w"])
    env = {k: np.asarray(v, np.float64) for k, v in data.items()} | {"n": n, "m": m}
    with np.errstate(all="ignore"):
        mag = np.broadcast_to(e.mag(env), (n, m)).astype(np.float64)
        grid = np.broadcast_to(e.fn(env), (n, m)).astype(np.float64)
        if over_i:
            mag, grid = mag.T, grid.T
        kind = REDUCTIONS[name][0] if name != "map" else "value"
        if name == "map":
            bound = mag
        elif name in ("sum", "mean"):
            bound = np.nansum(mag, axis=1) / (max(mag.shape[1], 1) if name == "mean" else 1)
        else:  # max, min, logsumexp (weights' error included), softmax, argmin/argmax
            other = np.fmax.reduce(np.abs(env["w"] if not over_i else env["u"]), initial=0)
            top = np.fmax.reduce(mag, axis=1, initial=0)
            bound = (top + 1) * (1 + other) if name != "logsumexp_w" else top + 2 + 2 * other
        if epilogue:
            bound = 2 * bound + np.abs(env["u"] if not over_i else env["w"])
        # rounding to the output dtype: relative RTOL for normal results, absolute for subnormal ones
        rounding = np.abs(np.asarray(want, np.float64).astype(DTYPES[dt]).astype(np.float64) - want)
        tol = np.nan_to_num(16 * F32_EPS * bound, nan=0.0) + np.nan_to_num(RTOL[dt] * np.abs(want), nan=0.0) \
            + np.nan_to_num(2 * rounding, nan=0.0, posinf=0.0) + 1e-30
    if "index" in kind:
        if grid.shape[1] == 0:
            np.testing.assert_array_equal(got, want)
            return
        rows = np.arange(len(got))
        with np.errstate(all="ignore"):
            near = np.abs(grid[rows, np.maximum(got, 0)] - grid[rows, np.maximum(want, 0)]) <= tol
        ok = (got == want) | (near & (got >= 0) & (want >= 0))
        assert ok.all(), (got, want)
        return
    g, w = np.asarray(got, np.float64), np.asarray(want, np.float64)
    with np.errstate(all="ignore"):
        exact = (g == w) | (np.isnan(g) & np.isnan(w))
        ok = np.where(np.isfinite(w), exact | (np.abs(g - w) <= tol), exact)
    assert ok.all(), (g[~ok], w[~ok], np.broadcast_to(tol, w.shape)[~ok])


def _compare(got, want, scale, data, e, dt, name, over_i, exact_ties, rtol=None) -> None:
    out_dtype = DTYPES[dt]
    rtol = rtol or RTOL[dt]
    kind = REDUCTIONS[name][0] if name != "map" else "value"
    if "index" in kind:
        n, m = len(data["u"]), len(data["w"])
        with np.errstate(all="ignore"):
            grid = np.broadcast_to(e.fn({k: np.asarray(v, np.float64) for k, v in data.items()} | {"n": n, "m": m}),
                                   (n, m))
        _check_indices(got, want, grid.T if over_i else grid, 1e-9, exact=exact_ties)
        return
    with np.errstate(all="ignore"):
        want_rounded = want.astype(out_dtype)
    if kind == "kvalue":
        scale = np.abs(want)
    ok = _close(got, want_rounded, np.asarray(scale), rtol)
    assert ok.all(), (got[~ok], want_rounded[~ok])
