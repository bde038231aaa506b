"""Causal self-attention over a long sequence without the (T, T) score matrix."""

import sys
from pathlib import Path

import numpy as np

import kernelc as kc

ATTENTION = kc.load(Path(__file__).with_name("attention.kc")).causal_attention


def main(tokens: int = 8_192, head_dim: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(tokens, head_dim)).astype(np.float32)
    wq, wk, wv = (rng.normal(scale=head_dim ** -0.5, size=(head_dim, head_dim)).astype(np.float32) for _ in range(3))
    out = ATTENTION(x @ wq, x @ wk, x @ wv)
    print(f"causal attention over {tokens} tokens, head dimension {head_dim}: output {out.shape}, "
          f"mean |out| {np.abs(out).mean():.4f}")
    return out


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
