"""Kernels over Dask arrays on a distributed.LocalCluster of two worker processes: the results
equal the single-process backend's (indices exactly, values within the accumulation rules) for
every reduction kind, with uneven and empty chunks, M < K, ties and NaN; generated programs with
random chunking; and a computation that survives a worker killed in the middle."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kernelc as kc
from kernelc.testing.programs import Program, programs

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client():
    # no dashboard, and the scheduler's HTTP server on a free port (its default, 8787, may be taken by
    # another test's cluster running beside this one: a warning)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  scheduler_kwargs={"dashboard_address": ":0"}, silence_logs=40) as cluster, \
            distributed.Client(cluster) as c:
        yield c


def _chunked(a: np.ndarray, rows: tuple[int, ...]) -> "da.Array":
    return da.from_array(a, chunks=(rows,) + tuple((n,) for n in a.shape[1:]))


REDUCTIONS = {
    "sum": "f64[i]", "mean": "f64[i]", "max": "f64[i]", "min": "f64[i]", "argmax": "i64[i]", "argmin": "i64[i]",
    "logsumexp": "f64[i]", "kmin": "f64[i, 7]", "kmax": "f64[i, 7]", "argkmin": "i64[i, 7]", "argkmax": "i64[i, 7]",
}


def _data(rng: np.random.Generator, n: int, m: int) -> dict[str, np.ndarray]:
    x = np.round(rng.random((n, 2)) * 4) / 4  # coarse values: many ties
    y = np.round(rng.random((m, 2)) * 4) / 4
    w = rng.standard_normal((m, 3))
    y[m // 2, 0] = np.nan  # a NaN in the middle of j
    return {"x": x, "y": y, "w": w}


@pytest.mark.parametrize("name", list(REDUCTIONS))
def test_every_reduction_kind_matches_one_process(client, name):
    k = 7 if name.startswith(("k", "argk")) else None
    red = f"{name}[j, {k}]" if k else f"{name}[j]"
    kernel = kc.kernel(f"kernel r(x: f64[i, D], y: f64[j, D]) -> {REDUCTIONS[name]} {{ return {red}(sqdist(x, y)) }}")
    rng = np.random.default_rng(0)
    for rows, cols in [((5, 0, 20, 1), (3, 9, 0, 2, 16)), ((26,), (5,))]:  # uneven, empty; M = 5 < K = 7
        data = _data(rng, sum(rows), sum(cols))
        got = kernel(_chunked(data["x"], rows), _chunked(data["y"], cols)).compute()
        want = kernel(data["x"], data["y"])
        if want.dtype == np.int64:
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, equal_nan=True)


def test_softmax_weighted_logsumexp_and_an_epilogue(client):
    kernel = kc.kernel("""
