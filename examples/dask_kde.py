"""Kernel density estimation over 1e7 x 1e7 points on a Dask cluster.

    python examples/dask_kde.py [--n 10000000] [--workers 2] [--chunk 1000000]

The samples y and the query points x are Dask arrays generated chunk by chunk on the workers
(they never exist in one process); the Gaussian KDE at every query point is one kernelc kernel
called on them: each (query block, sample block) pair is a task that runs the compiled kernel on
a worker, the blocks' partial sums are merged along the samples and finished per query block.
At 1e7 x 1e7 that is 1e14 pairs: hours on a laptop, minutes on a few dozen machines; pass a
smaller --n to try it (1e5 takes seconds).

The kernel runs under tolerance=1e-4: a density estimate needs no more, and it lets kernelc use
its approximate exp, which flushes results below 2**-126 to zero. With a small bandwidth many
terms fall in the subnormal range, and the exact kernel's gradual underflow costs a microcode
assist per term on many CPUs (16x slower when 1.6% of the terms are subnormal).
"""

from __future__ import annotations

import argparse
import math
import time

import dask.array as da
from distributed import Client, LocalCluster, progress

import kernelc as kc

KDE = """
kernel kde(x: f32[i, D], y: f32[j, D], h: f32, scale: f32) -> f32[i] {
    return scale * sum[j](exp(-sqdist(x, y) / (2 * h * h)))
}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=float, default=1e7, help="number of samples and of query points")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk", type=float, default=1e6, help="rows per block")
    parser.add_argument("--bandwidth", type=float, default=0.05)
    args = parser.parse_args()
    n, chunk, d, h = int(args.n), int(min(args.chunk, args.n)), 2, args.bandwidth
    kde = kc.kernel(KDE, tolerance=1e-4)
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, env={"KERNELC_NUM_THREADS": "1"}) as cluster, \
            Client(cluster) as client:
        print(f"{client}; dashboard at {client.dashboard_link}")
        rng = da.random.default_rng(0)
        samples = rng.standard_normal((n, d), chunks=(chunk, d), dtype="f4") * 0.5  # a 2-D Gaussian blob
        queries = (rng.random((n, d), chunks=(chunk, d), dtype="f4") * 4 - 2).astype("f4")
        norm = 1.0 / (n * (2 * math.pi * h * h) ** (d / 2))
        density = kde(queries, samples, h, norm)  # a Dask array: nothing has run yet
        start = time.perf_counter()
        density = density.persist()
        progress(density)
        values = density.compute()
        seconds = time.perf_counter() - start
        print(f"\n{n:.0e} x {n:.0e} pairs in {seconds:.1f} s on {args.workers} workers "
              f"({n * n / seconds:.3g} pairs/s); density at the first queries: {values[:4]}")


if __name__ == "__main__":
    main()
