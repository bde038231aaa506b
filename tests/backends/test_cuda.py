"""The CUDA backend without a GPU: every generated kernel of the test programs compiles for sm_80
and sm_90 (nvcc, or NVRTC through cuda-python) with no register spills in the default schedule;
the emulator's warp shuffles, atomics and barriers behave as on the device; the backend says why
it is unavailable. Its semantics are tested by the conformance suite, where the `run` fixture
includes the emulated CUDA backend (and the real one on a machine with a GPU)."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import kernelc as kc
from kernelc.backends import registry, runtime
from kernelc.backends.cuda import CANDIDATES, DEFAULT, backend, emulate
from kernelc.backends.cuda.source import TEMPLATES, render
from kernelc.backends.cuda.toolchain import ARCHITECTURES, compile_check, compiler_name, parse_ptxas
from kernelc.explain import random_arguments
from kernelc.testing.programs import programs

EXAMPLES = Path(__file__).parents[2] / "examples"
needs_cuda_compiler = pytest.mark.skipif(compiler_name() is None, reason="neither nvcc nor NVRTC is installed here")


def _examples() -> list[tuple[kc.Kernel, dict[str, int]]]:
    found = []
    for path in sorted(EXAMPLES.glob("*.kc")):
        for kernel in kc.load(path):
            dims = {s: 3 for s in kernel.ir.symbols}
            args = random_arguments(kernel, 50, 40, dims)
            found.append((kernel, dict(runtime.bind(kernel.ir, (), args).sizes.dims)))
    return found


def _generated(count: int) -> list[tuple[kc.Kernel, dict[str, int]]]:
    found = []

    @settings(max_examples=count, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(program=programs())
    def collect(program):
        kernel = kc.kernel(program.source)
        found.append((kernel, dict(runtime.bind(kernel.ir, (), program.data).sizes.dims)))

    collect()
    return found


@pytest.fixture(scope="module")
def test_programs() -> list[tuple[kc.Kernel, dict[str, int]]]:
    return _examples() + _generated(120)


def _batch(kernels: list[tuple[kc.Kernel, dict[str, int]]], layout) -> str:
    """One translation unit holding every kernel's stages (function names prefixed apart)."""
    parts = []
    for number, (kernel, dims) in enumerate(kernels):
        for ir in (kernel.ir, kernel.optimized):
            parts += [r.source for r in render(ir, dims, layout, prefix=f"p{number}_{ir is kernel.ir:d}_")]
    return "\n".join(parts)


@needs_cuda_compiler
@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_test_program_compiles_without_spills(test_programs, arch):
    resources = compile_check(_batch(test_programs, DEFAULT), arch)
    assert len(resources) >= len(test_programs)
    spilled = [r for r in resources if r.spill_stores or r.spill_loads]
    sources = [test_programs[int(r.function.split("_")[0][1:])][0].source for r in spilled]
    assert not spilled, f"register spills in the default schedule: {spilled[:3]} in {sources[:3]}"
    assert max(r.registers for r in resources) <= 255


@needs_cuda_compiler
@pytest.mark.parametrize("layout", CANDIDATES[1:] + [emulate.SPLIT_LAYOUT], ids=str)
def test_every_candidate_layout_compiles(layout):
    kernels = _examples()
    resources = compile_check(_batch(kernels, layout), "sm_80")
    assert len(resources) >= len(kernels)


def test_ptxas_report_is_parsed():
    log = """ptxas info    : Compiling entry function 'kc0_group0' for 'sm_80'
ptxas info    : Function properties for kc0_group0
    8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 392 bytes cmem[0]"""
    (r,) = parse_ptxas(log, "sm_80")
    assert (r.function, r.registers, r.stack, r.spill_stores, r.spill_loads) == ("kc0_group0", 40, 8, 4, 4)


def test_unavailable_backend_says_why():
    info = next(b for b in kc.backends() if b.name == "cuda")
    if info.available:
        pytest.skip("a GPU is here")
    assert info.reason
    with pytest.raises(kc.KernelcError, match="unavailable"):
        kc.kernel("kernel f(x: f32[i]) -> f32[i] { return x }")(np.ones(3, np.float32), backend="cuda")


# --- the emulator itself ----------------------------------------------------------------------

