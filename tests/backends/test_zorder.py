"""The nearest-neighbour filter's Z orders (kernelc/backends/llvm/zorder.py), generated code
against NumPy: the Morton codes, the order and the points' arrays in it."""

from __future__ import annotations

import numpy as np
import pytest

from kernelc.backends.llvm import zorder


def _reference_codes(p: np.ndarray, z: zorder.ZOrder) -> np.ndarray:
    centred = (p - z.centre).astype(np.float32)
    q = np.clip((centred - z.lo) * z.scale, 0, 2 ** zorder.bits(p.shape[1]) - 1).astype(np.intp)
    out = np.zeros(len(p), np.uint64)
    for d in range(p.shape[1]):
        out |= z.spread[q[:, d]] << np.uint64(d)
    return out


@pytest.mark.parametrize("dim", [1, 2, 3, 7, 15])
def test_codes_and_points_against_numpy(dim: int) -> None:
    rng = np.random.default_rng(dim)
    y = (rng.standard_normal((1000, dim)) * 50 + 3).astype(np.float32)
    columns = np.ascontiguousarray(y.T)
    z = zorder.ZOrder(columns, columns.mean(1, dtype=np.float64))
    np.testing.assert_array_equal(z.codes(y), _reference_codes(y, z))
    z.sort(y)
    assert np.all(np.diff(z.sorted.astype(np.float64)) >= 0)
    np.testing.assert_array_equal(np.sort(z.order), np.arange(len(y)))
    pts = z.points(y, width=16, block=64, length=2048)
    ordered = y[z.order]
    np.testing.assert_array_equal(pts.ordered, ordered)
    assert pts.columns.shape == (dim, 2048) and pts.indices.shape == (2048,)
    np.testing.assert_array_equal(pts.columns[:, :1000], ordered.T)
    assert not pts.columns[:, 1000:].any() and np.all(pts.indices[1000:] == -1)
    np.testing.assert_array_equal(pts.indices[:1000], z.order)
    centred = (ordered - z.centre).astype(np.float32)
    assert pts.ys.shape == (dim + 1, 1008)
    np.testing.assert_array_equal(pts.ys[:dim, :1000], centred.T)
    np.testing.assert_allclose(pts.ys[dim, :1000], (centred.astype(np.float64) ** 2).sum(1), rtol=dim * 2.0 ** -23)
    assert np.all(pts.ys[dim, 1000:] == np.inf) and not pts.ys[:dim, 1000:].any()
    assert pts.radius >= np.sqrt((centred.astype(np.float64) ** 2).sum(1).max())
    for blk in range(len(pts.boxes)):
        part = ordered[blk * 64:(blk + 1) * 64]
        np.testing.assert_array_equal(pts.boxes[blk], np.stack([part.min(0), part.max(0)]))


def test_rows_find_their_place() -> None:
    """A row on a point has that point's code, so its seeds start around the point's place."""
    rng = np.random.default_rng(0)
    y = rng.random((500, 3), np.float32)
    columns = np.ascontiguousarray(y.T)
    z = zorder.ZOrder(columns, columns.mean(1, dtype=np.float64))
    z.sort(y)
    place = np.searchsorted(z.sorted, z.codes(y[123:124]))[0]
    assert z.sorted[place] == z.codes(y[123:124])[0]
