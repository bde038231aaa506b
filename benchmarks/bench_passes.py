"""The optimizer's effect on the llvm backend: the same kernels with passes off, on (default,
bit-identical results) and on with a tolerance (variants chosen by measured error), side by
side in one run on the same data.

    python benchmarks/bench_passes.py [--n 20000] [--repeats 5] [--json out.json] [--plot out.png]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

import kernelc as kc

PROBLEMS = {
    "Gaussian D=3": ("kernel g(x: f32[i, D], y: f32[j, D], b: f32[j], s: f32) -> f32[i] "
                     "{ return sum[j](exp(-sqdist(x, y) / (2 * s * s)) * b) }", 3),
    "Matern-5/2, vector lengthscales D=3": (
        "kernel mv(x: f32[i, D], y: f32[j, D], ell: f32[D], b: f32[j]) -> f32[i] "
        "{ r = sqrt(sqdist(x / ell, y / ell)); "
        "return sum[j]((1 + sqrt(5) * r + 5 * r * r / 3) * exp(-sqrt(5) * r) * b) }", 3),
    "Sinkhorn logsumexp D=3": ("kernel sk(x: f32[i, D], y: f32[j, D], g: f32[j], logb: f32[j], eps: f32) -> f32[i] "
                               "{ return -eps * logsumexp[j]((g - sqdist(x, y) / 2) / eps + logb) }", 3),
    "Nadaraya-Watson D=3": ("kernel nw(x: f32[i, D], y: f32[j, D], t: f32[j], h: f32) -> f32[i] "
                            "{ w = exp(-sqdist(x, y) / (h * h)); return sum[j](w * t) / sum[j](w) }", 3),
}
MODES = {"passes off": dict(optimize=False), "passes on": dict(), "on, tolerance=1e-5": dict(tolerance=1e-5)}


def arguments(k: kc.Kernel, n: int, d: int, rng: np.random.Generator) -> dict:
    args = {}
    for p in k.ir.params:
        if p.type.index == ("i",):
            args[p.name] = rng.random((n, d) if p.type.dim is not None else n, np.float32)
        elif p.type.index == ("j",):
            args[p.name] = rng.random((n, d) if p.type.dim is not None else n, np.float32)
        elif p.type.dim is not None:
            args[p.name] = (0.5 + rng.random(d)).astype(np.float32)
        else:
            args[p.name] = np.float32(0.5)
    return args


def best_time(fn, repeats: int) -> tuple[float, float]:
    fn()  # compile, choose variants
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000, help="N = M")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json")
    parser.add_argument("--plot")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    table = Table("problem", *(f"{m} (pairs/s)" for m in MODES), "speed-up on", "speed-up tolerance",
                  "max rel. diff on/off", title=f"llvm backend, N = M = {args.n}, f32, best of {args.repeats}")
    results = {}
    for name, (src, d) in PROBLEMS.items():
        kernels = {mode: kc.kernel(src, **opts) for mode, opts in MODES.items()}
        data = arguments(kernels["passes on"], args.n, d, rng)
        outs, rates = {}, {}
        for mode, k in kernels.items():
            outs[mode] = k(**data, backend="llvm")
            best, median = best_time(lambda: k(**data, backend="llvm"), args.repeats)
            rates[mode] = args.n * args.n / best
        off, on = outs["passes off"].astype(np.float64), outs["passes on"].astype(np.float64)
        diff = float(np.abs(on - off).max() / np.abs(off).max())
        chosen = [r.name for r in kernels["on, tolerance=1e-5"].variant_report if r.chosen]
        results[name] = dict(rates=rates, diff_on_off=diff, tolerance_variant=chosen)
        table.add_row(name, *(f"{rates[m]:.3g}" for m in MODES), f"{rates['passes on'] / rates['passes off']:.2f}x",
                      f"{rates['on, tolerance=1e-5'] / rates['passes off']:.2f}x ({', '.join(chosen)})", f"{diff:.1e}")
    Console(width=180).print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.plot:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(9, 4))
        names = list(results)
        for k, mode in enumerate(MODES):
            ax.bar(np.arange(len(names)) + 0.27 * (k - 1), [results[n]["rates"][mode] for n in names], 0.27, label=mode)
        ax.set_xticks(np.arange(len(names)), names, fontsize=7)
        ax.set_ylabel("pairs / s")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)


if __name__ == "__main__":
    main()