_WARP_SOURCE = r"""
extern "C" __global__ void probe(const float *x, float *warp_sums, float *total, int *order, int *count) {
    __shared__ float partial[64];
    float v = x[blockIdx.x * blockDim.x + threadIdx.x];
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
    if (threadIdx.x % 32 == 0) warp_sums[blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32] = v;
    partial[threadIdx.x] = (float)threadIdx.x;
    __syncthreads();
    float down = __shfl_down_sync(0xffffffffu, partial[(threadIdx.x + 1) % blockDim.x], 1);
    order[blockIdx.x * blockDim.x + threadIdx.x] = (int)down;
    atomicAdd(total, x[blockIdx.x * blockDim.x + threadIdx.x]);
    atomicAdd(count, 1);
}
#ifdef KC_EMULATE
struct probe_call { void **A; };
static void probe_body(void *c) {
    void **A = ((probe_call *)c)->A;
    probe((const float *)A[0], (float *)A[1], (float *)A[2], (int *)A[3], (int *)A[4]);
}
extern "C" int probe_emulated(void **A, unsigned grid, unsigned block) {
    probe_call c = {A};
    return kc_emu_launch(grid, 1, block, probe_body, &c);
}
#endif
"""


@pytest.mark.skipif(not emulate.backend.available(), reason="no host C++ compiler")
def test_emulator_shuffles_barriers_and_atomics():
    emulate.runtime()
    library = emulate._load(_WARP_SOURCE, "probe", ["-DKC_EMULATE", "-include", str(TEMPLATES / "kc_emulate.h"),
                                                    "-x", "c++"])
    grid, block = 3, 64
    x = np.arange(grid * block, dtype=np.float32)
    warp_sums = np.zeros(grid * block // 32, np.float32)
    total = np.zeros(1, np.float32)
    order = np.zeros(grid * block, np.int32)
    count = np.zeros(1, np.int32)
    arrays = [x, warp_sums, total, order, count]
    pointers = (ctypes.c_void_p * 5)(*[a.ctypes.data for a in arrays])
    assert library.probe_emulated(pointers, grid, block) == 0
    np.testing.assert_array_equal(warp_sums, x.reshape(-1, 32).sum(axis=1))
    assert total[0] == x.sum() and count[0] == grid * block
    lanes = np.arange(block)
    # lane l reads lane l+1's value partial[(l+2) % 64] within its warp; the last lane keeps its own
    expected = np.where(lanes % 32 == 31, (lanes + 1) % block, (lanes + 2) % block)
    np.testing.assert_array_equal(order.reshape(grid, block), np.tile(expected, (grid, 1)))


@needs_cuda_compiler
def test_emulator_probe_compiles_for_the_gpu():
    source = _WARP_SOURCE.split("#ifdef KC_EMULATE")[0]
    (r,) = compile_check(source, "sm_80")
    assert r.function == "probe"


def test_cuda_backend_is_registered_with_its_reason():
    assert "cuda" in registry.registry()


def test_few_rows_split_the_inner_index_across_blocks():
    from kernelc.backends.interface import Sizes

    knn = kc.kernel("kernel knn(x: f32[i, D], y: f32[j, D]) -> i64[i, 10] { return argkmin[j, 10](sqdist(x, y)) }")
    few = backend.default_schedule(knn.optimized, Sizes(1000, 10**6, (("D", 3),)))
    many = backend.default_schedule(knn.optimized, Sizes(10**5, 10**5, (("D", 3),)))
    assert few.get("split") > 1 and many.get("split") == 1
    functions = [f.name for r in render(knn.optimized, {"D": 3}, emulate.SPLIT_LAYOUT) for f in r.functions]
    assert functions == ["kc0_group0_partial", "kc0_group0_combine"]


def test_explain_shows_the_cuda_source_where_it_cannot_run():
    if registry.availability(registry.registry()["cuda"]).ok:
        pytest.skip("a GPU is here: explain compiles and runs for real")
    knn = kc.load(EXAMPLES / "knn.kc").knn
    text = knn.explain(backend="cuda", code=True, n=200, m=5000, dims={"D": 3, "K": 5})
    assert "cannot run here" in text and "__global__ void kc0_group0_partial" in text
    if compiler_name() is not None:
        assert "ptxas sm_90 kc0_group0_combine" in text
