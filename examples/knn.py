"""k-nearest-neighbour classification of Gaussian blobs with argkmin."""

import sys
from pathlib import Path

import numpy as np

import kernelc as kc

KNN = kc.load(Path(__file__).with_name("knn.kc")).knn


def blobs(n: int, classes: int, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    centers = rng.normal(scale=3.0, size=(classes, dim))
    labels = rng.integers(0, classes, size=n)
    return (centers[labels] + rng.normal(size=(n, dim))).astype(np.float32), labels


def main(n_train: int = 50_000, n_test: int = 5_000, k: int = 10, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    x, labels = blobs(n_train + n_test, classes=5, dim=8, rng=rng)
    train, test = x[:n_train], x[n_train:]
    neighbours = KNN(test, train, K=k)                       # (n_test, k) indices into train
    votes = labels[:n_train][neighbours]                     # (n_test, k) labels
    predicted = np.array([np.bincount(v, minlength=5).argmax() for v in votes])
    accuracy = float((predicted == labels[n_train:]).mean())
    print(f"{n_test} queries against {n_train} references, k={k}: accuracy {accuracy:.3f}")
    return accuracy


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
