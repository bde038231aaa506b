"""CPU benchmark: kernelc's llvm backend against NumPy (chunked, GEMM trick), Numba
(parallel, fastmath) and pykeops, side by side in one run, on the same data.

    python benchmarks/bench_cpu.py                      # the table
    python benchmarks/bench_cpu.py --sizes 10000 --json out.json --plot out.png

Every implementation's result is checked against the first one (kernelc-llvm) before it is
timed; timings are the best of --repeats runs after one warm-up (which compiles).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Callable

import numpy as np
from rich.console import Console
from rich.table import Table

import kernelc as kc

SOURCES = {
    "gauss": "kernel gauss(x: f32[i, D], y: f32[j, D], b: f32[j], s: f32) -> f32[i] {"
             " return sum[j](exp(-sqdist(x, y) / (2 * s * s)) * b) }",
    "lse": "kernel lse(x: f32[i, D], y: f32[j, D]) -> f32[i] { return logsumexp[j](-sqdist(x, y)) }",
    "argmin": "kernel nn(x: f32[i, D], y: f32[j, D]) -> i64[i] { return argmin[j](sqdist(x, y)) }",
}
CHUNK = 2048


def numpy_chunked(problem: str) -> Callable:
    """The NumPy way that does not run out of memory: row chunks, f32 throughout, the squared
    distances as one GEMM on augmented operands ([x, |x|^2, 1] . [-2y, 1, |y|^2]), ops in place."""
    def run(x, y, b, s):
        n, d = x.shape
        xa = np.concatenate([x, (x * x).sum(1, keepdims=True), np.ones((n, 1), np.float32)], 1)
        ya = np.concatenate([-2 * y, np.ones((len(y), 1), np.float32), (y * y).sum(1, keepdims=True)], 1)
        ya_t = np.ascontiguousarray(ya.T)
        out = np.empty(n, np.int64 if problem == "argmin" else np.float32)
        rows = max(1, (8 << 20) // (4 * max(len(y), 1)))
        buf = np.empty((rows, len(y)), np.float32)
        for lo in range(0, n, rows):
            k = buf[: min(rows, n - lo)]
            np.matmul(xa[lo:lo + rows], ya_t, out=k)  # |x - y|^2
            if problem == "argmin":
                out[lo:lo + rows] = k.argmin(1)
                continue
            np.maximum(k, 0, out=k)
            np.multiply(k, np.float32(-1 / (2 * s * s)) if problem == "gauss" else np.float32(-1), out=k)
            if problem == "gauss":
                np.exp(k, out=k)
                out[lo:lo + rows] = k @ b
            else:
                m = k.max(1, keepdims=True)
                np.subtract(k, m, out=k)
                np.exp(k, out=k)
                out[lo:lo + rows] = m[:, 0] + np.log(k.sum(1))
        return out
    return run


def anchor_impls(folder: str | None) -> dict[str, Callable[[str], Callable | None]]:
    """The hand-written AVX2 C kernels and NumPy baseline of ../shared/cpu-anchor, when given:
    built into a temporary copy (the folder may be read-only) and run side by side."""
    if not folder:
        return {}
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

    def factory(impl: str) -> Callable[[str], Callable | None]:
        def make(problem: str) -> Callable | None:
            fn = mod.IMPLS.get(problem, {}).get(impl)
            if fn is None:
                return None
            return lambda x, y, b, s: np.asarray(fn(x, y, b[:, None], s)).reshape(len(x))
        return make

    return {"anchor-c-avx2": factory("c_avx2"), "anchor-numpy": factory("numpy")}


def numba_impl(problem: str) -> Callable | None:
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(fastmath=True, inline="always")
    def sqdist(x, y, i, j):
        d2 = np.float32(0)
        for k in range(x.shape[1]):
            t = x[i, k] - y[j, k]
            d2 += t * t
        return d2

    @numba.njit(parallel=True, fastmath=True)
    def gauss(x, y, b, s):
        out = np.empty(x.shape[0], np.float32)
        c = np.float32(-1 / (2 * s * s))
        for i in numba.prange(x.shape[0]):
            acc = np.float32(0)
            for j in range(y.shape[0]):
                d2 = sqdist(x, y, i, j)
                acc += np.exp(d2 * c) * b[j]
            out[i] = acc
        return out

    @numba.njit(parallel=True, fastmath=True)
    def lse(x, y, b, s):
        out = np.empty(x.shape[0], np.float32)
        for i in numba.prange(x.shape[0]):
            m = np.float32(-np.inf)
            t = np.float32(0)
            for j in range(y.shape[0]):
                d2 = sqdist(x, y, i, j)
                v = -d2
                if v > m:
                    t = t * np.exp(m - v) + 1
                    m = v
                else:
                    t += np.exp(v - m)
            out[i] = m + np.log(t)
        return out

    @numba.njit(parallel=True, fastmath=True)
    def argmin(x, y, b, s):
        out = np.empty(x.shape[0], np.int64)
        for i in numba.prange(x.shape[0]):
            best, arg = np.float32(np.inf), -1
            for j in range(y.shape[0]):
                d2 = sqdist(x, y, i, j)
                if d2 < best:
                    best, arg = d2, j
            out[i] = arg
        return out

    return {"gauss": gauss, "lse": lse, "argmin": argmin}[problem]


def pykeops_impl(problem: str) -> Callable | None:
    try:
        from pykeops.numpy import LazyTensor
    except Exception:
        return None

    def run(x, y, b, s):
        xi, yj = LazyTensor(x[:, None, :]), LazyTensor(y[None, :, :])
        d2 = ((xi - yj) ** 2).sum(-1)
        if problem == "gauss":
            return ((-d2 / (2 * s * s)).exp() * LazyTensor(b[None, :, None])).sum(1)[:, 0]
        if problem == "lse":
            return (-d2).logsumexp(1)[:, 0]
        return d2.argmin(1)[:, 0]
    return run


def kernelc_impl(problem: str, backend: str) -> Callable:
    k = kc.kernel(SOURCES[problem])

    def run(x, y, b, s):
        args = {"gauss": (x, y, b, s), "lse": (x, y), "argmin": (x, y)}[problem]
        return k(*args, backend=backend)
    return run


def check(problem: str, got: np.ndarray, want: np.ndarray, d2: Callable[[], np.ndarray]) -> str:
    if problem == "argmin":  # a different index is fine only at a near-tie
        dist = d2()
        rows = np.arange(len(got))
        ok = np.allclose(dist[rows, got], dist[rows, want], rtol=1e-4, atol=1e-6)
    else:
        ok = np.allclose(got, want, rtol=2e-4, atol=1e-5 * np.abs(want).max())
    return "ok" if ok else "MISMATCH"


def time_best(fn: Callable, args: tuple, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t)
    return best


def compile_times(console: Console) -> dict[str, float]:
    """Cold compile (first call of a new kernel, process-wide cache emptied) and call overhead."""
    rng = np.random.default_rng(1)
    x = rng.random((10, 3), np.float32)
    src = SOURCES["gauss"].replace("gauss", f"gauss_cold_{os.getpid()}")
    k = kc.kernel(src)
    t = time.perf_counter()
    k(x, x, x[:, 0], 0.5, backend="llvm")
    cold = time.perf_counter() - t
    overhead = time_best(lambda: k(x, x, x[:, 0], 0.5, backend="llvm"), (), 200)
    return {"cold_compile_s": cold, "call_overhead_s": overhead}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", nargs="+", default=["gauss", "lse", "argmin"], choices=list(SOURCES))
    ap.add_argument("--dims", nargs="+", type=int, default=[3, 64])
    ap.add_argument("--sizes", nargs="+", type=int, default=[10_000, 30_000, 100_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip", nargs="*", default=[], help="implementations to leave out")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--plot", help="write a plot (PNG) here; needs matplotlib")
    ap.add_argument("--anchor", help="the cpu-anchor folder (hand-written AVX2 C), e.g. ../shared/cpu-anchor")
    ap.add_argument("--budget", type=float, default=60.0,
                    help="skip an implementation at a size its previous rate says would take longer (s)")
    args = ap.parse_args()
    console = Console(width=200)
    impls = {
        "kernelc-llvm": lambda p: kernelc_impl(p, "llvm"),
        "numpy-chunked": numpy_chunked,
        "numba": numba_impl,
        "pykeops": pykeops_impl,
        **anchor_impls(args.anchor),
    }
    last_rate: dict[tuple[str, str, int], float] = {}
    results = []
    table = Table(title=f"pairs per second ({os.cpu_count()} cores), best of {args.repeats}")
    for col in ["problem", "D", "N=M"] + [n for n in impls if n not in args.skip] + ["check"]:
        table.add_column(col, justify="right")
    for problem in args.problems:
        for d in args.dims if problem == "gauss" else args.dims[:1]:
            for n in args.sizes:
                rng = np.random.default_rng(0)
                x, y = rng.random((n, d), np.float32), rng.random((n, d), np.float32)
                b, s = rng.random(n, np.float32), np.float32(0.5 if d == 3 else 2.0)
                row, reference, checks = [], None, []
                for name, factory in impls.items():
                    if name in args.skip:
                        continue
                    fn = factory(problem)
                    if fn is None:
                        row.append("n/a")
                        continue
                    rate_before = last_rate.get((name, problem, d))
                    if rate_before and n * n / rate_before * (args.repeats + 1) > args.budget:
                        row.append("skipped")
                        continue
                    out = np.asarray(fn(x, y, b, s))  # warm-up: compiles
                    if reference is None:
                        reference = out
                    else:
                        d2 = lambda: ((x[:, None, :].astype(np.float64) - y[None]) ** 2).sum(-1) if n <= 10_000 \
                            else np.zeros((0, 0))  # noqa: E731
                        checks.append(f"{name}:{check(problem, out, reference, d2) if n <= 10_000 or problem != 'argmin' else 'skipped'}")
                    secs = time_best(fn, (x, y, b, s), args.repeats)
                    rate = n * n / secs
                    last_rate[(name, problem, d)] = rate
                    results.append({"problem": problem, "D": d, "N": n, "impl": name, "seconds": secs,
                                    "pairs_per_s": rate})
                    row.append(f"{rate:.3g}")
                bad = [c for c in checks if not c.endswith((":ok", ":skipped"))]
                table.add_row(problem, str(d), str(n), *row, " ".join(bad) or "all agree")
                console.print(f"done {problem} D={d} N=M={n}")
    console.print(table)
    extra = compile_times(console)
    console.print(f"kernelc-llvm cold compile (parse, codegen, optimize, JIT, first call at N=M=10): "
                  f"{extra['cold_compile_s'] * 1e3:.0f} ms; call overhead at N=M=10: "
                  f"{extra['call_overhead_s'] * 1e6:.0f} us")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, **extra}, f, indent=1)
    if args.plot:
        _plot(results, args.plot)


def _plot(results: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({(r["problem"], r["D"]) for r in results})
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.5), squeeze=False)
    for ax, (problem, d) in zip(axes[0], keys):
        for impl in sorted({r["impl"] for r in results}):
            pts = [(r["N"], r["pairs_per_s"]) for r in results if (r["problem"], r["D"], r["impl"]) == (problem, d, impl)]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=impl)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{problem}, D={d}")
        ax.set_xlabel("N = M")
        ax.set_ylabel("pairs / s")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
