"""Entropic optimal transport between two point clouds with log-domain Sinkhorn."""

import sys
from pathlib import Path

import numpy as np

import kernelc as kc

OT = kc.load(Path(__file__).with_name("sinkhorn.kc"))


def sinkhorn(x: np.ndarray, y: np.ndarray, eps: float, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    loga = np.full(len(x), -np.log(len(x)))
    logb = np.full(len(y), -np.log(len(y)))
    f, g = np.zeros(len(x)), np.zeros(len(y))
    for _ in range(iterations):
        f = OT.update_f(x, y, g, logb, eps)
        g = OT.update_g(x, y, f, loga, eps)
    return f, g


def main(n: int = 5_000, iterations: int = 50, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = rng.normal(size=(n + n // 2, 3)) * 0.5 + 1.0
    f, g = sinkhorn(x, y, eps=0.1, iterations=iterations)
    cost = float(f.mean() + g.mean())
    print(f"entropic OT cost between {len(x)} and {len(y)} points after {iterations} iterations: {cost:.5f}")
    return cost


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
