"""Scale-out on Dask: a Gaussian sum over N x N points on a distributed.LocalCluster of 1 and
of 2 worker processes (one kernelc thread each), against the same kernel called directly on
in-memory NumPy arrays (one thread, and every core), on the same data, in one run.

    python benchmarks/bench_dask.py [--n 100000] [--chunk 12500] [--repeats 3] [--json dask.json]

A time is the median of --repeats computations after a warm-up (which compiles the kernel on the
workers); the Dask inputs are persisted in worker memory first, so the times are the kernel's
and Dask's, not the transfer of inputs. Results are checked against the direct call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import dask.array as da
import numpy as np
from distributed import Client, LocalCluster
from rich.console import Console
from rich.table import Table

import kernelc as kc

GAUSS = "kernel g(x: f32[i, D], y: f32[j, D], b: f32[j], s: f32) -> f32[i] { return sum[j](exp(-sqdist(x, y) / (2 * s * s)) * b) }"


def median_time(fn, repeats: int) -> tuple[float, object]:
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=12_500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = args.n
    x, y, b = rng.random((n, 3), np.float32), rng.random((n, 3), np.float32), rng.random(n, np.float32)
    kernel = kc.kernel(GAUSS)
    rows = []
    for threads in (1, os.cpu_count() or 1):
        os.environ["KERNELC_NUM_THREADS"] = str(threads)
        seconds, want = median_time(lambda: kernel(x, y, b, 0.5), args.repeats)
        rows.append({"how": f"direct call, NumPy arrays, {threads} thread(s)", "seconds": seconds})
    os.environ.pop("KERNELC_NUM_THREADS")
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, env={"KERNELC_NUM_THREADS": "1"},
                          dashboard_address=None, silence_logs=40) as cluster, Client(cluster):
            dx, dy, db = (da.from_array(a, chunks=(args.chunk,) + a.shape[1:]).persist() for a in (x, y, b))
            seconds, got = median_time(lambda: kernel(dx, dy, db, 0.5).compute(), args.repeats)
            error = float(np.abs(got - want).max() / np.abs(want).max())
            tasks = len(kernel(dx, dy, db, 0.5).__dask_graph__())
            rows.append({"how": f"Dask, {workers} worker(s) x 1 thread, {tasks} tasks", "seconds": seconds,
                         "max_rel_diff_vs_direct": error})
    table = Table(title=f"Gaussian sum D=3, f32, N = M = {n:.0e}, chunks of {args.chunk} ({os.cpu_count()} cores)")
    for column in ("how", "seconds", "pairs/s", "vs 1 worker", "max rel. diff vs direct"):
        table.add_column(column)
    one = next(r["seconds"] for r in rows if r["how"].startswith("Dask, 1"))
    for r in rows:
        table.add_row(r["how"], f"{r['seconds']:.2f}", f"{n * n / r['seconds']:.3g}", f"{one / r['seconds']:.2f}x",
                      f"{r['max_rel_diff_vs_direct']:.1e}" if "max_rel_diff_vs_direct" in r else "-")
    Console().print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n": n, "chunk": args.chunk, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
