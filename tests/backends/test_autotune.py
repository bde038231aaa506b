"""The autotuner: a wrong candidate is never chosen, the database survives concurrency and
corruption, and the modes do what they say."""

import multiprocessing
import sqlite3
import time

import numpy as np
import pytest

import kernelc as kc
from kernelc.backends import runtime
from kernelc.backends.autotune import store, tuner
from kernelc.backends.interface import Schedule
from kernelc.backends.numpy import NumpyBackend

SRC = "kernel g(x: f32[i, D], y: f32[j, D]) -> (f32[i], i64[i]) { d = sqdist(x, y); return sum[j](exp(-d)), argmin[j](d) }"


class _Sabotaged:
    def __init__(self, inner, how):
        self.inner, self.how = inner, how

    def run(self, call):
        self.inner.run(call)
        if self.how == "values":
            call.outputs[0] *= 1.5
        elif self.how == "indices":
            call.outputs[1] += 1
        elif self.how == "slow":
            time.sleep(0.02)
        elif self.how == "last-bit":  # what another summation order may do to a narrow result
            nudged = call.outputs[0].astype(np.float32) * np.float32(1 + 2 ** -8)
            call.outputs[0][...] = nudged.astype(call.outputs[0].dtype)


class Rigged(NumpyBackend):
    """The NumPy backend whose default is slow and whose fast candidates compute wrong results."""

    name = "rigged"

    def default_schedule(self, kernel, sizes):
        return Schedule.of(self.name, dims=sizes.dims, how="slow")

    def candidates(self, kernel, sizes):
        return [self.default_schedule(kernel, sizes)] + [Schedule.of(self.name, dims=sizes.dims, how=h)
                                                         for h in ("values", "indices", "fine")]

    def compile(self, kernel, schedule):
        plain = Schedule.of("numpy", dims=schedule.get("dims"))
        return _Sabotaged(super().compile(kernel, plain), schedule.get("how"))


def _bound(k, rng, n=40, m=50):
    return runtime.bind(k.ir, (rng.random((n, 3), np.float32), rng.random((m, 3), np.float32)), {})


def test_a_wrong_candidate_is_never_chosen(rng):
    k = kc.kernel(SRC)
    result = tuner.tune(k, Rigged(), _bound(k, rng), budget=1.0)
    by_how = {row.schedule.split("how=")[1].split()[0]: row for row in result.rows}
    assert by_how["values"].status.startswith("wrong: relative error")
    assert by_how["indices"].status.startswith("wrong: indices differ")
    assert result.knobs["how"] == "fine" and by_how["fine"].chosen  # the fastest correct one
    assert not by_how["values"].chosen and not by_how["indices"].chosen


def test_bf16_results_are_compared_as_floats(rng):
    """ml_dtypes' bfloat16 arrays have dtype kind "V": a bf16 result one rounding away is within
    the narrow types' bound (it was compared bit for bit, as indices are, and called wrong), and a
    variant's error is measured (it was inf, so no tolerance variant of a bf16 kernel was taken)."""
    import ml_dtypes

    from kernelc.backends.autotune import measure

    class Nudged(Rigged):
        def candidates(self, kernel, sizes):
            return [self.default_schedule(kernel, sizes)] + [Schedule.of(self.name, dims=sizes.dims, how=h)
                                                             for h in ("values", "last-bit")]

    k = kc.kernel("kernel g(x: bf16[i, D], y: bf16[j, D]) -> bf16[i] { return sum[j](exp(-sqdist(x, y))) }")
    x, y = (rng.random((n, 3)).astype(ml_dtypes.bfloat16) for n in (40, 50))
    result = tuner.tune(k, Nudged(), runtime.bind(k.ir, (x, y), {}), budget=1.0)
    by_how = {row.schedule.split("how=")[1].split()[0]: row for row in result.rows}
    assert by_how["values"].status.startswith("wrong: relative error")
    assert result.knobs["how"] == "last-bit" and by_how["last-bit"].chosen
    a = np.array([1.0, 2.0, -4.0], ml_dtypes.bfloat16)
    b = (a.astype(np.float32) * np.float32(1 + 2 ** -7)).astype(ml_dtypes.bfloat16)
    assert measure.relative_error([b], [a]) == pytest.approx(2 ** -7)
    assert measure.relative_error([np.array([1, 2])], [np.array([1, 3])]) == float("inf")


