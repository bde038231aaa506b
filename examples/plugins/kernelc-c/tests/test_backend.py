"""What is particular to this backend: discovery, its cache, threads, several passes."""

import numpy as np

import kernelc as kc
import kernelc_c
from kernelc.plugins import Call, Schedule, Sizes


def test_listed_by_kernelc():
    info = {b.name: b for b in kc.backends()}["c"]
    assert info.available, info.reason
    assert info.distribution == "kernelc-c"


def test_a_second_build_comes_from_the_cache(monkeypatch):
    kernelc_c.build("int kc_cached(void) { return 1; }\n")
    monkeypatch.setattr(kernelc_c.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(AssertionError("cc")))
    assert kernelc_c.build("int kc_cached(void) { return 1; }\n").kc_cached() == 1


def test_threads_do_not_change_results():
    k = kc.kernel("kernel t(x: f64[i], y: f64[j]) -> (f64[i], i64[i, 4]) "
                  "{ d = abs(x - y); return sum[j](d), argkmin[j, 4](d) }")
    x, y = np.random.default_rng(0).random(1000), np.random.default_rng(1).random(3000)
    one = kernelc_c.CExecutable(k.ir, Schedule.of("c", dims=(), threads=1))
    many = kernelc_c.CExecutable(k.ir, Schedule.of("c", dims=(), threads=4))
    results = []
    for ex in (one, many):
        call = Call({"x": x, "y": y}, Sizes(1000, 3000), [np.empty(1000), np.empty((1000, 4), np.int64)])
        ex.run(call)
        results.append(call.outputs)
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_a_kernel_needing_two_passes():
    k = kc.kernel("kernel c(x: f32[i, D]) -> f32[i, D] { return x - mean[i](x) }")
    x = np.random.default_rng(2).random((50, 3)).astype(np.float32)
    np.testing.assert_allclose(k(x, backend="c"), x - x.mean(axis=0), rtol=1e-5, atol=1e-6)
