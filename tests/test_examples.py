"""Every example workload, checked against plain NumPy on small realistic data, and its script run."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import kernelc as kc

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name):
    return kc.load(EXAMPLES / f"{name}.kc")


def pairwise_sqdist(x, y):
    x, y = x.astype(np.float64), y.astype(np.float64)
    return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def test_gauss(rng):
    x, y = rng.random((50, 3), np.float32), rng.random((70, 3), np.float32)
    b = rng.random((70, 2), np.float32)
    want = np.exp(-pairwise_sqdist(x, y) / (2 * 0.3 ** 2)) @ b
    np.testing.assert_allclose(load("gauss").gauss(x, y, b, s=0.3), want, rtol=1e-5)


def test_kde(rng):
    x, y = rng.normal(size=(40, 2)).astype(np.float32), rng.normal(size=(300, 2)).astype(np.float32)
    h = 0.4
    want = np.exp(-pairwise_sqdist(x, y) / (2 * h * h)).mean(1) / (2 * np.pi * h * h)
    np.testing.assert_allclose(load("kde").kde(x, y, h), want, rtol=1e-5)


def test_knn(rng):
    x, y = rng.normal(size=(30, 8)).astype(np.float32), rng.normal(size=(200, 8)).astype(np.float32)
    got = load("knn").knn(x, y, K=5)
    d = pairwise_sqdist(x, y)
    np.testing.assert_array_equal(got, np.argsort(d, axis=1, kind="stable")[:, :5])


def test_sinkhorn(rng):
    ot = load("sinkhorn")
    x, y = rng.normal(size=(40, 2)), rng.normal(size=(60, 2)) + 1
    g, logb = rng.normal(size=60), np.full(60, -np.log(60))
    eps = 0.5
    c = pairwise_sqdist(x, y) / 2
    z = (g[None, :] - c) / eps + logb[None, :]
    m = z.max(1, keepdims=True)
    want_f = -eps * (m[:, 0] + np.log(np.exp(z - m).sum(1)))
    np.testing.assert_allclose(ot.update_f(x, y, g, logb, eps), want_f, rtol=1e-12)
    f, loga = rng.normal(size=40), np.full(40, -np.log(40))
    z = (f[:, None] - c) / eps + loga[:, None]
    m = z.max(0, keepdims=True)
    want_g = -eps * (m[0] + np.log(np.exp(z - m).sum(0)))
    np.testing.assert_allclose(ot.update_g(x, y, f, loga, eps), want_g, rtol=1e-12)


def test_causal_attention(rng):
    q, k, v = (rng.normal(size=(33, 16)).astype(np.float32) for _ in range(3))
    s = q.astype(np.float64) @ k.T.astype(np.float64) / 4.0
    s[np.triu_indices(33, 1)] = -np.inf
    p = np.exp(s - s.max(1, keepdims=True))
    want = (p / p.sum(1, keepdims=True)) @ v
    np.testing.assert_allclose(load("attention").causal_attention(q, k, v), want, rtol=1e-5, atol=1e-6)


def test_matern(rng):
    x, b = rng.normal(size=(60, 2)), rng.normal(size=60)
    ell, sigma2 = 0.7, 1.3
    r = np.sqrt(pairwise_sqdist(x, x)) / ell
    kmat = sigma2 * (1 + np.sqrt(5) * r + 5 * r ** 2 / 3) * np.exp(-np.sqrt(5) * r)
    np.testing.assert_allclose(load("matern").matern52(x, x, b, ell, sigma2), kmat @ b, rtol=1e-12)


def test_row_operators(rng):
    row = load("rownorm")
    a = rng.normal(size=(20, 50)).astype(np.float32) * 5
    e = np.exp(a - a.max(1, keepdims=True))
    np.testing.assert_allclose(row.row_softmax(a), e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-7)
    x, w = rng.normal(size=(20, 64)).astype(np.float32), rng.normal(size=64).astype(np.float32)
    want = x / np.sqrt((x.astype(np.float64) ** 2).mean(1, keepdims=True) + 1e-6) * w
    np.testing.assert_allclose(row.rmsnorm(x, w, 1e-6), want, rtol=1e-5)
    t = rng.integers(0, 50, size=20)
    lse = np.log(np.exp(a.astype(np.float64)).sum(1))
    np.testing.assert_allclose(row.cross_entropy(a, t), lse - a[np.arange(20), t], rtol=1e-5)


def test_retrieval(rng):
    """Top-k by inner product on integer-valued embeddings (exact scores, many ties: best first,
    then the smaller index) and each query's best score, at D = 64 (the fused path) and D = 5."""
    mod = load("retrieval")
    for dim in (64, 5):
        x, y = rng.integers(-2, 3, (40, dim)).astype(np.float32), rng.integers(-2, 3, (300, dim)).astype(np.float32)
        s = x.astype(np.float64) @ y.T.astype(np.float64)
        np.testing.assert_array_equal(mod.top_k(x, y, K=7), np.argsort(-s, axis=1, kind="stable")[:, :7])
        np.testing.assert_array_equal(mod.best_score(x, y), s.max(1).astype(np.float32))


@pytest.mark.parametrize("script, args", [
    ("kde.py", ["2000", "30"]), ("knn.py", ["2000", "200", "5"]), ("sinkhorn.py", ["300", "10"]),
    ("attention.py", ["256", "32"]), ("gp.py", ["300"]), ("rownorm.py", ["16", "1000", "64"]),
    ("retrieval.py", ["3000", "100", "5"]),
])
def test_example_scripts_run(script, args):
    out = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
