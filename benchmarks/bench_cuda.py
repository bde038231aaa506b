"""The GPU benchmark: kernelc's cuda backend against pykeops (GPU, through PyTorch) and a CuPy
GEMM + exp baseline (distances as |x|^2 + |y|^2 - 2 x.y by cuBLAS, in row chunks of at most 1 GiB),
side by side in one run on the same CuPy data, for N = M in --sizes.

    python benchmarks/bench_cuda.py [--sizes 100000 1000000] [--json cuda.json] [--budget 20]

Every kernelc layout of the cuda backend's tuning space is timed at the smallest size; the best
(`tuned`) and the default layout are timed at every size. Results are checked before timing:
against the NumPy f64 backend on 256 sampled rows (kernelc), and against kernelc (the others;
values within 2e-4 relative, indices agreeing on 99% of places). A time is the median of
--repeats calls after a warm-up, synchronized with the device; an implementation whose last
size took long enough that this one would pass --budget seconds is skipped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any, Callable

import numpy as np
from rich.console import Console
from rich.table import Table

import kernelc as kc
from kernelc.backends import runtime
from kernelc.backends.cuda import CANDIDATES, DEFAULT, backend as cuda
from kernelc.backends.cuda.source import schedule_of
from kernelc.ir.passes import cost

GAUSS = "kernel g(x: f32[i, D], y: f32[j, D], b: f32[j], s: f32) -> f32[i] { return sum[j](exp(-sqdist(x, y) / (2 * s * s)) * b) }"
PROBLEMS: dict[str, tuple[str, int]] = {  # name -> (kernel source, D)
    "gauss D=3": (GAUSS, 3),
    "gauss D=64": (GAUSS, 64),
    "logsumexp D=3": ("kernel l(x: f32[i, D], y: f32[j, D]) -> f32[i] { return logsumexp[j](-sqdist(x, y)) }", 3),
    "argkmin K=10 D=3": ("kernel k(x: f32[i, D], y: f32[j, D]) -> i64[i, 10] { return argkmin[j, 10](sqdist(x, y)) }",
                         3),
}


def cupy() -> Any:
    import cupy as cp

    return cp


def data(problem: str, n: int, m: int, seed: int = 0) -> dict[str, Any]:
    cp = cupy()
    rng = cp.random.default_rng(seed)
    d = PROBLEMS[problem][1]
    out = {"x": rng.random((n, d), dtype=cp.float32), "y": rng.random((m, d), dtype=cp.float32)}
    if "gauss" in problem:
        out["b"] = rng.random(m, dtype=cp.float32)
        out["s"] = np.float32(0.5 if d == 3 else 2.0)
    return out


def kernelc_impl(kernel: kc.Kernel, layout: Any) -> Callable:
    executables: dict[Any, Any] = {}

    def run(a: dict[str, Any]) -> Any:
        bound = runtime.bind(kernel.ir, (), a)
        key = bound.sizes
        if key not in executables:
            executables[key] = cuda.compile(kernel.optimized, schedule_of("cuda", bound.sizes, layout))
        call = runtime.allocate(kernel.ir, bound)
        executables[key].run(call)
        return call.outputs[0]

    return run


def tolerance_impl(source: str, tolerance: float) -> tuple[Callable, kc.Kernel]:
    """The normal call path of a kernel with a tolerance: the cheapest variant (fast math,
    approximate exp and division under --use_fast_math) whose measured error is within it."""
    kernel = kc.kernel(source, tolerance=tolerance)
    return (lambda a: kernel(**a, backend="cuda")), kernel


def gemm_impl(problem: str) -> Callable:
    """Row chunks: squared distances by cuBLAS, then exp / logsumexp / top-K with CuPy."""
    cp = cupy()

    def run(a: dict[str, Any]) -> Any:
        x, y = a["x"], a["y"]
        n, m = x.shape[0], y.shape[0]
        yy = (y * y).sum(axis=1)
        rows = max(1, (1 << 28) // max(m, 1))
        out = cp.empty((n, 10), cp.int64) if "argkmin" in problem else cp.empty(n, cp.float32)
        for start in range(0, n, rows):
            xc = x[start:start + rows]
            d2 = (xc * xc).sum(axis=1)[:, None] + yy[None, :] - 2 * (xc @ y.T)
            cp.maximum(d2, 0, out=d2)
            if "gauss" in problem:
                cp.exp(d2 * np.float32(-1 / (2 * float(a["s"]) ** 2)), out=d2)
                out[start:start + rows] = d2 @ a["b"]
            elif "logsumexp" in problem:
                mx = (-d2).max(axis=1)
                out[start:start + rows] = mx + cp.log(cp.exp(-d2 - mx[:, None]).sum(axis=1))
            else:
                part = cp.argpartition(d2, 10, axis=1)[:, :10]
                order = cp.argsort(cp.take_along_axis(d2, part, axis=1), axis=1)
                out[start:start + rows] = cp.take_along_axis(part, order, axis=1)
        return out

    return run


def pykeops_impl(problem: str) -> Callable | None:
    try:
        import torch
        from pykeops.torch import LazyTensor
    except Exception:  # not installed, or it cannot build here
        return None

    def run(a: dict[str, Any]) -> Any:
        x, y = torch.from_dlpack(a["x"]), torch.from_dlpack(a["y"])
        d2 = ((LazyTensor(x[:, None, :]) - LazyTensor(y[None, :, :])) ** 2).sum(-1)
        if "gauss" in problem:
            b = torch.from_dlpack(a["b"])[:, None]
            k = (-d2 / (2 * float(a["s"]) ** 2)).exp()
            result = (k * LazyTensor(b[None, :, :])).sum(dim=1)[:, 0]
        elif "logsumexp" in problem:
            result = (-d2).logsumexp(dim=1)[:, 0]
        else:
            result = d2.argKmin(K=10, dim=1)
        return cupy().from_dlpack(result.contiguous())

    return run


def agrees(problem: str, got: Any, want: Any) -> bool:
    got, want = cupy().asnumpy(got), cupy().asnumpy(want)
    if got.shape != want.shape:
        return False
    if "argkmin" in problem:
        return float((got == want).mean()) >= 0.99
    return bool(np.abs(got - want).max() <= 2e-4 * max(np.abs(want).max(), 1e-30))


def checked_against_numpy(kernel: kc.Kernel, a: dict[str, Any], got: Any) -> bool:
    cp = cupy()
    rows = np.linspace(0, a["x"].shape[0] - 1, 256).astype(np.int64)
    host = {k: (cp.asnumpy(v[rows]) if k == "x" else cp.asnumpy(v)) if isinstance(v, cp.ndarray) else v
            for k, v in a.items()}
    want = kernel(**host, backend="numpy")
    return agrees("argkmin" if want.dtype == np.int64 else "", cp.asnumpy(got)[rows], want)


def timed(fn: Callable, a: dict[str, Any], repeats: int) -> float:
    cp = cupy()
    times = []
    for _ in range(repeats):
        cp.cuda.Device().synchronize()
        start = time.perf_counter()
        fn(a)
        cp.cuda.Device().synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def ratio(a: Any, b: Any) -> str:
    return f"{a / b:.2f}x" if isinstance(a, float) and isinstance(b, float) else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds one call may take")
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS))
    parser.add_argument("--json")
    args = parser.parse_args()
    console = Console()
    cp = cupy()
    device = cp.cuda.runtime.getDeviceProperties(0)["name"].decode()
    console.print(f"device: {device}, CuPy {cp.__version__}, target {cuda.target()}")
    rows: list[dict] = []
    for problem in args.problems:
        source, d = PROBLEMS[problem]
        kernel = kc.kernel(source)
        ops = cost.ops_per_pair(kernel.optimized, {"D": d})
        small = data(problem, args.sizes[0], args.sizes[0])
        layouts = {}
        for layout in CANDIDATES:
            run = kernelc_impl(kernel, layout)
            run(small)
            layouts[layout] = timed(run, small, 2)
        best = min(layouts, key=layouts.get)
        console.print(f"{problem}: layouts at {args.sizes[0]:.0e}: " +
                      ", ".join(f"{lay.block}x{lay.rows} t{lay.tile}{'s' if lay.stage else ''} "
                                f"{t * 1e3:.2f} ms" for lay, t in layouts.items()))
        tolerant, tolerant_kernel = tolerance_impl(source, 1e-5)
        impls: dict[str, Callable | None] = {"kernelc": kernelc_impl(kernel, DEFAULT),
                                             "kernelc tuned": kernelc_impl(kernel, best),
                                             "kernelc tol=1e-5": tolerant,
                                             "pykeops": pykeops_impl(problem), "cupy gemm": gemm_impl(problem)}
        last: dict[str, float] = {}
        last_size = args.sizes[0]
        for size in args.sizes:
            a = data(problem, size, size)
            reference = impls["kernelc"](a)
            ok_numpy = checked_against_numpy(kernel, a, reference)
            row = {"problem": problem, "n": size, "m": size, "ops_per_pair": ops, "kernelc_matches_numpy": ok_numpy,
                   "tuned_layout": str(best)}
            for name, fn in impls.items():
                previous = last.get(name)
                if fn is None or (previous is not None and previous * (size / last_size) ** 2 > args.budget):
                    row[name] = None
                    continue
                try:
                    got = fn(a)
                    if not agrees(problem, got, reference):
                        row[name] = "mismatch"
                        continue
                    seconds = timed(fn, a, args.repeats if size * size <= 1e11 else 1)
                except Exception as err:  # report and go on: one failing baseline must not stop the run
                    row[name] = f"error: {type(err).__name__}: {str(err)[:80]}"
                    continue
                last[name] = seconds
                row[name] = size * size / seconds
            last_size = size
            row["tolerance_variant"] = next((r.name for r in tolerant_kernel.variant_report if r.chosen), None)
            rows.append(row)
            console.print(row)
    table = Table(title=f"pairs/s on {device} (f32; GFLOP/s = pairs/s x kernelc ops/pair)")
    for column in ["problem", "N = M", "kernelc", "kernelc tuned", "kernelc tol=1e-5", "pykeops", "cupy gemm",
                   "GFLOP/s (tuned)", "tuned / pykeops", "tol / pykeops", "tuned / gemm"]:
        table.add_column(column)
    for row in rows:
        tuned = row["kernelc tuned"]
        table.add_row(row["problem"], f"{row['n']:.0e}", fmt(row["kernelc"]), fmt(tuned), fmt(row["kernelc tol=1e-5"]),
                      fmt(row["pykeops"]), fmt(row["cupy gemm"]),
                      fmt(tuned * row["ops_per_pair"] / 1e9) if isinstance(tuned, float) else "-",
                      ratio(tuned, row["pykeops"]), ratio(row["kernelc tol=1e-5"], row["pykeops"]),
                      ratio(tuned, row["cupy gemm"]))
    console.print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": device, "rows": rows}, f, indent=1, default=str)


if __name__ == "__main__":
    main()
