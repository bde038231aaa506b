"""Compiling generated CUDA C++ without a GPU: nvcc (or NVRTC through the cuda-python bindings,
which need no driver) to a cubin for a named architecture, with ptxas's resource report per
function: registers, stack frame and spills. This is how the CUDA backend's source is proven to
compile on machines (CI) that cannot run it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kernelc.errors import CompilationError

ARCHITECTURES = ("sm_80", "sm_90")
_FUNCTION = re.compile(r"Compiling entry function '(\w+)' for '(\w+)'")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_REGISTERS = re.compile(r"Used (\d+) registers")


@dataclass(frozen=True)
class Resources:
    """ptxas's report for one `__global__` function."""

    function: str
    arch: str
    registers: int
    stack: int
    spill_stores: int
    spill_loads: int


def nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found is None:
        home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
        candidate = Path(home, "bin", "nvcc")
        found = str(candidate) if candidate.is_file() else None
    return found


def nvrtc_bindings() -> object | None:
    try:
        from cuda.bindings import nvrtc  # type: ignore[import-not-found]
    except ImportError:
        return None
    return nvrtc


def compiler_name() -> str | None:
    """What `compile_check` would use here: "nvcc", "nvrtc", or None."""
    if nvcc() is not None:
        return "nvcc"
    return "nvrtc" if nvrtc_bindings() is not None else None


def compile_check(source: str, arch: str = "sm_80") -> list[Resources]:
    """Compile `source` to a cubin for `arch`; the resources of each function, or
    CompilationError with the compiler's messages."""
    if nvcc() is not None:
        return _with_nvcc(source, arch)
    if nvrtc_bindings() is not None:
        return _with_nvrtc(source, arch)
    raise CompilationError("neither nvcc nor the NVRTC bindings (pip install cuda-python) are installed here")


def parse_ptxas(log: str, arch: str) -> list[Resources]:
    """The per-function figures of `ptxas -v` output."""
    found: list[Resources] = []
    current, frame = None, (0, 0, 0)
    for line in log.splitlines():
        if m := _FUNCTION.search(line):
            current, frame = m.group(1), (0, 0, 0)
        elif (m := _FRAME.search(line)) and current:
            frame = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
        elif (m := _REGISTERS.search(line)) and current:
            found.append(Resources(current, arch, int(m.group(1)), *frame))
            current = None
    return found


def _with_nvcc(source: str, arch: str) -> list[Resources]:
    with tempfile.TemporaryDirectory(prefix="kernelc-nvcc-") as tmp:
        path = Path(tmp, "kernel.cu")
        path.write_text(source)
        done = subprocess.run([str(nvcc()), "-std=c++17", f"-arch={arch}", "-cubin", "-Xptxas", "-v",
                               "-o", str(path.with_suffix(".cubin")), str(path)], capture_output=True, text=True)
        if done.returncode != 0:
            raise CompilationError(f"nvcc rejected the generated CUDA source for {arch}:\n{done.stderr[-4000:]}")
        return parse_ptxas(done.stderr, arch)


def _with_nvrtc(source: str, arch: str) -> list[Resources]:
    nvrtc = nvrtc_bindings()
    err, program = nvrtc.nvrtcCreateProgram(source.encode(), b"kernel.cu", 0, [], [])  # type: ignore[attr-defined]
    options = [b"-std=c++17", f"--gpu-architecture={arch}".encode(), b"--ptxas-options=-v"]
    (result,) = nvrtc.nvrtcCompileProgram(program, len(options), options)  # type: ignore[attr-defined]
    _, size = nvrtc.nvrtcGetProgramLogSize(program)  # type: ignore[attr-defined]
    log = b" " * size
    nvrtc.nvrtcGetProgramLog(program, log)  # type: ignore[attr-defined]
    nvrtc.nvrtcDestroyProgram(program)  # type: ignore[attr-defined]
    text = log.decode(errors="replace")
    if result != nvrtc.nvrtcResult.NVRTC_SUCCESS:  # type: ignore[attr-defined]
        raise CompilationError(f"NVRTC rejected the generated CUDA source for {arch}:\n{text[-4000:]}")
    return parse_ptxas(text, arch)