def test_buckets_are_powers_of_two():
    from kernelc.plugins import Sizes

    assert tuner.bucket(Sizes(1000, 1, (("D", 3),))) == "N=1024,M=1,D=4"
    assert tuner.bucket(Sizes(1024, 0, ())) == "N=1024,M=0"


def _writer(folder, worker):
    import os

    os.environ["KERNELC_CACHE_DIR"] = folder
    for n in range(40):
        store.save(f"w{worker}-{n}", {"n": n, "worker": worker})
        assert store.load(f"w{worker}-{n}") == {"n": n, "worker": worker}


def test_concurrent_writers_do_not_corrupt_the_database(tmp_path, monkeypatch):
    monkeypatch.setenv("KERNELC_CACHE_DIR", str(tmp_path))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert store.count() == 160
    conn = sqlite3.connect(store.path())
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_a_corrupt_database_is_moved_aside_and_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("KERNELC_CACHE_DIR", str(tmp_path))
    store.save("a", {"v": 1})
    store.path().write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"autotune.sqlite3{suffix}").unlink(missing_ok=True)
    with pytest.warns(RuntimeWarning, match="unreadable"):
        assert store.load("a") is None
    store.save("b", {"v": 2})
    assert store.load("b") == {"v": 2}
    assert any(p.name.startswith("autotune.corrupt-") for p in tmp_path.iterdir())


def test_modes(rng, monkeypatch):
    x, y = rng.random((300, 3), np.float32), rng.random((400, 3), np.float32)
    k_on = kc.kernel(SRC, autotune="on")
    want = kc.kernel(SRC, autotune="off")(x, y, backend="numpy")
    got = k_on(x, y, backend="llvm")  # tunes now, stores
    assert any(r.chosen for r in k_on.tuning_report())
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4)
    monkeypatch.setattr(tuner, "tune", lambda *a, **kw: (_ for _ in ()).throw(AssertionError("tuned again")))
    k_cached = kc.kernel(SRC)  # default: cached
    k_cached(x[:280], y, backend="llvm")  # the same bucket: the stored result, no tuning
    assert k_cached.tuning_report() == k_on.tuning_report()
    k_off = kc.kernel(SRC, autotune="off")
    k_off(x, y, backend="llvm")
    assert k_off.tuning_report() == []
    k_cached(x[:20], y, backend="llvm")  # another bucket, nothing stored: default schedule, no tuning
    with pytest.raises(kc.KernelArgumentError, match="autotune"):
        kc.kernel(SRC, autotune="sometimes")
    monkeypatch.setenv("KERNELC_AUTOTUNE", "bogus")
    with pytest.raises(kc.KernelArgumentError, match="KERNELC_AUTOTUNE"):
        kc.kernel(SRC)(x, y)


def test_kernelc_tune_prints_the_candidates(capsys):
    from kernelc.cli import main

    assert main(["tune", "examples/knn.kc", "-n", "300", "-d", "K=4", "--budget", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "chosen" in out and "tuned in" in out


def test_candidates_compile_in_worker_processes(rng):
    from kernelc.backends import cache, registry

    k = kc.kernel("kernel w(x: f32[i, D], y: f32[j, D], b: f32[j]) -> f32[i] { return sum[j](exp(-sqdist(x, y) * 0.75) * b) }")
    bound = runtime.bind(k.ir, (rng.random((64, 3), np.float32), rng.random((80, 3), np.float32),
                                rng.random(80, np.float32)), {})
    before = cache.info().entries
    found = tuner.candidates(k, registry.get("llvm"), bound.sizes)
    tuner.precompile(k, registry.get("llvm"), found, workers=2)
    assert cache.info().entries > before  # the workers' object code, for this process to load
    assert any(r.chosen for r in tuner.tune(k, registry.get("llvm"), bound, budget=0.5, workers=0).rows)


def test_exactly_one_variant_is_chosen_when_approx_math_is_the_exact_ir():
    """"approx-math" is the exact kernel run with approximate math: choosing it must not look like
    choosing nothing (the next acceptable variant used to be taken as well)."""
    k = kc.kernel("kernel l(x: f32[i, D], y: f32[j, D]) -> f32[i] { return logsumexp[j](-sqdist(x, y)) }",
                  tolerance=1e-5)
    x = np.random.default_rng(0).random((300, 3)).astype(np.float32)
    k(x, x, backend="llvm")
    chosen = [r.name for r in k.variant_report if r.chosen]
    assert chosen == ["approx-math"], k.variant_report
