"""The autotuner's gain: the default schedule against the tuned one, side by side in one run,
with the tuning time, on the llvm backend.

    python benchmarks/bench_autotune.py [--sizes 1000 10000 100000] [--budget 3] [--json out.json]

Calls above 2^27 pairs are timed on their first rows (about 2^27 pairs: the rate per pair is
what matters; the tuner times the same way).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

import kernelc as kc

sys.path.insert(0, str(Path(__file__).parent))
import suite  # noqa: E402  the problems and their data

PROBLEMS = {name: suite.PROBLEMS[name] for name in ("gauss D=3", "gauss D=64", "argkmin K=10 D=3", "logsumexp D=3")}
# The same kernels under a tolerance: precision variants join the candidates.
TOLERANT = {"gauss D=3, tolerance=1e-5": "gauss D=3", "logsumexp D=3, tolerance=1e-5": "logsumexp D=3"}
TIMED_PAIRS = 1 << 27


def rates(kernels: list[kc.Kernel], args: dict, n: int, m: int, repeats: int = 7) -> list[float]:
    """Pairs per second of each kernel, the median of `repeats` calls taken in turn (so that the
    machine's drift hits all alike)."""
    rows = min(n, max(256, TIMED_PAIRS // m))
    part = {key: (v[:rows] if key == "x" else v) for key, v in args.items()}
    times: list[list[float]] = [[] for _ in kernels]
    for k in kernels:
        k(**part, backend="llvm")
    for _ in range(repeats):
        for k, record in zip(kernels, times):
            t = time.perf_counter()
            k(**part, backend="llvm")
            record.append(time.perf_counter() - t)
    return [rows * m / float(np.median(t)) for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--budget", type=float, default=3.0)
    parser.add_argument("--json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    table = Table("problem", "N = M", "default (pairs/s)", "tuned (pairs/s)", "speed-up", "tuning time", "chosen",
                  title="llvm backend, f32, default schedule vs autotuned (medians of 7 interleaved calls), one run")
    results = []
    problems = [(name, name, None) for name in PROBLEMS]
    problems += [(name, base, 1e-5) for name, base in TOLERANT.items()]
    for name, base, tolerance in problems:
        src = PROBLEMS[base][0]
        for n in args.sizes:
            data = suite.data(base, n, n, rng)
            default = kc.kernel(src, autotune="off")
            tuned = kc.kernel(src, autotune="cached", tolerance=tolerance)
            t = time.perf_counter()
            result = tuned.tune(backend="llvm", budget=args.budget, **data)
            tuning = time.perf_counter() - t
            base, best = rates([default, tuned], data, n, n)
            chosen = " ".join(f"{k}={v}" for k, v in result.knobs.items())
            results.append(dict(problem=name, n=n, default=base, tuned=best, tuning_s=tuning, chosen=chosen,
                                candidates=len(result.rows)))
            table.add_row(name, f"{n:.0e}", f"{base:.3g}", f"{best:.3g}", f"{best / base:.2f}x", f"{tuning:.1f} s",
                          f"{result.variant}: {chosen}")
    Console(width=170).print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
