"""The llvm backend's nearest-neighbour filter (kernelc/backends/llvm/nearest.py): which kernels
take it, its results against the exact row functions bit for bit (awkward shapes, ties,
duplicates, data far from the origin, generated data), the calls it passes to the exact code,
and against the NumPy reference backend."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kernelc as kc
from kernelc.backends import runtime
from kernelc.backends.interface import Schedule
from kernelc.backends.llvm import backend, nearest

KINDS = {
    "argkmin": "kernel k(x: f32[i, D], y: f32[j, D]) -> i64[i, {K}] {{ return argkmin[j, {K}](sqdist(x, y)) }}",
    "kmin": "kernel k(x: f32[i, D], y: f32[j, D]) -> f32[i, {K}] {{ return kmin[j, {K}](sqdist(x, y)) }}",
    "argmin": "kernel k(x: f32[i, D], y: f32[j, D]) -> i64[i] {{ return argmin[j](sqdist(x, y)) }}",
    "min": "kernel k(x: f32[i, D], y: f32[j, D]) -> f32[i] {{ return min[j](sqdist(x, y)) }}",
}


@pytest.fixture
def any_size(monkeypatch):
    """The filter for calls of 64 rows or more and any number of points (its size rules are speed
    rules)."""
    monkeypatch.setattr(nearest, "MIN_POINTS", {"k-best": 1, "extreme": 1})
    monkeypatch.setattr(nearest, "MIN_ROWS", {"k-best": 64, "extreme": 64})


def _both(kind: str, x: np.ndarray, y: np.ndarray, k: int = 10, threads: int = 2) -> tuple[np.ndarray, ...]:
    """The output with the filter, without it (the exact row functions), and whether the filter
    took the call."""
    kern = kc.kernel(KINDS[kind].format(K=k), autotune="off")
    knobs = {"dims": (("D", x.shape[1]),), "threads": threads, "rows": 2, "vector_bits": 0}
    on = backend.compile(kern.optimized, Schedule.of("llvm", **knobs))
    off = backend.compile(kern.optimized, Schedule.of("llvm", **knobs, nearest_filter=False))
    stage = on.stages[0][0]
    assert stage.pattern is not None and off.stages[0][0].pattern is None
    shape = (len(x), k) if kind in ("argkmin", "kmin") else (len(x),)
    dtype = np.int64 if kind.startswith("arg") else np.float32
    inputs = {"x": x, "y": y}
    took = np.empty(shape, dtype)
    filtered = stage.pattern.run(inputs, took)
    got, want = np.empty(shape, dtype), np.empty(shape, dtype)
    for executable, out in ((on, got), (off, want)):
        bound = runtime.bind(kern.ir, (), inputs)
        call = runtime.allocate(kern.ir, bound)
        executable.run(call)
        out[...] = call.outputs[0]
    if filtered:
        np.testing.assert_array_equal(took, got)
    return got, want, filtered


@pytest.mark.parametrize("kind", list(KINDS))
def test_match(kind: str) -> None:
    found = nearest.match(kc.kernel(KINDS[kind].format(K=7)).optimized, {"D": 3})
    assert found is not None
    assert (found.queries, found.points, found.dim) == ("x", "y", 3)
    assert found.k == (7 if kind in ("argkmin", "kmin") else 1)
    assert found.output == ("idx" if kind.startswith("arg") else "vals")


def test_match_either_order_and_written_out() -> None:
    src = "kernel k(x: f32[i, D], y: f32[j, D]) -> i64[i, 4] { return argkmin[j, 4](sum((y - x) * (y - x))) }"
    found = nearest.match(kc.kernel(src).optimized, {"D": 5})
    assert found is not None and (found.queries, found.points, found.dim, found.k) == ("x", "y", 5, 4)


@pytest.mark.parametrize("source, dims", [
    (KINDS["argkmin"].format(K=17), {"D": 3}),  # more slots than a vector holds
    (KINDS["argkmin"].format(K=4), {"D": 16}),  # the exact code sums long vectors another way
    ("kernel k(x: f64[i, D], y: f64[j, D]) -> i64[i, 4] { return argkmin[j, 4](sqdist(x, y)) }", {"D": 3}),
    ("kernel k(x: f32[i, D], y: f32[j, D]) -> i64[i, 4] { return argkmax[j, 4](sqdist(x, y)) }", {"D": 3}),
    ("kernel k(x: f32[i, D], y: f32[j, D]) -> i64[i, 4] { return argkmin[j, 4](2 * sqdist(x, y)) }", {"D": 3}),
    ("kernel k(x: f32[i, D], y: f32[j, D]) -> i64[i, 4] { return argkmin[j, 4](-dot(x, y)) }", {"D": 3}),
    ("kernel k(x: f32[i, D], y: f32[j, D]) -> (i64[i], f32[i]) "
     "{ d = sqdist(x, y); return argmin[j](d), min[j](d) }", {"D": 3}),  # two outputs
    ("kernel k(x: f32[i, D], y: f32[j, D]) -> i64[j] { return argmin[i](sqdist(x, y)) }", {"D": 3}),  # over i
])
def test_match_rejects(source: str, dims: dict) -> None:
    assert nearest.match(kc.kernel(source).optimized, dims) is None


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("n, m, d, k", [(64, 9000, 3, 10), (67, 4100, 3, 16), (130, 300, 1, 5), (65, 5, 2, 10),
                                        (64, 8193, 7, 1), (100, 1000, 15, 3)])
def test_equal_to_the_exact_code(any_size, kind: str, n: int, m: int, d: int, k: int) -> None:
    rng = np.random.default_rng(n * m + d)
    x, y = rng.random((n, d), np.float32), rng.random((m, d), np.float32)
    got, want, filtered = _both(kind, x, y, k)
    assert filtered
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kind", ["argkmin", "argmin"])
def test_ties_and_duplicates(any_size, kind: str) -> None:
    """Integer coordinates: many equal distances, points repeated and queries on points; equal
    values keep index order, whichever order the seed and the scan met them in."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, (3000, 3)).astype(np.float32)
    x = np.concatenate([y[:40], rng.integers(0, 4, (60, 3)).astype(np.float32)])
    got, want, filtered = _both(kind, x, y, k=12)
    assert filtered
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kind", ["argkmin", "kmin", "argmin"])
def test_clustered_data_prunes_exactly(any_size, kind: str) -> None:
    """Tight clusters far apart, several groups of rows on two threads: most blocks of points are
    skipped for most groups (`pruned`), and what remains gives the exact code's result."""
    rng = np.random.default_rng(8)
    centres = rng.random((12, 3)).astype(np.float32) * 100
    y = (centres[rng.integers(0, 12, 9000)] + rng.standard_normal((9000, 3))).astype(np.float32)
    x = (centres[rng.integers(0, 12, 700)] + rng.standard_normal((700, 3))).astype(np.float32)
    got, want, filtered = _both(kind, x, y, k=10)
    assert filtered
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kind", ["argkmin", "argmin"])
@pytest.mark.parametrize("grid, k", [(24, 12), (8, 3), (5, 2)])
def test_grid_ties_on_box_edges(any_size, kind: str, grid: int, k: int) -> None:
    """Points and queries on an integer grid: boxes touch and a block's box distance often
    equals a row's K-th distance exactly; such a block may hold a tie with a smaller index, so
    it must be walked (pruning at equality fails here)."""
    rng = np.random.default_rng(9)
    y = rng.integers(0, grid, (2000, 3)).astype(np.float32)
    x = rng.integers(0, grid, (300, 3)).astype(np.float32)
    got, want, filtered = _both(kind, x, y, k=k)
    assert filtered
    np.testing.assert_array_equal(got, want)


