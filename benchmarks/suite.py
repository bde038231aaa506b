"""The CPU benchmark suite: kernelc's llvm backend against the hand-written AVX2 C anchor, NumPy
(chunked, GEMM for distances), Numba (parallel, fastmath) and pykeops, side by side in one run on
the same data; then the memory-bound row operators against NumPy next to the machine's copy
bandwidth; then how kernelc's cost grows with D and N x M, and where its time goes
(instructions per pair of the hot loop).

    python benchmarks/suite.py --anchor ../shared/cpu-anchor [--sizes 10000 100000] [--json s.json] [--plot s.png]

Every implementation's result is checked against kernelc's (values within 2e-4 relative, indices
equal or a near-tie) before it is timed; a time is the median of --repeats calls after a warm-up,
the implementations taking turns call by call (the machine's load drifts; their ratios should not).
GFLOP/s counts kernelc's operations per pair of the typed kernel (ir/passes/cost.py: every
arithmetic operation and function once per component). An implementation whose previous size
took long enough that this one would exceed --budget seconds is skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time
from typing import Callable

import numpy as np
from rich.console import Console
from rich.table import Table

import kernelc as kc
from kernelc.ir.passes import cost

SQDIST = "sqdist(x, y)"
PROBLEMS: dict[str, tuple[str, int]] = {  # name -> (kernel source, D)
    "gauss D=3": ("kernel g(x: f32[i, D], y: f32[j, D], b: f32[j], s: f32) -> f32[i] "
                  "{ return sum[j](exp(-sqdist(x, y) / (2 * s * s)) * b) }", 3),
    "gauss D=64": ("kernel g(x: f32[i, D], y: f32[j, D], b: f32[j], s: f32) -> f32[i] "
                   "{ return sum[j](exp(-sqdist(x, y) / (2 * s * s)) * b) }", 64),
    "gauss D=3 E=16": ("kernel g(x: f32[i, D], y: f32[j, D], b: f32[j, E], s: f32) -> f32[i, E] "
                       "{ return sum[j](exp(-sqdist(x, y) / (2 * s * s)) * b) }", 3),
    "logsumexp D=3": ("kernel l(x: f32[i, D], y: f32[j, D]) -> f32[i] { return logsumexp[j](-sqdist(x, y)) }", 3),
    "argmin D=3": ("kernel a(x: f32[i, D], y: f32[j, D]) -> i64[i] { return argmin[j](sqdist(x, y)) }", 3),
    "argkmin K=10 D=3": ("kernel k(x: f32[i, D], y: f32[j, D]) -> i64[i, 10] { return argkmin[j, 10](sqdist(x, y)) }",
                         3),
    "matern52 vector-l D=3": (
        "kernel m(x: f32[i, D], y: f32[j, D], ell: f32[D], b: f32[j]) -> f32[i] { r = sqrt(sqdist(x / ell, y / ell)); "
        "return sum[j]((1 + sqrt(5) * r + 5 * r * r / 3) * exp(-sqrt(5) * r) * b) }", 3),
    "attention D=E=64": ("kernel t(x: f32[i, D], y: f32[j, D], v: f32[j, E]) -> f32[i, E] "
                         "{ return softmax[j](dot(x, y) * 0.125, v) }", 64),
}
VALUES = 16  # E of the Gaussian with vector values (several right-hand sides, KeOps' K @ b)
ANCHORED = {"gauss D=3": "gauss", "gauss D=64": "gauss", "logsumexp D=3": "lse", "argmin D=3": "argmin"}


def vector_values(problem: str) -> bool:
    """Whether the problem is the Gaussian with VALUES values per point."""
    return "gauss" in problem and "E=" in problem


def dims(problem: str) -> dict[str, int]:
    """The problem's dimensions: D, and E (the Gaussian's VALUES; attention's E = D)."""
    d = PROBLEMS[problem][1]
    return {"D": d, "E": VALUES if vector_values(problem) else d}


