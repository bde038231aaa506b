"""kernelc-c: a kernelc backend that renders kernels to C with jinja2 templates, builds them with
the system C compiler (OpenMP when it has it) into shared libraries kept in kernelc's cache,
and runs them through ctypes. It imports nothing from kernelc but `kernelc.plugins`."""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Mapping

import jinja2
import numpy as np

from kernelc.plugins import (
    Availability, Call, CompilationError, Kernel, Schedule, Sizes, cache, host_arrays_only,
    output_shapes, split_passes, thread_count)
from kernelc_c.codegen import STORAGE, Generator

__version__ = "0.1.0"
# -fwrapv: integers wrap as in NumPy; -ffp-contract=off: no FMA contraction, results independent of the host
FLAGS = ["-O3", "-march=native", "-std=gnu11", "-fwrapv", "-fno-math-errno", "-ffp-contract=off", "-fPIC", "-shared"]
_ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                          undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
_FUNCTION = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int,
                             ctypes.c_void_p)


def compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


@functools.cache
def toolchain() -> tuple[list[str], str]:
    """(flags, identity): OpenMP if the compiler builds it; the identity (version and predefined
    macros for the host, so every target feature) goes into cache keys."""
    cc = compiler()
    assert cc is not None
    probe = subprocess.run([cc, *FLAGS, "-fopenmp", "-E", "-dM", "-", "-o", "-"], input="#include <omp.h>\n",
                           capture_output=True, text=True)
    flags = FLAGS + (["-fopenmp"] if probe.returncode == 0 else [])
    macros = subprocess.run([cc, *flags, "-E", "-dM", "-", "-o", "-"], input="", capture_output=True, text=True)
    return flags, cache.make_key(cc, macros.stdout, *flags)


def render(kernel: Kernel, dims: dict[str, int]) -> tuple[str, list[Any]]:
    """The C source of one single-pass kernel and the row functions it defines."""
    functions = Generator(kernel, dims).functions()
    source = _ENV.get_template("kernel.c.j2").render(
        functions=functions, params=[{"storage": STORAGE[p.type.dtype]} for p in kernel.params],
        outputs=[{"storage": STORAGE[o.type.dtype]} for o in kernel.outputs])
    return source, functions


def build(source: str) -> ctypes.CDLL:
    """A loaded shared library for `source`, from the cache or compiled now."""
    flags, identity = toolchain()
    key = cache.make_key("kernelc-c", __version__, identity, source)
    binary = cache.load(key, "so")
    with tempfile.TemporaryDirectory(prefix="kernelc-c-") as tmp:
        if binary is None:
            c_file = Path(tmp, "kernel.c")
            c_file.write_text(source)
            done = subprocess.run([compiler(), *flags, str(c_file), "-o", str(c_file.with_suffix(".so")), "-lm"],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise CompilationError(f"the C compiler rejected the generated code:\n{done.stderr[-4000:]}")
            binary = c_file.with_suffix(".so").read_bytes()
            cache.store(key, "so", binary)
        library = Path(tmp, f"{key[:16]}.so")
        library.write_bytes(binary)
        return ctypes.CDLL(str(library))  # the mapping outlives the file


class CExecutable:
    def __init__(self, kernel: Kernel, schedule: Schedule) -> None:
        self.dims = dict(schedule.get("dims") or ())
        self.threads = int(schedule.get("threads") or 1) if "-fopenmp" in toolchain()[0] else 1
        self.stages = []
        for stage in split_passes(kernel):
            source, functions = render(stage.kernel, self.dims)
            library = build(source)
            entry = [(_FUNCTION((f.name, library)), f.scratch) for f in functions]
            self.stages.append((stage, entry, library, source))

    def run(self, call: Call) -> None:
        if dict(call.sizes.dims) != self.dims:
            raise AssertionError("a C executable runs only the dimensions it was compiled for")
        inputs = dict(call.inputs)
        for k, (stage, entry, _, _) in enumerate(self.stages):
            last = k + 1 == len(self.stages)
            outputs = call.outputs if last else [
                np.empty(shape, o.type.dtype.numpy)
                for o, shape in zip(stage.kernel.outputs, output_shapes(stage.kernel, call.sizes))]
            arrays = [np.ascontiguousarray(inputs[p.name]) for p in stage.kernel.params] + list(outputs)
            pointers = (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])
            for function, scratch in entry:
                buffer = np.empty(max(1, self.threads * scratch // 8), np.float64)
                if function(pointers, call.sizes.n, call.sizes.m, self.threads, buffer.ctypes.data) != 0:
                    raise RuntimeError(f"kernel '{stage.kernel.name}' failed in generated C code")
            if not last:
                inputs.update(zip(self.stages[k + 1][0].temporaries, outputs))


class CBackend:
    name = "c"
    api_version = (1, 2)
    priority = 20  # after llvm (50), before numpy (0)
    description = "C from jinja2 templates, built by the system C compiler (OpenMP), cached"

    def available(self) -> Availability:
        if compiler() is None:
            return Availability(False, "no C compiler found (set CC, or install gcc or clang)")
        try:
            build("int kc_probe(void) { return 0; }\n")
        except (CompilationError, OSError) as err:
            return Availability(False, f"the C compiler {compiler()} cannot build shared libraries: {err}")
        return Availability(True)

    def accepts(self, args: Mapping[str, Any]) -> bool:
        return host_arrays_only(args)

    def default_schedule(self, kernel: Kernel, sizes: Sizes) -> Schedule:
        return Schedule.of(self.name, dims=sizes.dims, threads=thread_count())

    def candidates(self, kernel: Kernel, sizes: Sizes) -> list[Schedule]:
        return [self.default_schedule(kernel, sizes), Schedule.of(self.name, dims=sizes.dims, threads=1)]

    def compile(self, kernel: Kernel, schedule: Schedule) -> CExecutable:
        return CExecutable(kernel, schedule)


backend = CBackend()
