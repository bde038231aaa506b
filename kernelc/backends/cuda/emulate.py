"""The generated CUDA C++ run on the CPU: the proof of the CUDA backend's semantics on machines
without a GPU. The exact source the GPU would compile is built by the host C++ compiler with
templates/kc_emulate.h in front (one OS thread per CUDA thread, real barriers), and launched
with the same grid as on the device. It is a test backend, slow by design; it is not registered
for users (tests name it as `kernelc.backends.cuda.emulate:backend`)."""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from kernelc.backends import cache
from kernelc.backends.cuda.codegen import Layout
from kernelc.backends.cuda.source import CODEGEN_VERSION, TEMPLATES, Rendered, layout_of, render, schedule_of
from kernelc.backends.interface import Availability, Call, Schedule, Sizes, host_arrays_only
from kernelc.backends.runtime import output_shapes
from kernelc.errors import CompilationError
from kernelc.ir.nodes import Kernel
from kernelc.plugins import API_VERSION

# -fwrapv: integers wrap as on the GPU; -ffp-contract=off: no FMA contraction (the GPU's may differ
# by an ulp, within the precision rules); -O1 keeps building each test kernel fast.
FLAGS = ["-std=c++20", "-O1", "-fPIC", "-shared", "-fwrapv", "-ffp-contract=off", "-fno-math-errno"]
# Small enough that the tests' arrays cross several blocks, rows per thread and tiles; the split
# layout also cuts the inner index across 3 blocks whose partial states are combined.
TEST_LAYOUT = Layout(block=32, rows=2, tile=8, stage=True)
SPLIT_LAYOUT = Layout(block=32, rows=1, tile=4, stage=True, split=3)
_ENTRY = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                          ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint)


def compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")


def _load(source: str, name: str, extra: list[str], mode: int = ctypes.DEFAULT_MODE) -> ctypes.CDLL:
    """`source` as a loaded shared library, from kernelc's cache or compiled now; the files it
    passes through live in a temporary folder that is gone when it returns (a loaded library
    needs no file)."""
    cxx = compiler()
    assert cxx is not None
    key = cache.make_key("cuda-emulated", CODEGEN_VERSION, cxx, (TEMPLATES / "kc_emulate.h").read_text(), source,
                         *extra)
    binary = cache.load(key, "so")
    with tempfile.TemporaryDirectory(prefix="kernelc-emu-", ignore_cleanup_errors=True) as tmp:
        folder = Path(tmp)
        if binary is None:
            src = folder / f"{name}.cpp"
            src.write_text(source)
            done = subprocess.run([cxx, *FLAGS, *extra, str(src), "-o", str(folder / "out.so")],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise CompilationError(
                    f"the host C++ compiler rejected the generated CUDA source:\n{done.stderr[-4000:]}")
            binary = (folder / "out.so").read_bytes()
            cache.store(key, "so", binary)
        library = folder / f"{name}-{key[:16]}.so"
        library.write_bytes(binary)
        return ctypes.CDLL(str(library), mode=mode)


@functools.cache
def runtime() -> ctypes.CDLL:
    """The emulator's threads and barriers, loaded globally so that kernels link against it."""
    return _load((TEMPLATES / "kc_emulate.cpp").read_text(), "kc_emulate", [], mode=ctypes.RTLD_GLOBAL)


class EmulatedExecutable:
    def __init__(self, kernel: Kernel, schedule: Schedule) -> None:
        runtime()
        self.dims = dict(schedule.get("dims") or ())
        self.layout = layout_of(schedule)
        include = ["-DKC_EMULATE", "-include", str(TEMPLATES / "kc_emulate.h"), "-x", "c++"]
        self.stages: list[tuple[Rendered, dict[str, Any], ctypes.CDLL]] = []
        for rendered in render(kernel, self.dims, self.layout):
            library = _load(rendered.source, kernel.name, include)
            entries = {f.name: _ENTRY((f"{f.name}_emulated", library)) for f in rendered.functions}
            self.stages.append((rendered, entries, library))

    def run(self, call: Call) -> None:
        if dict(call.sizes.dims) != self.dims:
            raise AssertionError("an executable runs only the dimensions it was compiled for")
        inputs = dict(call.inputs)
        for k, (rendered, entries, _) in enumerate(self.stages):
            kernel = rendered.stage.kernel
            last = k + 1 == len(self.stages)
            outputs = call.outputs if last else [np.empty(shape, o.type.dtype.numpy)
                                                 for o, shape in zip(kernel.outputs, output_shapes(kernel, call.sizes))]
            arrays = [np.ascontiguousarray(inputs[p.name]) for p in kernel.params] + list(outputs)
            pointers = (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])
            for launch, scratch, states in rendered.launches_with_buffers(call.sizes, self.layout,
                                                                        lambda n: np.empty(n, np.uint8)):
                f = launch.function
                if entries[f.name](pointers, call.sizes.n, call.sizes.m, scratch.ctypes.data, states.ctypes.data,
                                   launch.chunk, launch.splits, launch.grid_x, launch.grid_y, self.layout.block) != 0:
                    raise RuntimeError(f"the emulated launch of {f.name} failed")
            if not last:
                inputs.update(zip(self.stages[k + 1][0].stage.temporaries, outputs))


class EmulatedCudaBackend:
    api_version = API_VERSION
    priority = -10
    description = "the CUDA backend's generated source run on CPU threads (tests only)"

    def __init__(self, layout: Layout = TEST_LAYOUT, name: str = "cuda-emulated") -> None:
        self.layout, self.name = layout, name

    def available(self) -> Availability:
        if compiler() is None:
            return Availability(False, "no host C++ compiler (g++ or clang++) to emulate CUDA with")
        return Availability(True)

    def accepts(self, args: Mapping[str, Any]) -> bool:
        return host_arrays_only(args)

    def default_schedule(self, kernel: Kernel, sizes: Sizes) -> Schedule:
        return schedule_of(self.name, sizes, self.layout)

    def candidates(self, kernel: Kernel, sizes: Sizes) -> list[Schedule]:
        return [self.default_schedule(kernel, sizes)]

    def compile(self, kernel: Kernel, schedule: Schedule) -> EmulatedExecutable:
        return EmulatedExecutable(kernel, schedule)


backend = EmulatedCudaBackend()
split_backend = EmulatedCudaBackend(SPLIT_LAYOUT, "cuda-emulated-split")