def test_eight_lanes(any_size, monkeypatch) -> None:
    """The code for hosts without AVX-512 (vectors of 8 points), run here."""
    monkeypatch.setattr(nearest, "lanes", lambda: 8)
    rng = np.random.default_rng(7)
    x, y = rng.random((90, 3), np.float32), rng.random((1003, 3), np.float32)
    for kind in ("argkmin", "min"):
        got, want, filtered = _both(kind, x, y, k=6)
        assert filtered
        np.testing.assert_array_equal(got, want)


def test_far_from_the_origin(any_size) -> None:
    """Clustered data far from 0: the centred coordinates keep the margin small and the result exact."""
    rng = np.random.default_rng(2)
    y = (1e4 + rng.random((5000, 3))).astype(np.float32)
    x = (1e4 + rng.random((200, 3))).astype(np.float32)
    got, want, filtered = _both("argkmin", x, y)
    assert filtered
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1e20, 1e-30])
@pytest.mark.parametrize("where", ["x", "y"])
def test_unsafe_values_run_the_exact_code(any_size, value: float, where: str) -> None:
    rng = np.random.default_rng(3)
    x, y = rng.random((100, 3), np.float32), rng.random((2000, 3), np.float32)
    (x if where == "x" else y)[7, 1] = value
    got, want, filtered = _both("argkmin", x, y)
    assert not filtered
    np.testing.assert_array_equal(got, want)


