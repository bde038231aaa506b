"""kernelc: a compiler for kernel operators (pairwise reductions that never build the N x M matrix).

    import kernelc as kc
    gauss = kc.kernel(SOURCE)
    out = gauss(x, y, b, s=0.5)
"""

from __future__ import annotations

from kernelc.api import Kernel, Module, compile, kernel, load
from kernelc.backends.registry import BackendInfo
from kernelc.backends.registry import backends as _backends
from kernelc.errors import (
    BackendUnavailableError,
    CompilationError,
    KernelArgumentError,
    KernelcError,
    KernelSyntaxError,
    KernelTypeError,
    UnsupportedKernelError,
)

__version__ = "0.1.0"


def backends() -> list[BackendInfo]:
    """Every backend kernelc knows, each with whether it can run here and, if not, why."""
    return _backends()


__all__ = [
    "BackendInfo", "BackendUnavailableError", "CompilationError", "Kernel", "KernelArgumentError", "KernelSyntaxError",
    "KernelTypeError", "KernelcError", "UnsupportedKernelError", "Module", "backends", "compile", "kernel", "load", "__version__",
]
