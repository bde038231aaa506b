"""Top-k retrieval of unit-length embeddings by cosine similarity (argkmax of dot products),
against NumPy's `argpartition` of the score matrix in chunks."""

import sys
import time
from pathlib import Path

import numpy as np

import kernelc as kc

RETRIEVAL = kc.load(Path(__file__).with_name("retrieval.kc"))


def embeddings(n: int, topics: np.ndarray, rng: np.random.Generator, spread: float) -> tuple[np.ndarray, np.ndarray]:
    """n unit vectors around the topics' directions, and each one's topic."""
    labels = rng.integers(0, len(topics), size=n)
    e = topics[labels] + spread * rng.normal(size=(n, topics.shape[1]))
    return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32), labels


def numpy_top_k(x: np.ndarray, y: np.ndarray, k: int, rows: int = 512) -> np.ndarray:
    out = np.empty((len(x), k), np.int64)
    for lo in range(0, len(x), rows):
        s = x[lo:lo + rows] @ y.T
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, part, 1), axis=1, kind="stable")
        out[lo:lo + rows] = np.take_along_axis(part, order, 1)
    return out


def main(n_docs: int = 100_000, n_queries: int = 2_000, k: int = 10, dim: int = 64, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    topics = rng.normal(size=(50, dim))
    docs, doc_topic = embeddings(n_docs, topics, rng, spread=1.6)
    queries, query_topic = embeddings(n_queries, topics, rng, spread=1.6)
    RETRIEVAL.top_k(queries[:8], docs, K=k)  # compiles
    t = time.perf_counter()
    found = RETRIEVAL.top_k(queries, docs, K=k)  # (n_queries, k) indices into docs, best first
    ours = time.perf_counter() - t
    t = time.perf_counter()
    theirs = numpy_top_k(queries, docs, k)
    numpy_s = time.perf_counter() - t
    precision = float((doc_topic[found] == query_topic[:, None]).mean())
    same = float((np.sort(found, 1) == np.sort(theirs, 1)).all(1).mean())
    best = RETRIEVAL.best_score(queries, docs)
    print(f"{n_queries} queries against {n_docs} documents (D={dim}), top {k}: topic precision {precision:.3f}, "
          f"median best cosine {np.median(best):.3f}; kernelc {ours * 1e3:.1f} ms, NumPy {numpy_s * 1e3:.1f} ms, "
          f"same sets as NumPy for {same:.1%} of the queries (the others differ in near-ties of f32 rounding)")
    return precision


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