def test_small_calls_run_the_exact_code(monkeypatch) -> None:
    monkeypatch.setattr(nearest, "MIN_ROWS", {"k-best": 64, "extreme": 64})
    rng = np.random.default_rng(4)
    few_rows = _both("argkmin", rng.random((63, 3), np.float32), rng.random((9000, 3), np.float32))
    few_points = _both("argkmin", rng.random((200, 3), np.float32), rng.random((1000, 3), np.float32))
    assert not few_rows[2] and not few_points[2]
    for got, want, _ in (few_rows, few_points):
        np.testing.assert_array_equal(got, want)


def test_strided_inputs_and_one_thread(any_size) -> None:
    rng = np.random.default_rng(5)
    x, y = rng.random((300, 6), np.float32)[::3, ::2], rng.random((3000, 3), np.float32)[::2]
    got, want, filtered = _both("argkmin", np.ascontiguousarray(x), np.ascontiguousarray(y), threads=1)
    assert filtered
    np.testing.assert_array_equal(got, want)
    kern = kc.kernel(KINDS["argkmin"].format(K=10))
    np.testing.assert_array_equal(kern(x, y, backend="llvm"), got)


def test_against_the_numpy_reference() -> None:
    """A call large enough to take the filter by default: the distances of the chosen indices
    equal the reference's (indices may differ only where distances tie)."""
    rng = np.random.default_rng(6)
    x, y = rng.random((4096, 3), np.float32), rng.random((8192, 3), np.float32)
    kern = kc.kernel(KINDS["argkmin"].format(K=10))
    _, _, executable = kern.compiled(x, y, backend="llvm")
    assert executable.stages[0][0].pattern.run({"x": x, "y": y}, np.empty((len(x), 10), np.int64))
    got, want = kern(x, y, backend="llvm"), kern(x, y, backend="numpy")
    dist = lambda idx: ((x[:, None, :].astype(np.float64) - y[idx].astype(np.float64)) ** 2).sum(-1)  # noqa: E731
    np.testing.assert_allclose(dist(got), dist(want), rtol=1e-6, atol=1e-12)
    assert (got == want).mean() > 0.999


def test_the_tuner_varies_only_threads_and_chunks_where_the_filter_runs() -> None:
    """The row-function knobs (rows, vector width, tiles, ...) do not change the filter's code:
    calls it takes get candidates that differ from the default in threads or chunks only;
    smaller calls the row knobs too."""
    kern = kc.kernel(KINDS["argkmin"].format(K=10))
    rows, points = nearest.MIN_ROWS["k-best"], nearest.MIN_POINTS["k-best"]

    def changed(n: int, m: int) -> set[str]:
        args = {"x": np.zeros((n, 3), np.float32), "y": np.zeros((m, 3), np.float32)}
        sizes = runtime.bind(kern.optimized, (), args).sizes
        found = backend.candidates(kern.optimized, sizes)
        assert found[0] == backend.default_schedule(kern.optimized, sizes)
        default = dict(found[0].knobs)
        return {knob for s in found[1:] for knob, value in s.knobs if default.get(knob) != value}

    assert changed(rows, points) <= {"threads", "chunks_per_thread"}
    assert "rows" in changed(rows - 1, points) and "rows" in changed(rows, points - 1)


def test_knob_and_explain() -> None:
    kern = kc.kernel(KINDS["argkmin"].format(K=10))
    knobs = {"dims": (("D", 3),), "threads": 1}
    assert backend.compile(kern.optimized, Schedule.of("llvm", **knobs)).notes
    assert not backend.compile(kern.optimized, Schedule.of("llvm", **knobs, nearest_filter=False)).notes
    note = backend.compile(kern.optimized, Schedule.of("llvm", **knobs)).notes[0]
    assert "filter" in note and "exact" in note


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(64, 300), m=st.integers(1, 3000), d=st.integers(1, 4), k=st.integers(1, 16),
       grid=st.sampled_from([0, 2, 5, 50]), clusters=st.sampled_from([0, 3]), seed=st.integers(0, 2 ** 32 - 1),
       kind=st.sampled_from(list(KINDS)))
def test_generated_data(any_size, n: int, m: int, d: int, k: int, grid: int, clusters: int, seed: int,
                        kind: str) -> None:
    """Generated shapes and data: on a coarse grid (distances tie) or continuous, spread out or
    in clusters far apart (blocks of points pruned)."""
    rng = np.random.default_rng(seed)
    draw = (lambda shape: rng.integers(-grid, grid + 1, shape)) if grid else (lambda shape: rng.standard_normal(shape))
    x, y = draw((n, d)).astype(np.float32), draw((m, d)).astype(np.float32)
    if clusters:
        centres = rng.integers(-1000, 1000, (clusters, d)).astype(np.float32)
        x, y = x + centres[rng.integers(0, clusters, n)], y + centres[rng.integers(0, clusters, m)]
    got, want, filtered = _both(kind, x, y, k)
    assert filtered
    np.testing.assert_array_equal(got, want)
