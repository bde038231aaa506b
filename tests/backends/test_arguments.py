"""Calls with wrong arguments raise KernelArgumentError naming the argument (LANGUAGE.md §7-8);
accepted inputs (numbers, buffers, strided, DLPack) are read correctly."""

import array

import ml_dtypes
import numpy as np
import pytest

import kernelc as kc

GAUSS = kc.kernel("""kernel gauss(x: f32[i, D], y: f32[j, D], b: f32[j, E], s: f32) -> f32[i, E] {
    d2 = sqdist(x, y)
    return sum[j](exp(-d2 / (2 * s * s)) * b)
}""")


def reference_gauss(x, y, b, s):
    d2 = ((x[:, None, :].astype(np.float64) - y[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * s * s)) @ b.astype(np.float64)


@pytest.fixture
def data(rng):
    return (rng.random((6, 3), np.float32), rng.random((9, 3), np.float32), rng.random((9, 2), np.float32))


def arg_error(fn, *args, **kwargs) -> kc.KernelArgumentError:
    with pytest.raises(kc.KernelArgumentError) as info:
        fn(*args, **kwargs)
    return info.value


def test_positional_and_keyword(data):
    x, y, b = data
    want = reference_gauss(x, y, b, 0.5)
    np.testing.assert_allclose(GAUSS(x, y, b, 0.5), want, rtol=1e-6)
    np.testing.assert_allclose(GAUSS(b=b, s=0.5, y=y, x=x), want, rtol=1e-6)
    np.testing.assert_allclose(GAUSS(x, y, b, s=np.float32(0.5), backend="numpy"), want, rtol=1e-6)
    np.testing.assert_allclose(GAUSS(x, y, b, s=np.array(0.5, np.float32)), want, rtol=1e-6)


@pytest.mark.parametrize("mutate, argument, words", [
    (lambda x, y, b: ((x, y, b), {}), "s", "missing"),
    (lambda x, y, b: ((x, y, b, 0.5, 1), {}), None, "takes 4 argument(s) but 5"),
    (lambda x, y, b: ((x, y, b, 0.5), {"q": 1}), "q", "no parameter"),
    (lambda x, y, b: ((x, y, b, 0.5), {"x": x}), "x", "both by position and by keyword"),
    (lambda x, y, b: ((x.astype(np.float64), y, b, 0.5), {}), "x", "expected f32, got f64"),
    (lambda x, y, b: ((x.astype(np.int32), y, b, 0.5), {}), "x", "expected f32, got i32"),
    (lambda x, y, b: ((x, y[:, :2], b, 0.5), {}), "y", "dimension D is 2 here but 3"),
    (lambda x, y, b: ((x, y, b[:5], 0.5), {}), "b", "M (the size of j) is 5 here but 9"),
    (lambda x, y, b: ((x[:, 0], y, b, 0.5), {}), "x", "expected shape (N, D)"),
    (lambda x, y, b: ((x, y, b, np.ones(2, np.float32)), {}), "s", "expected shape ()"),
    (lambda x, y, b: ((x, y, b, "0.5"), {}), "s", "cannot read"),
    (lambda x, y, b: ((x, y, b, None), {}), "s", "cannot read"),
    (lambda x, y, b: ((x.astype(">f4"), y, b[:, :0], 0.5), {}), "b", "dimension E is 0"),
    (lambda x, y, b: ((x, y, b, 0.5), {"backend": "nope"}), "backend", "no backend named 'nope'"),
    (lambda x, y, b: ((x, y, b, 0.5), {"backend": 3}), "backend", "expected a backend name"),
    (lambda x, y, b: ((x, y, b, 0.5), {"D": 4}), "D", "dimension D is 4 here but 3"),
])
def test_bad_arguments(data, mutate, argument, words):
    args, kwargs = mutate(*data)
    err = arg_error(GAUSS, *args, **kwargs)
    assert err.argument == argument, str(err)
    assert words in str(err), str(err)


def test_safe_casts_and_byte_order_are_accepted(data):
    x, y, b = data
    want = reference_gauss(x, y, b, 0.5)
    x16 = x.astype(np.float16)
    np.testing.assert_allclose(GAUSS(x16, y, b, 0.5), reference_gauss(x16.astype(np.float32), y, b, 0.5), rtol=1e-6)
    np.testing.assert_allclose(GAUSS(x.astype(">f4"), y, b, 0.5), want, rtol=1e-6)
    np.testing.assert_allclose(GAUSS(x, y, b, 1 / 2), want, rtol=1e-6)  # a Python float adapts
    np.testing.assert_allclose(GAUSS(x.tolist(), y, b, 0.5), want, rtol=1e-6)  # a nested list adapts too


def test_strided_and_transposed_inputs_are_read_correctly(rng):
    big = rng.random((12, 8), np.float32)
    x = big[::2, 1:7:2]  # (6, 3), non-contiguous
    y = np.asfortranarray(rng.random((9, 3), np.float32))
    b = rng.random((2, 9), np.float32).T  # transposed view
    np.testing.assert_allclose(GAUSS(x, y, b, 0.5), reference_gauss(x, y, b, 0.5), rtol=1e-6)
    neg = x[::-1]
    np.testing.assert_allclose(GAUSS(neg, y, b, 0.5), reference_gauss(neg, y, b, 0.5), rtol=1e-6)


def test_a_list_of_bf16_scalars():
    """ml_dtypes' bf16 scalars in a list make an array of dtype kind "V": read as the floats they
    are (they were refused as not numbers); for an integer parameter still refused."""
    import ml_dtypes

    bf16 = ml_dtypes.bfloat16
    k = kc.kernel("kernel s(x: bf16[i], y: bf16[j]) -> bf16[i] { return sum[j](x * y) }")
    np.testing.assert_array_equal(k([bf16(1.0), bf16(2.0)], [bf16(0.5), bf16(0.25)]).astype(np.float32), [0.75, 1.5])
    ints = kc.kernel("kernel s(x: i32[i]) -> i32[i] { return x }")
    with pytest.raises(kc.KernelArgumentError, match="expected numbers"):
        ints([bf16(1.0)])


def test_buffer_protocol_array_interface_and_dlpack():
    k = kc.kernel("kernel twice(x: f64[i]) -> f64[i] { return 2 * x }")
    np.testing.assert_array_equal(k(array.array("d", [1.0, 2.0])), [2.0, 4.0])

    class Iface:
        def __init__(self, a):
            self.__array_interface__ = a.__array_interface__
            self._keep = a

    np.testing.assert_array_equal(k(Iface(np.array([3.0]))), [6.0])

    class DL:
        def __init__(self, a):
            self._a = a

        def __dlpack__(self, **kw):
            return self._a.__dlpack__(**kw)

        def __dlpack_device__(self):
            return self._a.__dlpack_device__()

    np.testing.assert_array_equal(k(DL(np.array([4.0]))), [8.0])


def test_vector_per_i_accepts_n_by_1():
    k = kc.kernel("kernel twice(x: f64[i]) -> f64[i] { return 2 * x }")
    np.testing.assert_array_equal(k(np.array([[1.0], [2.0]])), [2.0, 4.0])


@pytest.mark.parametrize("value, words", [
    (float("nan"), "whole number"), (float("inf"), "whole number"), (2.5, "whole number"), (0, "at least 1"),
    (True, "whole number"), ("3", "whole number"),
])
def test_bad_k(value, words):
    k = kc.kernel("kernel nn(x: f32[i, D], y: f32[j, D]) -> i64[i, K] { return argkmin[j, K](sqdist(x, y)) }")
    x = np.zeros((2, 3), np.float32)
    err = arg_error(k, x, x, K=value)
    assert err.argument == "K" and words in str(err)
    assert k(x, x, K=2.0).shape == (2, 2)  # an integral float is a whole number
    err = arg_error(k, x, x)
    assert err.argument == "K" and "pass it by keyword" in str(err)


def test_integer_and_bool_scalars():
    k = kc.kernel("kernel f(x: i32[i], n: i32, flag: bool) -> i32[i] { return where(flag, x + n, x) }")
    x = np.array([1, 2], np.int32)
    np.testing.assert_array_equal(k(x, 5, True), [6, 7])
    assert arg_error(k, x, 2.5, True).argument == "n"
    assert arg_error(k, x, 2**40, True).argument == "n"
    assert arg_error(k, x, 1, 1).argument == "flag"
    np.testing.assert_array_equal(k(x, 5.0, False), [1, 2])


def test_slice_bounds_checked_at_call():
    k = kc.kernel("kernel f(x: f32[i, D]) -> f32[i] { return x[4] + x[-1] }")
    with pytest.raises(kc.KernelArgumentError, match="out of range"):
        k(np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(k(np.arange(10, dtype=np.float32).reshape(2, 5)), [8, 18])


def test_bf16_and_f16_inputs_and_outputs():
    k = kc.kernel("kernel f(x: bf16[i], y: f16[j]) -> (bf16[i], f16[i]) { s = sum[j](f32(x) * f32(y)); return bf16(s), f16(s) }")
    x = np.array([1.5, -2.0], ml_dtypes.bfloat16)
    y = np.array([0.25, 0.5, 1.0], np.float16)
    a, b = k(x, y)
    assert a.dtype == ml_dtypes.bfloat16 and b.dtype == np.float16
    np.testing.assert_array_equal(a.astype(np.float32), [2.625, -3.5])
    np.testing.assert_array_equal(b, [2.625, -3.5])


def test_empty_sizes():
    k = kc.kernel("kernel f(x: f32[i], y: f32[j]) -> f32[i] { return sum[j](x * y) }")
    assert k(np.zeros(0, np.float32), np.ones(3, np.float32)).shape == (0,)
    np.testing.assert_array_equal(k(np.ones(2, np.float32), np.zeros(0, np.float32)), [0, 0])


def test_outputs_keep_the_input_library():
    import sys
    from types import ModuleType

    lib = ModuleType("fakearrays")

    class Arr:
        __module__ = "fakearrays"

        def __init__(self, a):
            self.a = np.asarray(a)

        def __dlpack__(self, **kw):
            return self.a.__dlpack__(**kw)

        def __dlpack_device__(self):
            return self.a.__dlpack_device__()

    lib.from_dlpack = lambda x: Arr(np.from_dlpack(x))
    sys.modules["fakearrays"] = lib
    try:
        k = kc.kernel("kernel twice(x: f64[i]) -> f64[i] { return 2 * x }")
        out = k(Arr([1.0, 2.0]))
        assert isinstance(out, Arr)
        np.testing.assert_array_equal(out.a, [2.0, 4.0])
    finally:
        del sys.modules["fakearrays"]


def test_tolerance_is_recorded_and_checked():
    assert kc.kernel("kernel f(x: f32) -> f32 { return x }", tolerance=1e-4).tolerance == 1e-4
    for bad in (0, -1e-3, float("nan"), 1.5, "1e-4"):
        with pytest.raises(kc.KernelArgumentError):
            kc.kernel("kernel f(x: f32) -> f32 { return x }", tolerance=bad)


def test_backends_listing():
    infos = {b.name: b for b in kc.backends()}
    assert infos["numpy"].available and infos["numpy"].reason == ""
