"""The CUDA backend on a GPU (skipped where CuPy finds none): CuPy arrays in give CuPy arrays out
without a host copy, NumPy arrays are copied in and out, bf16 travels as bits, empty ranges
launch nothing, and CPU backends refuse GPU arrays with a clear error. Its semantics on every
construct are the conformance suite's, where the `run` fixture includes `cuda` when available."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import kernelc as kc
from kernelc.backends import registry

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not registry.availability(registry.registry()["cuda"]).ok,
                                                  reason="no CUDA GPU with CuPy here")]
GAUSS = "kernel g(x: f32[i, D], y: f32[j, D], b: f32[j], s: f32) -> f32[i] { return sum[j](exp(-sqdist(x, y) / (2 * s * s)) * b) }"


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.random((300, 3), np.float32), rng.random((500, 3), np.float32), rng.random(500, np.float32)


def test_cupy_in_cupy_out(data):
    import cupy as cp

    x, y, b = data
    k = kc.kernel(GAUSS)
    got = k(cp.asarray(x), cp.asarray(y), cp.asarray(b), 0.5)
    assert isinstance(got, cp.ndarray) and k.last_backend == "cuda"
    np.testing.assert_allclose(cp.asnumpy(got), k(x, y, b, 0.5, backend="numpy"), rtol=1e-5)


def test_numpy_in_numpy_out(data):
    x, y, b = data
    k = kc.kernel(GAUSS)
    got = k(x, y, b, 0.5, backend="cuda")
    assert isinstance(got, np.ndarray)
    np.testing.assert_allclose(got, k(x, y, b, 0.5, backend="numpy"), rtol=1e-5)


def test_bf16_travels_as_bits():
    k = kc.kernel("kernel h(x: bf16[i], y: bf16[j]) -> bf16[i] { return max[j](x * y) }")
    x = np.linspace(-2, 2, 70).astype(ml_dtypes.bfloat16)
    y = np.linspace(-1, 3, 90).astype(ml_dtypes.bfloat16)
    got = k(x, y, backend="cuda")
    assert got.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(got.astype(np.float32), k(x, y, backend="numpy").astype(np.float32))


def test_empty_ranges_launch_nothing(data):
    import cupy as cp

    x, y, b = data
    k = kc.kernel(GAUSS)
    assert k(cp.asarray(x[:0]), cp.asarray(y), cp.asarray(b), 0.5).shape == (0,)
    np.testing.assert_array_equal(cp.asnumpy(k(cp.asarray(x), cp.asarray(y[:0]), cp.asarray(b[:0]), 0.5)), 0)


def test_cpu_backend_refuses_gpu_arrays(data):
    import cupy as cp

    x, y, b = data
    with pytest.raises(kc.KernelArgumentError, match="GPU"):
        kc.kernel(GAUSS)(cp.asarray(x), cp.asarray(y), cp.asarray(b), 0.5, backend="llvm")


def test_non_contiguous_cupy_inputs(data):
    import cupy as cp

    x, y, b = data
    k = kc.kernel(GAUSS)
    xt = cp.asarray(np.asfortranarray(x))
    got = k(xt, cp.asarray(y)[::2], cp.asarray(b)[::2], 0.5)
    np.testing.assert_allclose(cp.asnumpy(got), k(x, y[::2], b[::2], 0.5, backend="numpy"), rtol=1e-5)
