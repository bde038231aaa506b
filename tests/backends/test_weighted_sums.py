"""The llvm backend's weighted sums of vectors (kernelc/backends/llvm/weighted.py, knob
`weighted_sums`): which reductions take them, and their results against the NumPy reference and
against the pair loop's own sums on awkward shapes, data and schedules."""

from __future__ import annotations

import numpy as np
import pytest

import kernelc as kc
from kernelc.backends import registry, runtime
from kernelc.backends.interface import Schedule
from kernelc.backends.llvm import codegen, weighted
from kernelc.testing.runners import run_on

GAUSS = ("kernel g(x: {t}[i, D], y: {t}[j, D], b: {t}[j, E]) -> {t}[i, E] "
         "{{ return {r}[j](exp(-sqdist(x, y)) * b) }}")
# the values are the points (a mean-shift step's numerator): read by the weight and as values
MEAN_SHIFT = ("kernel g(x: {t}[i, D], y: {t}[j, D]) -> {t}[i, D] "
              "{{ return {r}[j](exp(-sqdist(x, y) * 0.25) * y) }}")


def _schedules(k: kc.Kernel, args: dict) -> tuple[object, dict]:
    llvm = registry.get("llvm")
    return llvm, dict(llvm.default_schedule(k.ir, runtime.bind(k.ir, (), args).sizes).knobs)


def _weighted_states(source: str, dims: dict[str, int]) -> bool:
    """Whether the generated row functions keep a weighted sum (its block product loop)."""
    text = codegen.generate(kc.kernel(source).optimized, dims, weighted_sums=True)[0]
    return "block_product" in text


def test_which_reductions_are_weighted_sums():
    """sum or mean of a scalar per pair times a vector parameter of the inner index with E >=
    MIN_DIM, in either order, also where the values are read elsewhere (then passed twice: in
    their place and row-major after the outputs); not: short E, a vector weight, a value computed
    per pair, a product used outside the sum."""
    e = weighted.MIN_DIM
    assert _weighted_states(GAUSS.format(t="f32", r="sum"), {"D": 3, "E": e})
    assert _weighted_states(GAUSS.format(t="f64", r="mean"), {"D": 3, "E": 64})
    assert _weighted_states("kernel g(x: f32[i], y: f32[j], b: f32[j, E]) -> f32[i, E] "
                            "{ return sum[j](b * (x * y)) }", {"E": 20})
    assert not _weighted_states(GAUSS.format(t="f32", r="sum"), {"D": 3, "E": e - 1})
    assert not _weighted_states("kernel g(x: f32[i, E], b: f32[j, E]) -> f32[i, E] "
                                "{ return sum[j](x * b) }", {"E": 16})  # the weight is a vector
    assert not _weighted_states("kernel g(x: f32[i], y: f32[j, E]) -> f32[i, E] "
                                "{ return sum[j](x * (y + 1.0)) }", {"E": 16})  # v computed per pair
    assert _weighted_states("kernel g(x: f32[i], b: f32[j, E]) -> (f32[i, E], f32[i, E]) "
                            "{ return sum[j](x * b), max[j](b) }", {"E": 16})  # b read elsewhere
    assert _weighted_states(MEAN_SHIFT.format(t="f32", r="sum"), {"D": 16})  # y in the weight too
    specs = codegen.row_functions(kc.kernel(MEAN_SHIFT.format(t="f32", r="sum")).optimized, "", {"D": 16}, True)
    assert (specs[0].soa, specs[0].row_major, specs[0].row_major_copies) == (("y",), (), ("y",))
    assert not _weighted_states("kernel g(x: f32[i], b: f32[j, E]) -> (f32[i, E], f32[i, E]) "
                                "{ t = x * b\n return sum[j](t), max[j](t) }", {"E": 16})  # shared product


def test_the_default_schedule_turns_them_on_and_the_tuner_tries_them_off():
    k = kc.kernel(GAUSS.format(t="f32", r="sum"))
    args = {"x": np.zeros((300, 3), np.float32), "y": np.zeros((3000, 3), np.float32),
            "b": np.zeros((3000, 64), np.float32)}
    llvm, default = _schedules(k, args)
    assert default.get("weighted_sums") is True and default["rows"] == 4
    sizes = runtime.bind(k.ir, (), args).sizes
    off = [dict(s.knobs) for s in llvm.candidates(k.optimized, sizes) if dict(s.knobs).get("weighted_sums") is False]
    assert len(off) == 1 and off[0]["rows"] != 4  # the pair loop's own rows without them
    small = kc.kernel(GAUSS.format(t="f32", r="sum"))
    args["b"] = np.zeros((3000, 2), np.float32)
    assert "weighted_sums" not in _schedules(small, args)[1]


