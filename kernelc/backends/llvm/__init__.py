"""The LLVM CPU backend: LLVM IR built with llvmlite from the typed IR specialized to a call's
dimensions, optimized with the new pass manager for the host CPU, JIT-compiled, and run over
row blocks on every core through ctypes (which releases the GIL)."""

from __future__ import annotations

import ctypes
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping

import numpy as np

from kernelc.backends.interface import Availability, Call, Executable, Schedule, Sizes
from kernelc.backends.llvm.codegen import check_supported, generate, row_functions
from kernelc.backends.llvm.ops import UnsupportedKernel
from kernelc.backends.runtime import output_shapes
from kernelc.backends.threads import thread_count
from kernelc.errors import UnsupportedKernelError
from kernelc.ir.nodes import Kernel
from kernelc.ir.passes.split_passes import split_passes
from kernelc.plugins import API_VERSION

_ROW_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64)


CODEGEN_VERSION = "5"  # bump when generated code changes without the IR text changing


def cache_key(kernel: Kernel, schedule: Schedule) -> str:
    import llvmlite

    from kernelc import __version__
    from kernelc.backends.cache import make_key
    from kernelc.backends.llvm.jit import host_description
    from kernelc.ir.printer import print_kernel

    return make_key("llvm", CODEGEN_VERSION, __version__, llvmlite.__version__, host_description(),
                    print_kernel(kernel), str(dict(schedule.get("dims") or ())))


class LLVMExecutable:
    """Runs a kernel as one or more single-pass stages (see ir/passes/split_passes.py)."""

    def __init__(self, kernel: Kernel, schedule: Schedule) -> None:
        self.kernel = kernel
        self.stages = [(_StageExecutable(stage.kernel, schedule), stage) for stage in split_passes(kernel)]

    def run(self, call: Call) -> None:
        inputs = dict(call.inputs)
        for k, (executable, stage) in enumerate(self.stages):
            if k + 1 == len(self.stages):
                executable.run(Call(inputs, call.sizes, call.outputs))
                return
            temps = [np.empty(shape, o.type.dtype.numpy)
                     for o, shape in zip(stage.kernel.outputs, output_shapes(stage.kernel, call.sizes))]
            executable.run(Call(inputs, call.sizes, temps))
            inputs.update(zip(self.stages[k + 1][1].temporaries, temps))


class _StageExecutable:
    def __init__(self, kernel: Kernel, schedule: Schedule) -> None:
        from kernelc.backends.llvm.jit import compile_ir

        self.kernel = kernel
        self.dims = dict(schedule.get("dims") or ())
        self.threads = int(schedule.get("threads") or thread_count())
        try:
            check_supported(kernel, self.dims)
        except UnsupportedKernel as err:
            raise UnsupportedKernelError(f"the llvm backend cannot run kernel '{kernel.name}': {err}") from None
        key = cache_key(kernel, schedule)
        tag = "_" + key[:20]  # symbols unique per compiled variant within the process
        self.specs = row_functions(kernel, tag, self.dims)
        addresses, self.optimized_ir = compile_ir(lambda: generate(kernel, self.dims, tag)[0],
                                                  [s.name for s in self.specs], key)
        self.functions = [_ROW_FN(addresses[s.name]) for s in self.specs]

    def run(self, call: Call) -> None:
        if dict(call.sizes.dims) != self.dims:
            raise AssertionError("an llvm executable runs only the dimensions it was compiled for")
        n, m = call.sizes.n, call.sizes.m
        for out in call.outputs:
            assert out.flags.c_contiguous, "the runtime allocates contiguous outputs"
        for spec, fn in zip(self.specs, self.functions):
            arrays = [np.ascontiguousarray(call.inputs[p.name].T if p.name in spec.soa else call.inputs[p.name])
                      for p in self.kernel.params] + list(call.outputs)
            pointers = (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])
            rows = 1 if spec.outer is None else (n if spec.outer == "i" else m)
            self._run_rows(fn, pointers, n, m, rows)
            del arrays  # kept alive until the native code returned

    def _run_rows(self, fn: Any, pointers: Any, n: int, m: int, rows: int) -> None:
        work = rows * max(n, m, 1)
        threads = max(1, min(self.threads, rows))
        if threads == 1 or work < _PARALLEL_WORK:
            fn(ctypes.addressof(pointers), n, m, 0, rows)
            return
        chunks = min(rows, threads * 8)
        bounds = [rows * c // chunks for c in range(chunks + 1)]
        list(_pool(threads).map(lambda c: fn(ctypes.addressof(pointers), n, m, bounds[c], bounds[c + 1]),
                                range(chunks)))


_PARALLEL_WORK = 1 << 16  # below this many pairs, starting threads costs more than it saves
_pools: dict[int, ThreadPoolExecutor] = {}


def _pool(threads: int) -> ThreadPoolExecutor:
    """One long-lived pool per thread count: creating threads per call costs ~0.3 ms."""
    if threads not in _pools:
        _pools[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kernelc-llvm")
    return _pools[threads]


class LLVMBackend:
    name = "llvm"
    api_version = API_VERSION
    description = "LLVM IR via llvmlite, JIT-compiled for the host CPU, threads over row blocks"

    def available(self) -> Availability:
        try:
            from kernelc.backends.llvm.jit import target_machine

            target_machine()
        except Exception as err:  # llvmlite missing or broken
            return Availability(False, f"llvmlite cannot target this CPU: {type(err).__name__}: {err}")
        return Availability(True)

    def accepts(self, args: Mapping[str, Any]) -> bool:
        return all(not hasattr(a, "__cuda_array_interface__") for a in args.values())

    def default_schedule(self, kernel: Kernel, sizes: Sizes) -> Schedule:
        return Schedule.of(self.name, dims=sizes.dims, threads=thread_count())

    def candidates(self, kernel: Kernel, sizes: Sizes) -> list[Schedule]:
        return [self.default_schedule(kernel, sizes)]

    def compile(self, kernel: Kernel, schedule: Schedule) -> Executable:
        return LLVMExecutable(kernel, schedule)


backend = LLVMBackend()
