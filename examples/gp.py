"""Gaussian-process regression: solve (K + noise I) alpha = y by conjugate gradients,
with the Matern-5/2 covariance applied by kernelc (K is never formed), then predict."""

import sys
from pathlib import Path

import numpy as np

import kernelc as kc

MATERN = kc.load(Path(__file__).with_name("matern.kc")).matern52


def conjugate_gradients(matvec, rhs: np.ndarray, tol: float = 1e-5, max_iter: int = 500) -> tuple[np.ndarray, int]:
    x = np.zeros_like(rhs)
    r = rhs - matvec(x)
    p = r.copy()
    rr = r @ r
    for it in range(1, max_iter + 1):
        ap = matvec(p)
        alpha = rr / (p @ ap)
        x += alpha * p
        r -= alpha * ap
        rr_new = r @ r
        if np.sqrt(rr_new) < tol * np.linalg.norm(rhs):
            return x, it
        p = r + rr_new / rr * p
        rr = rr_new
    return x, max_iter


def main(n: int = 4_000, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, size=(n, 2))
    f = np.sin(x[:, 0]) * np.cos(x[:, 1])
    y = f + 0.1 * rng.normal(size=n)
    ell, sigma2, noise = 0.8, 1.0, 0.05
    alpha, iters = conjugate_gradients(lambda v: MATERN(x, x, v, ell, sigma2) + noise * v, y)
    test = rng.uniform(-3, 3, size=(1_000, 2))
    mean = MATERN(test, x, alpha, ell, sigma2)
    rmse = float(np.sqrt(np.mean((mean - np.sin(test[:, 0]) * np.cos(test[:, 1])) ** 2)))
    print(f"GP on {n} points: CG converged in {iters} iterations, test RMSE {rmse:.4f}")
    return rmse


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