kernel s(x: f32[i, D], y: f32[j, D], w: f32[j, 3], c: f32[i]) -> (f32[i, 3], f32[i, 3], f32[i]) {
    d = sqdist(x, y)
    return softmax[j](-d, w), logsumexp[j](-d, w), c * sum[j](exp(-d)) / mean[j](d)
}""")
    rng = np.random.default_rng(1)
    data = _data(rng, 40, 57)
    x, y, w = (data[k].astype(np.float32) for k in ("x", "y", "w"))
    y[np.isnan(y)] = 0.5
    w[:, 2] = np.abs(w[:, 2])  # one component with positive weights only (the others' sums may be < 0)
    c = rng.random(40, np.float32)
    got = kernel(_chunked(x, (13, 0, 27)), _chunked(y, (20, 20, 17)), _chunked(w, (30, 27)), c)
    want = kernel(x, y, w, c)
    for g, v in zip(got, want):
        np.testing.assert_allclose(g.compute(), v, rtol=2e-5, atol=1e-6, equal_nan=True)


def test_reductions_over_i_and_maps(client):
    over_i = kc.kernel("kernel g(x: f64[i, D], y: f64[j, D], f: f64[i]) -> f64[j] "
                       "{ return -logsumexp[i](f - sqdist(x, y) / 2) }")
    rng = np.random.default_rng(2)
    x, y, f = rng.random((31, 2)), rng.random((22, 2)), rng.random(31)
    got = over_i(_chunked(x, (10, 21)), _chunked(y, (7, 7, 8)), _chunked(f, (31,))).compute()
    np.testing.assert_allclose(got, over_i(x, y, f), rtol=1e-12)
    scale = kc.kernel("kernel m(x: f32[i, D], s: f32) -> f32[i, D] { return x * s + 1 }")
    xs = rng.random((50, 4), np.float32)
    np.testing.assert_array_equal(scale(_chunked(xs, (20, 30)), 2.0).compute(), scale(xs, 2.0))


def test_arguments_are_checked_before_anything_runs(client):
    kernel = kc.kernel("kernel g(x: f32[i, D], y: f32[j, D]) -> f32[i] { return min[j](sqdist(x, y)) }")
    x = da.zeros((10, 3), chunks=5, dtype=np.float64)
    with pytest.raises(kc.KernelArgumentError, match="x"):
        kernel(x, np.zeros((4, 3), np.float32))
    with pytest.raises(kc.KernelArgumentError, match="dimension"):
        kernel(x.astype(np.float32), np.zeros((4, 2), np.float32))
    unknown = da.zeros((10, 3), chunks=5, dtype=np.float32)
    unknown = unknown[unknown[:, 0] >= 0]
    with pytest.raises(kc.KernelArgumentError, match="chunk sizes"):
        kernel(unknown, np.zeros((4, 3), np.float32))


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(program=programs(), cuts=st.lists(st.integers(0, 4), min_size=2, max_size=2))
def test_generated_programs_on_random_chunks(client, program: Program, cuts: list[int]):
    kernel = kc.kernel(program.source)
    want = kernel(**program.data)  # the same (default) backend the workers use

    def chunked(name: str, a: np.ndarray) -> object:
        p = kernel.ir.param(name)
        if not p.type.index:
            return a
        blocks = []
        for ix, n in zip(p.type.index, a.shape):
            cut = min(cuts[0 if ix == "i" else 1], n)
            blocks.append((n - cut, cut) if cut else (n,))
        return da.from_array(a, chunks=tuple(blocks) + tuple((n,) for n in a.shape[len(p.type.index):]))

    try:
        got = kernel(**{k: chunked(k, v) for k, v in program.data.items()})
    except kc.UnsupportedKernelError:
        return
    got = tuple(g.compute() for g in got) if isinstance(got, tuple) else got.compute()
    program.check(got, reference=False)
    if not isinstance(want, tuple) and want.dtype == np.int64:
        np.testing.assert_array_equal(got, want)


async def _die() -> None:  # client.run(..., wait=False) takes coroutine functions only
    os._exit(1)


def _partial_states_done(dask_scheduler) -> int:
    return sum(1 for ts in dask_scheduler.tasks.values() if ts.state == "memory" and "partial_states" in str(ts.key))


def test_a_worker_killed_mid_computation_still_gives_the_result(client):
    kernel = kc.kernel("kernel g(x: f64[i, D], y: f64[j, D], b: f64[j]) -> f64[i] "
                       "{ return sum[j](exp(-sqdist(x, y)) * b) }")
    rng = np.random.default_rng(3)
    x, y, b = rng.random((8000, 3)), rng.random((8000, 3)), rng.random(8000)
    result = kernel(_chunked(x, (1000,) * 8), _chunked(y, (500,) * 16), _chunked(b, (500,) * 16), backend="numpy")
    before = set(client.scheduler_info()["workers"])
    future = client.compute(result)
    deadline = time.monotonic() + 60
    while client.run_on_scheduler(_partial_states_done) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not future.done(), "the computation should still be running when a worker is killed"
    victim = sorted(before)[0]
    client.run(_die, workers=[victim], wait=False)
    got = future.result(timeout=120)
    np.testing.assert_allclose(got, kernel(x, y, b), rtol=1e-12)
    client.wait_for_workers(2, timeout=60)
    assert set(client.scheduler_info()["workers"]) != before, "the killed worker was replaced"


def test_kernels_reading_i_and_j_see_global_indices(client):
    causal = kc.kernel("""
kernel causal(q: f32[i, D], k: f32[j, D], v: f32[j, E]) -> (f32[i, E], i64[i], f32[i]) {
    s = where(j <= i, dot(q, k), -inf)
    return softmax[j](s, v), argmax[j](s), f32(i) + max[j](f32(j) * (j <= i))
}""")
    rng = np.random.default_rng(4)
    q, k, v = rng.random((37, 4), np.float32), rng.random((37, 4), np.float32), rng.random((37, 2), np.float32)
    got = causal(_chunked(q, (10, 0, 27)), _chunked(k, (5, 20, 12)), _chunked(v, (25, 12)))
    want = causal(q, k, v)
    np.testing.assert_allclose(got[0].compute(), want[0], rtol=2e-5, atol=1e-6)
    np.testing.assert_array_equal(got[1].compute(), want[1])
    np.testing.assert_array_equal(got[2].compute(), want[2])
