"""Kernel density estimation of a 2-D Gaussian mixture, evaluated on a grid."""

import sys
from pathlib import Path

import numpy as np

import kernelc as kc

KDE = kc.load(Path(__file__).with_name("kde.kc")).kde


def sample_mixture(n: int, rng: np.random.Generator) -> np.ndarray:
    centers = np.array([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]])
    labels = rng.integers(0, len(centers), size=n)
    return (centers[labels] + rng.normal(scale=0.6, size=(n, 2))).astype(np.float32)


def main(n: int = 200_000, grid: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    samples = sample_mixture(n, rng)
    h = 1.06 * samples.std() * n ** (-1 / 5)  # Silverman's rule
    g = np.linspace(-5, 5, grid, dtype=np.float32)
    queries = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
    density = KDE(queries, samples, h=float(h))
    cell = (g[1] - g[0]) ** 2
    print(f"{n} samples, bandwidth {h:.4f}, {len(queries)} grid points")
    print(f"density integrates to {density.sum() * cell:.4f} over the grid; peak {density.max():.4f}")
    return density


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