def data(problem: str, n: int, m: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    d = PROBLEMS[problem][1]
    out = {"x": rng.random((n, d), np.float32), "y": rng.random((m, d), np.float32)}
    if "gauss" in problem or "matern" in problem:
        out["b"] = rng.random((m, VALUES) if vector_values(problem) else m, np.float32)
    if "gauss" in problem:
        out["s"] = np.float32(0.5 if d == 3 else 2.0)
    if "matern" in problem:
        out["ell"] = np.float32([0.5, 1.0, 2.0])
    if "attention" in problem:
        out["x"] *= np.float32(0.3)
        out["v"] = rng.random((m, d), np.float32)
    return out


# --- NumPy, chunked over rows (the way that does not run out of memory) ---------------------------

def _sqdist_chunks(x: np.ndarray, y: np.ndarray, rows: int):
    """|x_i - y_j|^2 for row blocks of x as one GEMM on augmented operands, clamped at 0."""
    xa = np.concatenate([x, (x * x).sum(1, keepdims=True), np.ones((len(x), 1), np.float32)], 1)
    ya = np.ascontiguousarray(np.concatenate([-2 * y, np.ones((len(y), 1), np.float32),
                                              (y * y).sum(1, keepdims=True)], 1).T)
    for lo in range(0, len(x), rows):
        d2 = xa[lo:lo + rows] @ ya
        np.maximum(d2, 0, out=d2)
        yield lo, d2


def numpy_impl(problem: str) -> Callable:
    def run(**a):
        x, y = a["x"], a["y"]
        rows = max(1, (8 << 20) // (4 * max(len(y), 1)))
        if "attention" in problem:
            out = np.empty((len(x), a["v"].shape[1]), np.float32)
            for lo in range(0, len(x), rows):
                s = x[lo:lo + rows] @ y.T * np.float32(0.125)
                s -= s.max(1, keepdims=True)
                np.exp(s, out=s)
                out[lo:lo + rows] = (s @ a["v"]) / s.sum(1, keepdims=True)
            return out
        if "matern" in problem:
            x, y = x / a["ell"], y / a["ell"]
        shape = (len(x), 10) if "argkmin" in problem else (len(x),) + a["b"].shape[1:] if "gauss" in problem \
            else len(x)
        out = np.empty(shape, np.int64 if "arg" in problem else np.float32)
        for lo, d2 in _sqdist_chunks(x, y, rows):
            if "gauss" in problem:
                d2 *= np.float32(-1 / (2 * a["s"] ** 2))
                np.exp(d2, out=d2)
                out[lo:lo + len(d2)] = d2 @ a["b"]
            elif "matern" in problem:
                r = np.sqrt(d2, out=d2) * np.float32(np.sqrt(5))
                out[lo:lo + len(d2)] = ((1 + r + r * r / 3) * np.exp(-r)) @ a["b"]
            elif "logsumexp" in problem:
                d2 *= -1
                mx = d2.max(1, keepdims=True)
                out[lo:lo + len(d2)] = mx[:, 0] + np.log(np.exp(d2 - mx).sum(1))
            elif "argkmin" in problem:
                part = np.argpartition(d2, 9, axis=1)[:, :10]
                order = np.argsort(np.take_along_axis(d2, part, 1), axis=1, kind="stable")
                out[lo:lo + len(d2)] = np.take_along_axis(part, order, 1)
            else:
                out[lo:lo + len(d2)] = d2.argmin(1)
        return out
    return run


# --- Numba, parallel and fastmath --------------------------------------------------------------------

def numba_impl(problem: str) -> Callable | None:
    try:
        import numba
    except ImportError:
        return None
    nb = numba

    @nb.njit(fastmath=True, inline="always")
    def sqd(x, y, i, j):
        acc = np.float32(0)
        for k in range(x.shape[1]):
            t = x[i, k] - y[j, k]
            acc += t * t
        return acc

    @nb.njit(parallel=True, fastmath=True)
    def gauss(x, y, b, c):
        out = np.empty(x.shape[0], np.float32)
        for i in nb.prange(x.shape[0]):
            acc = np.float32(0)
            for j in range(y.shape[0]):
                acc += np.exp(sqd(x, y, i, j) * c) * b[j]
            out[i] = acc
        return out

    @nb.njit(parallel=True, fastmath=True)
    def gauss_values(x, y, b, c):
        out = np.zeros((x.shape[0], b.shape[1]), np.float32)
        for i in nb.prange(x.shape[0]):
            for j in range(y.shape[0]):
                w = np.exp(sqd(x, y, i, j) * c)
                for e in range(b.shape[1]):
                    out[i, e] += w * b[j, e]
        return out

    @nb.njit(parallel=True, fastmath=True)
    def matern(x, y, b):
        out = np.empty(x.shape[0], np.float32)
        s5 = np.float32(np.sqrt(5.0))
        for i in nb.prange(x.shape[0]):
            acc = np.float32(0)
            for j in range(y.shape[0]):
                r = np.sqrt(sqd(x, y, i, j)) * s5
                acc += (1 + r + r * r / 3) * np.exp(-r) * b[j]
            out[i] = acc
        return out

    @nb.njit(parallel=True, fastmath=True)
    def lse(x, y):
        out = np.empty(x.shape[0], np.float32)
        for i in nb.prange(x.shape[0]):
            m, t = np.float32(-np.inf), np.float32(0)
            for j in range(y.shape[0]):
                v = -sqd(x, y, i, j)
                if v > m:
                    t = t * np.exp(m - v) + 1
                    m = v
                else:
                    t += np.exp(v - m)
            out[i] = m + np.log(t)
        return out

    @nb.njit(parallel=True, fastmath=True)
    def argkmin(x, y, k):
        out = np.empty((x.shape[0], k), np.int64)
        for i in nb.prange(x.shape[0]):
            best = np.full(k, np.inf, np.float32)
            idx = np.full(k, -1, np.int64)
            for j in range(y.shape[0]):
                d = sqd(x, y, i, j)
                if d < best[k - 1]:
                    p = k - 1
                    while p > 0 and best[p - 1] > d:
                        best[p], idx[p] = best[p - 1], idx[p - 1]
                        p -= 1
                    best[p], idx[p] = d, j
            out[i] = idx
        return out

    @nb.njit(fastmath=True, inline="always")
    def dot(x, y, i, j):
        acc = np.float32(0)
        for k in range(x.shape[1]):
            acc += x[i, k] * y[j, k]
        return acc

    @nb.njit(parallel=True, fastmath=True)
    def attention(x, y, v):
        out = np.empty((x.shape[0], v.shape[1]), np.float32)
        for i in nb.prange(x.shape[0]):
            m = np.float32(-np.inf)
            for j in range(y.shape[0]):
                m = max(m, dot(x, y, i, j) * np.float32(0.125))
            acc = np.zeros(v.shape[1], np.float32)
            den = np.float32(0)
            for j in range(y.shape[0]):
                w = np.exp(dot(x, y, i, j) * np.float32(0.125) - m)
                den += w
                acc += w * v[j]
            out[i] = acc / den
        return out

    if "gauss" in problem:
        values = gauss_values if vector_values(problem) else gauss
        return lambda **a: values(a["x"], a["y"], a["b"], np.float32(-1 / (2 * a["s"] ** 2)))
    if "matern" in problem:
        return lambda **a: matern(a["x"] / a["ell"], a["y"] / a["ell"], a["b"])
    if "logsumexp" in problem:
        return lambda **a: lse(a["x"], a["y"])
    if "argkmin" in problem:
        return lambda **a: argkmin(a["x"], a["y"], 10)
    if "argmin" in problem:
        return lambda **a: argkmin(a["x"], a["y"], 1)[:, 0]
    return lambda **a: attention(a["x"], a["y"], a["v"])


# --- pykeops -----------------------------------------------------------------------------------------

def pykeops_impl(problem: str) -> Callable | None:
    try:
        from pykeops.numpy import LazyTensor
    except Exception:
        return None

    def run(**a):
        x, y = a["x"], a["y"]
        if "matern" in problem:
            x, y = x / a["ell"], y / a["ell"]
        xi, yj = LazyTensor(np.ascontiguousarray(x)[:, None, :]), LazyTensor(np.ascontiguousarray(y)[None, :, :])
        if "attention" in problem:
            s = (xi * yj).sum(-1) * 0.125
            return s.sumsoftmaxweight(LazyTensor(a["v"][None, :, :]), axis=1)
        d2 = ((xi - yj) ** 2).sum(-1)
        if "gauss" in problem:
            b = a["b"].reshape(len(y), -1)
            out = ((-d2 / float(2 * a["s"] ** 2)).exp() * LazyTensor(b[None, :, :])).sum(1)
            return out.reshape((len(x),) + a["b"].shape[1:])
        if "matern" in problem:
            r = d2.sqrt() * float(np.sqrt(5))
            return ((1 + r + r * r / 3) * (-r).exp() * LazyTensor(a["b"][None, :, None])).sum(1)[:, 0]
        if "logsumexp" in problem:
            return (-d2).logsumexp(1)[:, 0]
        if "argkmin" in problem:
            return d2.argKmin(10, dim=1)
        return d2.argmin(1)[:, 0]
    return run


# --- the hand-written C anchor ---------------------------------------------------------------------

def anchor_impl(folder: str | None) -> Callable[[str], Callable | None]:
    """The AVX2 C kernels of ../shared/cpu-anchor, built into a temporary copy (the folder may be
    read-only); they cover gauss, logsumexp and argmin."""
    if not folder:
        return lambda problem: None
    import atexit
    import importlib.util
    import shutil
    import subprocess
    import tempfile

    work = tempfile.mkdtemp(prefix="kernelc-anchor-")
    for name in ("bench.py", "kernels.c"):
        shutil.copy(os.path.join(folder, name), work)
    os.makedirs(os.path.join(work, "build"))
    subprocess.run(["gcc", "-O3", "-march=native", "-ffast-math", "-fopenmp", "-shared", "-fPIC", "kernels.c",
                    "-o", "build/libkernels.so", "-lm"], cwd=work, check=True)
    spec = importlib.util.spec_from_file_location("cpu_anchor_bench", os.path.join(work, "bench.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    mod.lib()  # loaded now, so that the copy can go when the suite exits
    atexit.register(shutil.rmtree, work, ignore_errors=True)

    def make(problem: str) -> Callable | None:
        fn = mod.IMPLS.get(ANCHORED.get(problem, ""), {}).get("c_avx2")
        if fn is None:
            return None
        def run(**a):
            b = a["b"][:, None] if "b" in a else None
            return np.asarray(fn(a["x"], a["y"], b, float(a.get("s", 1.0)))).reshape(len(a["x"]))
        return run
    return make


# --- measuring ----------------------------------------------------------------------------------------

def agrees(problem: str, got: np.ndarray, want: np.ndarray, a: dict) -> bool:
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return False
    if "arg" not in problem:
        return bool(np.allclose(got, want, rtol=2e-4, atol=2e-4 * np.abs(want).max()))
    rows = np.arange(min(len(got), 200))  # a different index is fine at a near-tie
    x, y = a["x"][rows].astype(np.float64), a["y"].astype(np.float64)
    d2 = ((x[:, None, :] - y[None]) ** 2).sum(-1)
    g, w = got[rows].reshape(len(rows), -1), want[rows].reshape(len(rows), -1)
    return bool(np.allclose(np.take_along_axis(d2, g, 1), np.take_along_axis(d2, w, 1), rtol=1e-4, atol=1e-6))


SETTLE_S = 0.2  # pause before each call: the previous implementation's worker threads stop spinning


def interleaved_times(fns: dict[str, Callable], a: dict, repeats: int) -> dict[str, list[float]]:
    """Each implementation's call times, `repeats` rounds with one call of each per round: the
    machine's load changes over seconds here (+-30% and more), and timing one implementation's
    calls after another's would put that change into their ratio. Before each call the suite
    waits SETTLE_S: OpenBLAS's and OpenMP's threads spin for a while after a call returns, and
    kernelc's attention right after a NumPy call ran 33% slower (47 against 35 ms; after 0.2 s
    of sleep, 33 ms)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            time.sleep(SETTLE_S)
            t = time.perf_counter()
            fn(**a)
            times[name].append(time.perf_counter() - t)
    return times


def median_time(fn: Callable, a: dict, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(**a)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def pairwise(args: argparse.Namespace, console: Console) -> list[dict]:
    impls: dict[str, Callable[[str], Callable | None]] = {
        "kernelc-llvm": lambda p: (lambda k: (lambda **a: k(**a, backend="llvm")))(kc.kernel(PROBLEMS[p][0])),
        "kernelc-llvm tol=1e-5": lambda p: (lambda k: (lambda **a: k(**a, backend="llvm")))(
            kc.kernel(PROBLEMS[p][0], tolerance=1e-5)),
        "hand C (AVX2)": anchor_impl(args.anchor),
        "numpy chunked": numpy_impl,
        "numba": numba_impl,
        "pykeops": pykeops_impl,
    }
    impls = {name: f for name, f in impls.items() if name not in args.skip}
    table = Table(title=f"pairs/s (GFLOP/s), f32, median of {args.repeats}, {os.cpu_count()} cores")
    for col in ["problem", "N x M", *impls]:
        table.add_column(col, justify="right")
    shapes = [(n, n) for n in args.sizes] + [(1_000_000, 10_000)]
    results, last = [], {}
    for problem in args.problems:
        ops = cost.ops_per_pair(kc.kernel(PROBLEMS[problem][0]).ir, dims(problem))
        for n, m in shapes:
            if (n, m) == (1_000_000, 10_000) and "argkmin" not in problem:
                continue
            a = data(problem, n, m, np.random.default_rng(0))
            cells, reference, ready = {}, None, {}
            for name, factory in impls.items():
                previous = last.get((name, problem))
                if previous is not None and previous * n * m * (args.repeats + 1) > args.budget:
                    cells[name] = "skipped"
                    continue
                fn = factory(problem)
                if fn is None:
                    cells[name] = "n/a"
                    continue
                out = fn(**a)  # warm-up: compiles
                if reference is None:
                    reference = out
                elif not agrees(problem, out, reference, a):
                    cells[name] = "MISMATCH"
                    continue
                ready[name] = fn
            for name, times in interleaved_times(ready, a, args.repeats).items():
                secs = statistics.median(times)
                last[(name, problem)] = secs / (n * m)
                rate = n * m / secs
                results.append(dict(problem=problem, N=n, M=m, impl=name, seconds=secs, pairs_per_s=rate,
                                    gflops=rate * ops / 1e9, times=times))
                cells[name] = f"{rate:.3g} ({rate * ops / 1e9:.0f})"
            row = [cells[name] for name in impls]
            table.add_row(problem, f"{n:.0e} x {m:.0e}", *row)
            console.print(f"done {problem} {n} x {m}")
    console.print(table)
    return results


# --- memory-bound row operators -------------------------------------------------------------------------

def row_operators(args: argparse.Namespace, console: Console) -> list[dict]:
    rows, cols = args.matrix
    rng = np.random.default_rng(0)
    a = rng.standard_normal((rows, cols), np.float32)
    target = rng.integers(0, cols, rows)
    w = rng.random(cols, np.float32)
    module = kc.load(os.path.join(os.path.dirname(__file__), "..", "examples", "rownorm.kc"))
    nbytes = a.nbytes
    dst = np.empty_like(a)
    copy = median_time(lambda: np.copyto(dst, a), {}, args.repeats)

    def np_softmax():
        m = a.max(1, keepdims=True)
        e = np.exp(a - m)
        return e / e.sum(1, keepdims=True)

    def np_rmsnorm():
        return a * (1 / np.sqrt((a * a).mean(1, keepdims=True) + np.float32(1e-6))) * w

    def np_xent():
        m = a.max(1, keepdims=True)
        return (m[:, 0] + np.log(np.exp(a - m).sum(1))) - a[np.arange(rows), target]

    cases = {  # name -> (kernelc call, NumPy call, bytes moved: read the matrix, write the output)
        "row softmax": (lambda: module.row_softmax(a, backend="llvm"), np_softmax, 2 * nbytes),
        "RMSNorm": (lambda: module.rmsnorm(a, w, np.float32(1e-6), backend="llvm"), np_rmsnorm, 2 * nbytes),
        "cross-entropy": (lambda: module.cross_entropy(a, target, backend="llvm"), np_xent, nbytes),
    }
    table = Table(title=f"row operators on a {rows} x {cols} f32 matrix: GB/s (memcpy-class copy: "
                        f"{2 * nbytes / copy / 1e9:.1f} GB/s)")
    for col in ("operator", "kernelc-llvm GB/s", "NumPy GB/s", "kernelc / NumPy", "kernelc / copy", "agree"):
        table.add_column(col, justify="right")
    results = []
    for name, (ours, theirs, moved) in cases.items():
        got, want = np.asarray(ours()), np.asarray(theirs())
        ok = np.allclose(got, want, rtol=1e-4, atol=1e-5)
        times = interleaved_times({"ours": lambda: ours(), "numpy": lambda: theirs()}, {}, args.repeats)
        t_ours, t_np = (statistics.median(times[name]) for name in ("ours", "numpy"))
        results.append(dict(operator=name, kernelc_gbs=moved / t_ours / 1e9, numpy_gbs=moved / t_np / 1e9,
                            copy_gbs=2 * nbytes / copy / 1e9))
        table.add_row(name, f"{moved / t_ours / 1e9:.1f}", f"{moved / t_np / 1e9:.1f}", f"{t_np / t_ours:.2f}x",
                      f"{(moved / t_ours) / (2 * nbytes / copy):.0%}", "yes" if ok else "NO")
    console.print(table)
    return results


# --- how cost grows ---------------------------------------------------------------------------------------

def scaling(args: argparse.Namespace, console: Console) -> list[dict]:
    """kernelc's Gaussian sum against D (at N = M = 1e4) and against N = M (at D = 3)."""
    src = PROBLEMS["gauss D=3"][0]
    k = kc.kernel(src)
    rng = np.random.default_rng(0)
    table = Table("D", "N = M", "pairs/s", "ns per pair", "ns per pair and dimension",
                  title="kernelc-llvm Gaussian sum: cost against D and against N x M")
    found = []
    shapes = [(d, 10_000) for d in (1, 2, 3, 4, 8, 16, 32, 64, 128)] + [(3, n) for n in (1_000, 3_000, 30_000)]
    for d, n in shapes:
        a = {"x": rng.random((n, d), np.float32), "y": rng.random((n, d), np.float32),
             "b": rng.random(n, np.float32), "s": np.float32(max(0.5, d ** 0.5 / 3))}
        k(**a, backend="llvm")
        secs = median_time(lambda **kw: k(**kw, backend="llvm"), a, args.repeats)
        per_pair = secs / (n * n) * 1e9
        found.append(dict(D=d, N=n, pairs_per_s=n * n / secs, ns_per_pair=per_pair))
        table.add_row(str(d), f"{n:.0e}", f"{n * n / secs:.3g}", f"{per_pair:.3f}", f"{per_pair / d:.3f}")
    console.print(table)
    return found


# --- where the time goes -----------------------------------------------------------------------------------

def instructions(console: Console) -> dict[str, dict]:
    """Instructions per pair in the hottest loop of the generated code (the block with the most
    vector instructions; pairs per iteration from its induction step over the y arrays, times
    the rows of a register block, which that loop computes together). Kernels that a pattern
    path runs (the nearest-neighbour filter, which skips most pairs) are named, not counted."""
    import llvmlite.binding as llvm

    from kernelc.backends.llvm.jit import target_machine, vector_widths
    from kernelc.explain import random_arguments

    found = {}
    table = Table(title="hot loop of the generated code (llvm, default schedule)")
    for col in ("problem", "instructions", "vector", "rows", "per pair", "kernelc ops/pair"):
        table.add_column(col, justify="right")
    for problem, (src, d) in PROBLEMS.items():
        k = kc.kernel(src, autotune="off")
        _, schedule, executable = k.compiled(backend="llvm", **random_arguments(k, 512, 512, dims(problem)))
        patterns = [stage.pattern for stage, _ in executable.stages if stage.pattern is not None]
        if patterns:  # a hand-scheduled path (AMX attention, the nearest-neighbour filter) runs the calls
            found[problem] = dict(pattern=patterns[0].description)
            table.add_row(problem, "pattern path", "", "", "n/a", str(cost.ops_per_pair(k.optimized, dims(problem))))
            continue
        rows = int(schedule.get("rows") or 1)
        modules = [t for t in re.split(r"(?=; ModuleID)", executable.code) if t.strip()]  # one per stage
        tm = target_machine(vector_widths()[0])  # as the default schedule compiles it
        asm = "\n".join(tm.emit_assembly(llvm.parse_assembly(t)) for t in modules)
        blocks = re.split(r"\n(?=\.LBB\d+_\d+:)", asm)
        hot = max(blocks, key=lambda b: len(re.findall(r"\b[xyz]mm", b)))
        body = [ln.strip() for ln in hot.splitlines()[1:] if ln.strip() and not ln.strip().startswith((".", "#"))]
        vector = sum(1 for ln in body if re.search(r"\b[yz]mm", ln))
        width = 16 if any("zmm" in ln for ln in body) else 8
        steps = [int(s) for s in re.findall(r"add[q]?\s+\$(\d+),", hot)]
        pairs = (max(steps) if steps and max(steps) < 1024 else width) * rows
        ops = cost.ops_per_pair(k.optimized, dims(problem))
        found[problem] = dict(instructions=len(body), vector=vector, rows=rows, pairs_per_iteration=pairs,
                              per_pair=len(body) / pairs, ops_per_pair=ops)
        table.add_row(problem, str(len(body)), str(vector), str(rows), f"{len(body) / pairs:.2f}", str(ops))
    console.print(table)
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    ap.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000])
    ap.add_argument("--matrix", nargs=2, type=int, default=[4096, 16384], metavar=("ROWS", "COLS"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget", type=float, default=60.0, help="seconds an implementation may take at one size")
    ap.add_argument("--skip", nargs="*", default=[], help="implementations to leave out")
    ap.add_argument("--anchor", help="the cpu-anchor folder, e.g. ../shared/cpu-anchor")
    ap.add_argument("--parts", nargs="+", default=["pairwise", "rows", "scaling", "instructions"],
                    choices=["pairwise", "rows", "scaling", "instructions"])
    ap.add_argument("--json")
    ap.add_argument("--plot")
    args = ap.parse_args()
    console = Console(width=220)
    out: dict = {}
    if "pairwise" in args.parts:
        out["pairwise"] = pairwise(args, console)
    if "rows" in args.parts:
        out["rows"] = row_operators(args, console)
    if "scaling" in args.parts:
        out["scaling"] = scaling(args, console)
    if "instructions" in args.parts:
        out["instructions"] = instructions(console)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    if args.plot and out.get("pairwise"):
        plot(out["pairwise"], args.plot)


def plot(results: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({(r["problem"], r["N"], r["M"]) for r in results})
    impls = sorted({r["impl"] for r in results})
    fig, ax = plt.subplots(figsize=(max(8, len(keys) * 0.9), 4.5))
    width = 0.8 / len(impls)
    for k, impl in enumerate(impls):
        vals = [next((r["pairs_per_s"] for r in results if (r["problem"], r["N"], r["M"]) == key
                      and r["impl"] == impl), 0) for key in keys]
        ax.bar(np.arange(len(keys)) + k * width, vals, width, label=impl)
    ax.set_xticks(np.arange(len(keys)) + 0.4, [f"{p}\n{n:.0e}x{m:.0e}" for p, n, m in keys], fontsize=6)
    ax.set_yscale("log")
    ax.set_ylabel("pairs / s")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