@pytest.mark.parametrize("t", ["f32", "f64"])
@pytest.mark.parametrize("r", ["sum", "mean"])
@pytest.mark.parametrize("e, shared", [(8, False), (17, False), (64, False), (200, False), (8, True), (17, True),
                                       (64, True)])
def test_against_the_reference_and_the_pair_loop(t, r, e, shared):
    """Inner ranges of 0, 1, a block, a block and one, several blocks; register blocks of 1 to 8
    rows (the last one short); tiles of the inner index and the partial function over 2 threads;
    values with inf and NaN (their products follow IEEE: inf * 0 is NaN); `shared`: the values
    are the points the weight reads too (a mean-shift step: y passed in blocks and row-major)."""
    k = kc.kernel((MEAN_SHIFT if shared else GAUSS).format(t=t, r=r))
    npdt = np.float32 if t == "f32" else np.float64
    rng = np.random.default_rng(e)
    for n, m in ((5, 0), (3, 1), (9, 256), (7, 257), (13, 700), (1, 3000)):
        x, y = rng.random((n, e if shared else 3)).astype(npdt), rng.random((m, e if shared else 3)).astype(npdt)
        b = y if shared else rng.standard_normal((m, e)).astype(npdt)
        if m > 300:
            b[17, 1], b[299, 2] = np.inf, np.nan
        args = {"x": x, "y": y} | ({} if shared else {"b": b})
        want = k(**args, backend="numpy")
        # a sum's rounding, as the pair loop's: a few ulp of the block sums' magnitude, which
        # is at most the sum of |w b| (cancellation leaves the result far smaller)
        magnitudes = k(**(args | ({} if shared else {"b": np.abs(b)})), backend="numpy")
        scale = np.abs(magnitudes) * (1e-6 if t == "f32" else 1e-14)
        llvm, default = _schedules(k, args)
        # (the pair loop's own sums in one row: E accumulators per row compile slowly)
        off = Schedule("llvm", tuple(sorted((default | {"rows": 1, "weighted_sums": False}).items())))
        pair_loop = run_on(llvm, k, schedule=off, **args)
        for knobs in ({"rows": 1}, {"rows": 3}, {"rows": 8}, {"rows": 4, "tile": 256, "threads": 2}):
            on = Schedule("llvm", tuple(sorted((default | knobs | {"weighted_sums": True}).items())))
            got = run_on(llvm, k, schedule=on, **args)
            for other in (want, pair_loop):
                same = (got == other) | (np.isnan(got) & np.isnan(other))
                with np.errstate(invalid="ignore"):  # (inf - inf where both are inf)
                    close = np.abs(got - other) <= scale
                assert np.all(same | close), on


def test_few_rows_split_the_keys_over_threads():
    """One row, many keys: the partial function's states (the f64 totals) merged."""
    k = kc.kernel(GAUSS.format(t="f32", r="sum"))
    rng = np.random.default_rng(3)
    x, y, b = rng.random((1, 3), np.float32), rng.random((300_001, 3), np.float32), \
        rng.standard_normal((300_001, 16)).astype(np.float32)
    np.testing.assert_allclose(k(x, y, b, backend="llvm"), k(x, y, b, backend="numpy"), rtol=1e-5, atol=1e-6)


def test_values_read_elsewhere_beside_long_states_and_softmax():
    """Values passed twice (in blocks and row-major after the outputs) beside a long reduction's
    scratch arrays (which come after the copies), and a softmax whose values are the points
    (its numerators read the row-major copy), against the reference over rows, tiles and a split."""
    k = kc.kernel("kernel g(x: f32[i, D], y: f32[j, D], z: f32[j, L]) -> (f32[i, D], f32[i, L], f32[i, D]) "
                  "{ return sum[j](exp(-sqdist(x, y)) * y), max[j](z * x[0]), softmax[j](-sqdist(x, y), y) }")
    rng = np.random.default_rng(5)
    for n, m in ((6, 700), (1, 300_001)):
        args = {"x": rng.random((n, 16), np.float32), "y": rng.random((m, 16), np.float32),
                "z": rng.standard_normal((m, 300)).astype(np.float32)}
        want = k(**args, backend="numpy")
        llvm, default = _schedules(k, args)
        specs = codegen.row_functions(k.optimized, "", dict(default["dims"]), True)
        assert specs[0].row_major_copies == ("y",) and len(specs[0].scratch) == 2
        for knobs in ({"rows": 1}, {"rows": 4}, {"rows": 4, "tile": 256, "threads": 2}):
            on = Schedule("llvm", tuple(sorted((default | knobs | {"weighted_sums": True}).items())))
            for got, w in zip(run_on(llvm, k, schedule=on, **args), want):
                np.testing.assert_allclose(got, w, rtol=2e-5, atol=1e-6, err_msg=str(on))
