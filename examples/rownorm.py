"""A transformer's row-wise operators: softmax, RMSNorm and cross-entropy, each one fused pass."""

import sys
from pathlib import Path

import numpy as np

import kernelc as kc

ROW = kc.load(Path(__file__).with_name("rownorm.kc"))


def main(batch: int = 512, vocab: int = 32_000, hidden: int = 1_024, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    h = rng.normal(size=(batch, hidden)).astype(np.float32)
    gain = (1 + 0.1 * rng.normal(size=hidden)).astype(np.float32)
    normed = ROW.rmsnorm(h, gain, 1e-6)
    w_out = rng.normal(scale=hidden ** -0.5, size=(hidden, vocab)).astype(np.float32)
    logits = normed @ w_out
    probs = ROW.row_softmax(logits)
    target = rng.integers(0, vocab, size=batch)
    loss = float(ROW.cross_entropy(logits, target).mean())
    print(f"batch {batch}, vocab {vocab}: rows of softmax sum to {probs.sum(axis=1).mean():.6f}, "
          f"mean cross-entropy {loss:.4f} (log vocab = {np.log(vocab):.4f})")
    return loss


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
